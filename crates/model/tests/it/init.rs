use burn::tensor::Device;
use kindling_model::{AlexNetConfig, WeightInit};

fn std_of(values: &[f32]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    (values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

fn conv_values(init: WeightInit, layer: &str) -> Vec<f32> {
    let model = AlexNetConfig::cifar().with_init(init).init(&Device::flex());
    let weight = model.conv_weight(layer).expect("a convolution");
    weight
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 values")
}

/// He initialisation draws conv weights with std sqrt(2 / fan_out); PyTorch's default gives
/// uniform(±1/sqrt(fan_in)), i.e. std 1/sqrt(3 fan_in).
#[test]
fn kaiming_and_torch_inits_have_their_documented_spread() {
    // features.3 of the CIFAR network: 64 -> 192 channels, 3x3.
    let (fan_in, fan_out) = (64.0 * 9.0, 192.0 * 9.0);
    let he = std_of(&conv_values(WeightInit::Kaiming, "features.3"));
    let torch = std_of(&conv_values(WeightInit::Torch, "features.3"));
    let he_expected = (2.0f64 / fan_out).sqrt();
    let torch_expected = 1.0 / (3.0f64 * fan_in).sqrt();
    assert!(
        (he / he_expected - 1.0).abs() < 0.05,
        "He std {he} vs {he_expected}"
    );
    assert!(
        (torch / torch_expected - 1.0).abs() < 0.05,
        "torch std {torch} vs {torch_expected}"
    );
}

/// Every parameter, biases included, is trainable under both inits and every variant: a
/// backward pass gives each one a gradient. (He init once zeroed the biases with a tensor that
/// autodiff did not track, so they never trained.)
#[test]
fn every_parameter_gets_a_gradient_under_both_inits() {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::Tensor;
    struct Missing<'a>(&'a GradientsParams, Vec<String>, usize);
    impl ModuleVisitor for Missing<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.2 += 1;
            if self.0.get::<D>(p.id).is_none() {
                self.1.push(format!("{:?}", p.shape()));
            }
        }
    }
    let device = Device::flex().autodiff();
    for init in [WeightInit::Kaiming, WeightInit::Torch] {
        for (config, side) in [
            (AlexNetConfig::cifar(), 32),
            (AlexNetConfig::paper(true), 227),
        ] {
            let model = config.clone().with_init(init).init(&device);
            let x = Tensor::<4>::ones([1, 3, side, side], &device);
            let grads = GradientsParams::from_grads(model.forward(x).sum().backward(), &model);
            let mut missing = Missing(&grads, Vec::new(), 0);
            model.visit(&mut missing);
            assert!(missing.2 >= 16, "{init:?}: {} parameters", missing.2);
            assert!(
                missing.1.is_empty(),
                "{init:?} {side}: parameters without a gradient: {:?}",
                missing.1
            );
        }
    }
}
