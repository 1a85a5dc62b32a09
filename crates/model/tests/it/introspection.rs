//! Summaries (parameter and MAC totals computed by PyTorch), layer access, partial forwards
//! and input errors.

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use kindling_model::{AlexNetConfig, FeatureLayer, LayerRef, ModelError, ReceptiveField, Variant};

use crate::common::{Reference, flex, values};

#[test]
fn parameter_and_mac_totals_match_pytorch() {
    let device = flex();
    let cases = [
        (AlexNetConfig::cifar(), 32, 7_506_762, Some(172_173_312)),
        (
            AlexNetConfig::torchvision(),
            224,
            61_100_840,
            Some(714_188_480),
        ),
        (AlexNetConfig::paper(true), 227, 60_965_224, None),
        (AlexNetConfig::paper(false), 227, 62_378_344, None),
    ];
    for (config, size, params, macs) in cases {
        let model = config.init(&device);
        let summary = model
            .summary([1, 3, size, size], 2)
            .expect("nominal size fits");
        assert_eq!(summary.total_params, params, "{}", summary.variant);
        assert_eq!(
            model.num_params(),
            params,
            "burn's count for {}",
            summary.variant
        );
        assert_eq!(summary.trainable_params, params);
        if let Some(macs) = macs {
            assert_eq!(summary.total_macs, macs, "{}", summary.variant);
        }
        let last_feature = summary
            .layers
            .iter()
            .rfind(|l| l.name.starts_with("features.") || l.name == "avgpool")
            .expect("features");
        let expected = if config.variant == Variant::Cifar {
            [1, 256, 4, 4]
        } else {
            [1, 256, 6, 6]
        };
        assert_eq!(last_feature.output_shape, expected);
        assert_eq!(
            summary.layers.last().map(|l| l.output_shape.clone()),
            Some(vec![1, config.num_classes])
        );
        println!("{summary}");
    }
}

#[test]
fn summary_table_json_depth_and_receptive_fields() {
    let model = AlexNetConfig::torchvision().init(&flex());
    let summary = model.summary([2, 3, 224, 224], 2).expect("fits");
    let conv1 = &summary.layers[0];
    assert_eq!(
        (conv1.name.as_str(), conv1.kind.as_str()),
        ("features.0", "Conv2d")
    );
    assert_eq!(
        (conv1.kernel, conv1.stride, conv1.padding),
        (Some(11), Some(4), Some(2))
    );
    assert_eq!(conv1.output_shape, vec![2, 64, 55, 55]);
    assert_eq!(conv1.params, 64 * 3 * 121 + 64);
    assert_eq!(
        conv1.receptive_field,
        Some(ReceptiveField {
            size: 11,
            jump: 4,
            start: 3.5
        })
    );
    // pool5 of torchvision AlexNet: the classic 195-pixel field with a 32-pixel jump.
    let pool5 = summary
        .layers
        .iter()
        .find(|l| l.name == "features.12")
        .expect("pool5");
    assert_eq!(
        pool5.receptive_field.map(|r| (r.size, r.jump)),
        Some((195, 32))
    );
    assert!(
        summary
            .layers
            .iter()
            .find(|l| l.name == "classifier.1")
            .expect("fc6")
            .receptive_field
            .is_none()
    );
    assert!((summary.params_mb - 61_100_840.0 * 4.0 / 1e6).abs() < 1e-9);
    assert!(summary.activations_mb > 0.0);

    let table = summary.to_string();
    for needle in [
        "features.0",
        "Conv2d",
        "avgpool",
        "classifier.6",
        "61,100,840",
        "714,188,480",
        "[2, 64, 55, 55]",
    ] {
        assert!(table.contains(needle), "{needle} missing from\n{table}");
    }
    let json: serde_json::Value = serde_json::from_str(&summary.to_json()).expect("valid JSON");
    assert_eq!(json["total_params"], 61_100_840);
    assert_eq!(json["layers"][0]["name"], "features.0");
    assert_eq!(json["layers"][0]["receptive_field"]["size"], 11);

    let containers = model.summary([1, 3, 224, 224], 1).expect("fits");
    let names: Vec<&str> = containers.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["features", "avgpool", "classifier"]);
    assert_eq!(
        containers.layers.iter().map(|l| l.params).sum::<usize>(),
        61_100_840
    );
    assert_eq!(containers.total_macs, 714_188_480);
    assert!(
        model
            .summary([1, 3, 224, 224], 0)
            .expect("fits")
            .layers
            .is_empty()
    );

    let diagram = summary.diagram();
    assert_eq!(
        diagram.lines().filter(|l| l.contains("->")).count(),
        summary.layers.len()
    );
    assert!(
        diagram.contains("-> features.0 Conv2d (3→64) 11x11/4 pad 2 -> [2, 64, 55, 55]"),
        "{diagram}"
    );
    assert!(
        diagram.contains("-> classifier.1 Linear (9216→4096) -> [2, 4096]"),
        "{diagram}"
    );
    println!("{diagram}");
}

#[test]
fn wrong_inputs_and_layer_names_are_typed_errors() {
    let device = flex();
    let paper = AlexNetConfig::paper(true).init(&device);
    let err = paper
        .summary([1, 3, 224, 224], 2)
        .expect_err("224 into the paper net");
    let message = err.to_string();
    assert!(
        matches!(
            err,
            ModelError::InputSizeMismatch {
                got: 6400,
                expected: 9216,
                ..
            }
        ),
        "{message}"
    );
    assert!(
        message.contains("224x224") && message.contains("227x227"),
        "{message}"
    );
    paper.check_input([1, 3, 227, 227]).expect("227 fits");
    let summary = paper.summary([1, 3, 227, 227], 2).expect("fits");
    assert_eq!(summary.layers[2].kind, "LocalResponseNorm");
    assert_eq!(summary.layers[4].detail, "96→256, groups 2");

    let torchvision = AlexNetConfig::torchvision().init(&device);
    let err = torchvision
        .check_input([1, 3, 32, 32])
        .expect_err("32x32 collapses");
    let message = err.to_string();
    assert!(matches!(err, ModelError::InputTooSmall { .. }), "{message}");
    assert!(
        message.contains("32x32") && message.contains("at least 63x63"),
        "{message}"
    );
    torchvision
        .check_input([1, 3, 63, 63])
        .expect("63 is the smallest that fits");

    let cifar = AlexNetConfig::cifar().init(&device);
    let err = cifar.check_input([1, 1, 32, 32]).expect_err("grey input");
    assert_eq!(
        err,
        ModelError::WrongChannels {
            got: 1,
            expected: 3,
            variant: Variant::Cifar
        }
    );
    let err = cifar
        .check_input([1, 3, 224, 224])
        .expect_err("ImageNet size into CIFAR");
    assert!(err.to_string().contains("from 32x32 to 39x39"), "{err}");
    let x = Tensor::<4>::zeros([1, 3, 40, 40], &device);
    assert!(matches!(
        cifar.try_forward(x),
        Err(ModelError::InputSizeMismatch { .. })
    ));

    let err = cifar.layer("features.99").expect_err("no such layer");
    let message = err.to_string();
    assert!(
        matches!(err, ModelError::UnknownLayer { .. }) && message.contains("features.12"),
        "{message}"
    );
    let err = cifar.layer(20).expect_err("index past the end");
    assert!(
        matches!(
            err,
            ModelError::LayerIndexOutOfRange {
                index: 20,
                count: 20,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn layers_by_name_and_index_partial_forward_and_capture() {
    let reference = Reference::load();
    let device = flex();
    let model = AlexNetConfig::cifar()
        .init(&device)
        .load_weights(reference.path("cifar_weights_pth"))
        .expect("weights");
    let names = model.layer_names();
    assert_eq!(names.len(), 20);
    assert_eq!(names[3], "features.3");
    assert_eq!(names[13], "classifier.0");
    assert!(matches!(
        model.layer("features.3"),
        Ok(LayerRef::Feature(FeatureLayer::Conv2d(_)))
    ));
    assert!(matches!(
        model.layer(3),
        Ok(LayerRef::Feature(FeatureLayer::Conv2d(_)))
    ));
    assert!(matches!(
        model.layer(4),
        Ok(LayerRef::Feature(FeatureLayer::Relu(_)))
    ));
    assert!(matches!(
        model.layer("classifier.6"),
        Ok(LayerRef::Classifier(_))
    ));

    let x = reference.tensor4("cifar_input", &device);
    let features = values(model.features(x.clone()));
    let until = model.forward_until(x.clone(), "features.12").expect("runs");
    assert_eq!(until.dims(), vec![8, 256, 4, 4]);
    assert_eq!(values(until.flat()), features);
    let conv2 = model.forward_until(x.clone(), 3).expect("runs");
    assert_eq!(conv2.dims(), vec![8, 192, 16, 16]);

    let captured = model
        .capture(x.clone(), ["features.0", "features.12", "classifier.4"])
        .expect("runs");
    assert_eq!(captured.activations.len(), 3);
    assert_eq!(
        captured.get("features.0").map(|a| a.dims()),
        Some(vec![8, 64, 32, 32])
    );
    assert_eq!(
        captured.get("classifier.4").map(|a| a.dims()),
        Some(vec![8, 1024])
    );
    assert_eq!(
        captured
            .get("features.12")
            .cloned()
            .map(|a| values(a.flat())),
        Some(features)
    );
    assert_eq!(values(captured.logits), values(model.forward(x.clone())));
    assert!(model.capture(x, ["nope"]).is_err());
}

#[test]
fn paper_variant_runs_at_227() {
    let device = flex();
    for grouped in [true, false] {
        let model = AlexNetConfig::paper(grouped).init(&device);
        // A deterministic input, so no backend RNG is involved in the input.
        let data: Vec<f32> = (0..3 * 227 * 227)
            .map(|i| ((i % 97) as f32 / 97.0) - 0.5)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(data, [1, 3, 227, 227]), &device);
        let logits = model.try_forward(x).expect("227 fits");
        assert_eq!(logits.dims(), [1, 1000]);
        assert!(values(logits).iter().all(|v| v.is_finite()));
    }
}
