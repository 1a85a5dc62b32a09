//! A training loop of your own from Kindling's crates: the built-in dataset, the augmentation
//! batcher with MixUp, a CIFAR AlexNet and SGD, on one device.
//!
//! ```sh
//! cargo xtask example custom_loop -- [STEPS]
//! ```

use burn::module::Module;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::Device;
use kindling_augment::Transform;
use kindling_augment::batched::{
    AugmentBatcher, AugmentOn, BatchMix, ImageSource, LabeledImage, soft_cross_entropy,
};
use kindling_model::{AlexNetConfig, WeightInit};
use kindling_trainer::data::synthetic::{CLASSES, Synthetic};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: usize = std::env::args().nth(1).map_or(Ok(20), |v| v.parse())?;
    let device = Device::flex().autodiff();
    device.seed(0);

    let data = Synthetic::new(0, 64 * steps);
    let batcher = AugmentBatcher::new(
        Transform::from(kindling_augment::pipelines::cifar()),
        AugmentOn::Cpu,
        CLASSES.len(),
        0,
    )
    .with_mix(BatchMix {
        cutmix_alpha: None, // MixUp only
        mixup_alpha: Some(0.2),
        ..BatchMix::default()
    });
    let mut model = AlexNetConfig::cifar()
        .with_init(WeightInit::Kaiming)
        .init(&device);
    let mut optim = SgdConfig::new().init();

    for step in 0..steps {
        let items = (step * 64..(step + 1) * 64)
            .map(|index| {
                let (image, label) = data.get(index);
                LabeledImage {
                    image: ImageSource::Pixels(image),
                    label,
                    index: index as u64,
                }
            })
            .collect();
        let batch = batcher.try_batch(items, &device)?;
        let loss = soft_cross_entropy(model.forward(batch.images), batch.targets)?;
        let value: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.01, model, grads);
        println!("step {step:>3}  loss {value:.4}");
    }
    println!("{} parameters trained", model.num_params());
    Ok(())
}
