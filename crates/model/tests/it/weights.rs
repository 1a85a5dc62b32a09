//! Weight files: strict state-dict checks, corrupt input, checkpoints and round trips.

use kindling_model::{AlexNet, AlexNetConfig, WeightError, WeightFormat};

use crate::common::{Reference, flex, safetensors_bytes, values};

fn cifar_reference(reference: &Reference) -> AlexNet {
    AlexNetConfig::cifar()
        .init(&flex())
        .load_weights(reference.path("cifar_weights_pth"))
        .expect("reference .pth loads")
}

fn logits(model: &AlexNet, reference: &Reference) -> Vec<f32> {
    values(model.forward(reference.tensor4("cifar_input", &flex())))
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kindling-model-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

#[test]
fn pth_from_bytes_equals_pth_from_file() {
    let reference = Reference::load();
    let from_file = cifar_reference(&reference);
    let bytes = std::fs::read(reference.path("cifar_weights_pth")).expect("pth");
    let from_bytes = AlexNetConfig::cifar()
        .init(&flex())
        .load_weights_bytes(&bytes, WeightFormat::Pytorch)
        .expect("pth bytes load");
    assert_eq!(
        logits(&from_file, &reference),
        logits(&from_bytes, &reference)
    );
}

#[test]
fn state_dict_error_lists_missing_unexpected_and_misshaped_keys() {
    let device = flex();
    let model = AlexNetConfig::cifar().init(&device);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = model
        .torch_state_dict_shapes()
        .into_iter()
        .filter(|(k, _)| k != "features.0.bias" && k != "classifier.4.bias")
        .map(|(k, shape)| {
            let shape = if k == "classifier.6.weight" {
                vec![5, 1024]
            } else {
                shape
            };
            let n = shape.iter().product();
            (k, shape, vec![0.0; n])
        })
        .collect();
    tensors.push(("features.99.weight".into(), vec![2, 2], vec![0.0; 4]));
    let bytes = safetensors_bytes(&tensors);

    let err = model
        .load_weights_bytes(&bytes, WeightFormat::Safetensors)
        .expect_err("must fail");
    let message = err.to_string();
    println!("{message}");
    let WeightError::StateDict(mismatch) = err else {
        panic!("wrong error: {message}")
    };
    assert_eq!(
        mismatch.missing,
        vec![
            "classifier.4.bias".to_string(),
            "features.0.bias".to_string()
        ]
    );
    assert_eq!(mismatch.unexpected, vec!["features.99.weight".to_string()]);
    assert_eq!(
        mismatch.mismatched,
        vec![(
            "classifier.6.weight".to_string(),
            vec![10, 1024],
            vec![5, 1024]
        )]
    );
    for needle in [
        "classifier.4.bias",
        "features.0.bias",
        "features.99.weight",
        "[10, 1024]",
        "[5, 1024]",
    ] {
        assert!(message.contains(needle), "{needle} not in: {message}");
    }
}

#[test]
fn wrong_variant_weights_are_rejected_with_shapes() {
    let reference = Reference::load();
    let err = AlexNetConfig::torchvision()
        .init(&flex())
        .load_weights(reference.path("cifar_weights_pth"))
        .expect_err("CIFAR weights do not fit torchvision AlexNet");
    let message = err.to_string();
    assert!(
        message.contains("features.0.weight: expected [64, 3, 11, 11], found [64, 3, 3, 3]"),
        "{message}"
    );
    assert!(message.contains("classifier.1.weight"), "{message}");
}

#[test]
fn corrupt_and_missing_files_give_typed_errors() {
    let reference = Reference::load();
    let model = || AlexNetConfig::cifar().init(&flex());

    let garbage = b"this is not a checkpoint at all".to_vec();
    for format in [
        WeightFormat::Pytorch,
        WeightFormat::Safetensors,
        WeightFormat::Burnpack,
    ] {
        let err = model()
            .load_weights_bytes(&garbage, format)
            .expect_err("garbage");
        assert!(
            matches!(err, WeightError::Corrupt { format: f, .. } if f == format),
            "{format}: {err}"
        );
    }

    let pth = std::fs::read(reference.path("cifar_weights_pth")).expect("pth");
    let truncated = &pth[..pth.len() / 2];
    let err = model()
        .load_weights_bytes(truncated, WeightFormat::Pytorch)
        .expect_err("truncated");
    assert!(
        matches!(err, WeightError::Corrupt { .. } | WeightError::StateDict(_)),
        "truncated .pth: {err}"
    );

    let path = scratch("truncated.safetensors");
    let st = std::fs::read(reference.path("cifar_weights_features_safetensors")).expect("st");
    std::fs::write(&path, &st[..st.len() - 1000]).expect("write");
    let err = model()
        .load_weights(&path)
        .expect_err("truncated safetensors");
    assert!(matches!(err, WeightError::Corrupt { .. }), "{err}");

    let err = model()
        .load_weights(scratch("does-not-exist.pth"))
        .expect_err("missing file");
    assert!(matches!(err, WeightError::Io { .. }), "{err}");
    let err = model()
        .load_weights(scratch("weights.onnx"))
        .expect_err("unknown extension");
    assert!(matches!(err, WeightError::UnknownFormat { .. }), "{err}");
}

#[test]
fn checkpoints_and_torchvision_export_round_trip() {
    let reference = Reference::load();
    let model = cifar_reference(&reference);
    let want = logits(&model, &reference);

    let path = scratch("cifar.bpk");
    model.save_checkpoint(&path).expect("save checkpoint");
    let restored = AlexNetConfig::cifar()
        .init(&flex())
        .load_checkpoint(&path)
        .expect("load checkpoint");
    assert_eq!(logits(&restored, &reference), want);

    let bytes = model.checkpoint_bytes().expect("checkpoint bytes");
    let restored = AlexNetConfig::cifar()
        .init(&flex())
        .load_checkpoint_bytes(&bytes)
        .expect("from bytes");
    assert_eq!(logits(&restored, &reference), want);

    let st = model.to_torchvision_safetensors().expect("export");
    let restored = AlexNetConfig::cifar()
        .init(&flex())
        .load_weights_bytes(&st, WeightFormat::Safetensors)
        .expect("strict reload of the export");
    assert_eq!(logits(&restored, &reference), want);

    // A checkpoint of one variant does not load into another.
    let err = AlexNetConfig::paper(true)
        .init(&flex())
        .load_checkpoint(&path)
        .expect_err("wrong variant");
    assert!(matches!(err, WeightError::StateDict(_)), "{err}");
}
