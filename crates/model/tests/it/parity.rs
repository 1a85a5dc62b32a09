//! Numeric parity with PyTorch: eval forward, gradients at init and two SGD steps on CIFAR
//! AlexNet, and torchvision AlexNet's first block.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kindling_model::{
    AlexNet, AlexNetConfig, ClassifierLayer, FeatureLayer, LayerRef, LoadOptions, WeightFormat,
    WeightSource,
};

use crate::common::{Reference, assert_close, flex, transpose, values};

fn cifar_with_reference_weights(reference: &Reference, device: &Device, dropout: f64) -> AlexNet {
    AlexNetConfig::cifar()
        .with_dropout(dropout)
        .init(device)
        .load_weights(reference.path("cifar_weights_pth"))
        .expect("reference .pth loads")
}

/// Every parameter in PyTorch's layout, `(key, values)`.
fn torch_params(model: &AlexNet) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    for spec in model.layer_specs() {
        match model.layer(spec.name.as_str()).expect("own layer") {
            LayerRef::Feature(FeatureLayer::Conv2d(conv)) => {
                out.push((format!("{}.weight", spec.name), values(conv.weight.val())));
                if let Some(b) = &conv.bias {
                    out.push((format!("{}.bias", spec.name), values(b.val())));
                }
            }
            LayerRef::Classifier(ClassifierLayer::Linear(linear)) => {
                let [d_in, d_out] = linear.weight.val().dims();
                let w = transpose(&values(linear.weight.val()), d_in, d_out);
                out.push((format!("{}.weight", spec.name), w));
                if let Some(b) = &linear.bias {
                    out.push((format!("{}.bias", spec.name), values(b.val())));
                }
            }
            _ => {}
        }
    }
    out
}

fn param(model: &AlexNet, key: &str) -> Vec<f32> {
    torch_params(model)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no parameter {key}"))
}

#[test]
fn cifar_eval_forward_matches_pytorch() {
    let reference = Reference::load();
    let device = flex();
    let model = cifar_with_reference_weights(&reference, &device, 0.5);
    let x = reference.tensor4("cifar_input", &device);

    let (atol, rtol) = reference.tolerance("cifar_features_out");
    let features = values(model.features(x.clone()));
    assert_close(
        "cifar features",
        &features,
        &reference.f32s("cifar_features_out"),
        atol,
        rtol,
    );

    let (atol, rtol) = reference.tolerance("cifar_logits_eval");
    let logits = values(model.try_forward(x).expect("32x32 fits"));
    assert_close(
        "cifar eval logits",
        &logits,
        &reference.f32s("cifar_logits_eval"),
        atol,
        rtol,
    );
}

#[test]
fn cifar_features_safetensors_match_pytorch() {
    let reference = Reference::load();
    let device = flex();
    let (model, report) = AlexNetConfig::cifar()
        .init(&device)
        .load_weights_with(
            WeightSource::File(&reference.path("cifar_weights_features_safetensors")),
            LoadOptions {
                allow_missing: true,
                ..LoadOptions::default()
            },
        )
        .expect("features safetensors loads");
    assert_eq!(report.loaded.len(), 10);
    assert!(
        report.missing.iter().all(|k| k.starts_with("classifier.")),
        "{report:?}"
    );
    assert_eq!(report.missing.len(), 6);

    let x = reference.tensor4("cifar_input", &device);
    let (atol, rtol) = reference.tolerance("cifar_features_out");
    let features = values(model.features(x));
    assert_close(
        "cifar features (safetensors)",
        &features,
        &reference.f32s("cifar_features_out"),
        atol,
        rtol,
    );
}

#[test]
fn cifar_gradients_and_two_sgd_steps_match_pytorch() {
    let reference = Reference::load();
    let sgd = reference.sgd();
    let settings = &sgd["settings"];
    let f = |k: &str| {
        settings[k]
            .as_f64()
            .unwrap_or_else(|| panic!("settings.{k}"))
    };
    assert_eq!(
        settings["loss"], "cross_entropy_mean",
        "only mean cross entropy is implemented"
    );
    let steps = settings["steps"].as_u64().expect("settings.steps") as usize;

    let device = flex().autodiff();
    let mut model = cifar_with_reference_weights(&reference, &device, f("dropout"));
    let x = reference.tensor4("cifar_input", &device);
    let labels: Vec<i64> = reference.i64s("cifar_labels");
    let n = labels.len();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);

    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_momentum(f("momentum"))
                // burn's default dampening is 0.1; PyTorch's (and the reference's) is 0.
                .with_dampening(f("dampening"))
                .with_nesterov(settings["nesterov"].as_bool().unwrap_or(false)),
        ))
        .with_weight_decay(Some(WeightDecayConfig::new(f("weight_decay") as f32)))
        .init();

    let tracked = ["features.0.weight", "classifier.6.weight"];
    let init: Vec<Vec<f32>> = tracked.iter().map(|k| param(&model, k)).collect();
    let loss_rtol = sgd["tolerance"]["loss_rtol"].as_f64().unwrap_or(1e-5);
    let checksum_rel = sgd["tolerance"]["checksum_rel"].as_f64().unwrap_or(2e-6);

    for step in 0..steps {
        let logits = model.forward(x.clone());
        if step == 0 {
            let (atol, rtol) = reference.tolerance("sgd_step1_logits_train");
            assert_close(
                "train logits",
                &values(logits.clone()),
                &reference.f32s("sgd_step1_logits_train"),
                atol,
                rtol,
            );
        }
        let loss = loss_fn.forward(logits, labels.clone());
        let got = values(loss.clone())[0] as f64;
        let want = sgd["steps"][step]["loss_before_update"]
            .as_f64()
            .expect("loss");
        let rel = (got - want).abs() / want.abs();
        println!("step {}: loss {got} vs {want} (rel {rel:e})", step + 1);
        assert!(
            rel <= loss_rtol,
            "step {} loss {got} vs reference {want}",
            step + 1
        );

        let grads = loss.backward();
        if step == 0 {
            let conv = match model.layer("features.0").expect("layer") {
                LayerRef::Feature(FeatureLayer::Conv2d(conv)) => conv.weight.val(),
                other => panic!("features.0 is {other:?}"),
            };
            let g = values(conv.grad(&grads).expect("features.0.weight has a gradient"));
            let want = reference.f32s("sgd_step1_grad_features.0.weight");
            assert_close("grad features.0.weight", &g, &want, 1e-5, 1e-3);

            let linear = match model.layer("classifier.6").expect("layer") {
                LayerRef::Classifier(ClassifierLayer::Linear(l)) => l.weight.val(),
                other => panic!("classifier.6 is {other:?}"),
            };
            let [d_in, d_out] = linear.dims();
            let g = values(
                linear
                    .grad(&grads)
                    .expect("classifier.6.weight has a gradient"),
            );
            let want = reference.f32s("sgd_step1_grad_classifier.6.weight");
            assert_close(
                "grad classifier.6.weight",
                &transpose(&g, d_in, d_out),
                &want,
                1e-5,
                1e-3,
            );
        }
        let grads = GradientsParams::from_grads(grads, &model);
        model = optim.step(f("lr"), model, grads);

        // Parameters are compared by their update: the update is ~1e-5, far below what an
        // absolute parameter tolerance would notice.
        for (key, init) in tracked.iter().zip(&init) {
            let got = param(&model, key);
            let want = reference.f32s(&format!("sgd_step{}_{key}", step + 1));
            let max_ref = want
                .iter()
                .zip(init)
                .map(|(r, i)| (r - i).abs())
                .fold(0.0f32, f32::max);
            let err = got
                .iter()
                .zip(&want)
                .zip(init)
                .map(|((g, r), i)| ((g - i) - (r - i)).abs())
                .fold(0.0f32, f32::max);
            let limit = 1e-2 * max_ref + 1e-8;
            println!(
                "step {} {key}: update error {err:e}, limit {limit:e}",
                step + 1
            );
            assert!(
                err <= limit,
                "step {} {key}: update error {err:e} > {limit:e}",
                step + 1
            );
        }
        let checksums = &sgd["steps"][step]["param_checksums_after_update"];
        let mut worst = 0.0f64;
        for (key, v) in torch_params(&model) {
            let abs_sum: f64 = v.iter().map(|&x| (x as f64).abs()).sum();
            let sq_sum: f64 = v.iter().map(|&x| (x as f64) * (x as f64)).sum();
            for (name, got) in [("abs_sum", abs_sum), ("sq_sum", sq_sum)] {
                let want = checksums[&key][name]
                    .as_f64()
                    .unwrap_or_else(|| panic!("checksum {key}.{name}"));
                let rel = (got - want).abs() / want.abs();
                worst = worst.max(rel);
                assert!(
                    rel <= checksum_rel,
                    "step {} {key} {name}: {got} vs {want} (rel {rel:e})",
                    step + 1
                );
            }
        }
        println!("step {}: worst checksum rel error {worst:e}", step + 1);
    }

    let (atol, rtol) = reference.tolerance("sgd_step2_logits_eval");
    let x = reference.tensor4("cifar_input", &flex());
    let logits = values(model.valid().forward(x));
    assert_close(
        "eval logits after SGD",
        &logits,
        &reference.f32s("sgd_step2_logits_eval"),
        atol,
        rtol,
    );
}

#[test]
fn torchvision_first_block_matches_pytorch() {
    let reference = Reference::load();
    let device = flex();
    let bytes =
        std::fs::read(reference.path("alexnet_conv1_safetensors")).expect("conv1 safetensors");
    let (model, report) = AlexNetConfig::torchvision()
        .init(&device)
        .load_weights_with(
            WeightSource::Bytes(&bytes, WeightFormat::Safetensors),
            LoadOptions {
                allow_missing: true,
                ..LoadOptions::default()
            },
        )
        .expect("conv1 loads");
    assert_eq!(
        report.loaded,
        vec![
            "features.0.bias".to_string(),
            "features.0.weight".to_string()
        ]
    );

    // The raw .bin copies of conv1 agree with what was loaded.
    assert_eq!(
        param(&model, "features.0.weight"),
        reference.f32s("alexnet_conv1_weight")
    );
    assert_eq!(
        param(&model, "features.0.bias"),
        reference.f32s("alexnet_conv1_bias")
    );

    let x = reference.tensor4("alexnet_input", &device);
    let out = model.forward_until(x, "features.2").expect("224x224 fits");
    assert_eq!(out.dims(), reference.shape("alexnet_features0to3_out"));
    let (atol, rtol) = reference.tolerance("alexnet_features0to3_out");
    assert_close(
        "torchvision features[0:3]",
        &values(out.flat()),
        &reference.f32s("alexnet_features0to3_out"),
        atol,
        rtol,
    );
}

/// The full eval forward of torchvision's seed-0 AlexNet against `alexnet_logits_eval`. The
/// 244 MB weights are not in the reference folder: regenerate them with
/// `torch.manual_seed(0); torch.save(torchvision.models.alexnet(weights=None).state_dict(), P)`
/// and set `KINDLING_ALEXNET_SEED0_WEIGHTS=P`; without it the test says so and checks nothing
/// (CI has no torch to regenerate them). Every loaded parameter is first checked against the
/// manifest's checksums, so a wrong file fails instead of passing by accident.
#[test]
fn torchvision_full_forward_matches_pytorch() {
    let Some(path) = std::env::var_os("KINDLING_ALEXNET_SEED0_WEIGHTS") else {
        println!(
            "skipped: set KINDLING_ALEXNET_SEED0_WEIGHTS to the regenerated seed-0 torchvision \
             weights to compare the full forward"
        );
        return;
    };
    let reference = Reference::load();
    let device = flex();
    let model = AlexNetConfig::torchvision()
        .init(&device)
        .valid()
        .load_weights(&path)
        .expect("seed-0 weights load");

    let key = reference.manifest["key_roles"]["alexnet_param_checksums"]
        .as_str()
        .expect("checksum key");
    let checksums = reference.manifest[key].as_object().expect("checksums");
    let params = torch_params(&model);
    assert_eq!(params.len(), checksums.len(), "parameter count");
    for (name, v) in &params {
        let want = checksums[name]["sum"].as_f64().expect("sum");
        let scale = checksums[name]["abs_sum"]
            .as_f64()
            .expect("abs_sum")
            .max(1.0);
        let got: f64 = v.iter().map(|&x| f64::from(x)).sum();
        assert!(
            (got - want).abs() <= 1e-5 * scale,
            "{name}: sum {got} != manifest {want}: not the seed-0 weights"
        );
    }

    let x = reference.tensor4("alexnet_input", &device);
    let logits = model.forward(x);
    assert_eq!(
        logits.dims().to_vec(),
        reference.shape("alexnet_logits_eval")
    );
    let (atol, rtol) = reference.tolerance("alexnet_logits_eval");
    let max = assert_close(
        "torchvision AlexNet logits",
        &values(logits),
        &reference.f32s("alexnet_logits_eval"),
        atol,
        rtol,
    );
    println!("torchvision AlexNet full forward: max abs difference {max:.3e}");
}
