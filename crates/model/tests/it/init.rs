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
