//! The two seed pipelines, also shipped as data in `crates/augment/pipelines/*.{toml,json}`.

use crate::transforms::{
    ColorJitter, Compose, Normalize, RandomCrop, RandomHorizontalFlip, RandomResizedCrop,
    RandomRotation, ToTensor,
};

/// CIFAR training augmentation: `RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`,
/// `ColorJitter(brightness=0.2, contrast=0.2)`, `ToTensor()`,
/// `Normalize([0.5] * 3, [0.5] * 3)`. Expects 3-channel u8 input of at least 24x24.
pub fn cifar() -> Compose {
    Compose::new([
        RandomCrop::new(32).padding(4).into(),
        RandomHorizontalFlip::default().into(),
        ColorJitter::new().brightness(0.2).contrast(0.2).into(),
        ToTensor.into(),
        Normalize::new([0.5; 3], [0.5; 3]).into(),
    ])
}

/// ImageNet training augmentation: `RandomResizedCrop(224)`, `RandomHorizontalFlip()`,
/// `ColorJitter(0.2, 0.2)`, `RandomRotation(15)`, `ToTensor()`,
/// `Normalize(IMAGENET_MEAN, IMAGENET_STD)`
/// (see [`functional::IMAGENET_MEAN`](crate::functional::IMAGENET_MEAN)). Expects 3-channel u8 input of any size.
pub fn imagenet() -> Compose {
    Compose::new([
        RandomResizedCrop::new(224).into(),
        RandomHorizontalFlip::default().into(),
        ColorJitter::new().brightness(0.2).contrast(0.2).into(),
        RandomRotation::new(15.0).into(),
        ToTensor.into(),
        // The f64 literals of `functional::IMAGENET_MEAN`/`IMAGENET_STD`, so that the config files
        // (which hold the decimal values) compare equal; they round to the same f32.
        Normalize::new([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).into(),
    ])
}
