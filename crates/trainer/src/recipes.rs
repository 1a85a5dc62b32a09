//! The default pipelines of a run: torchvision's reference recipes for the model's input size.

use kindling_augment::Transform;
use kindling_augment::transforms::{CenterCrop, Compose, Normalize, Resize, ToTensor};

/// Inputs up to this side get the CIFAR recipes; larger ones the ImageNet recipes.
const SMALL: usize = 64;

/// The training pipeline for a `side` x `side` model; `folder` data (any size) is resized to
/// the side first by the small-input recipe.
pub fn train(side: usize, folder: bool) -> Transform {
    if side <= SMALL {
        let mut steps = fit(side, folder);
        steps.extend(cifar(side));
        Compose::new(steps).into()
    } else {
        imagenet(side)
    }
}

/// The evaluation pipeline: the image as it is (resized to the side for `folder` data) at small
/// sides; torchvision's `Resize(side * 256 / 224)` + `CenterCrop(side)` at large ones.
pub fn eval(side: usize, folder: bool) -> Transform {
    if side <= SMALL {
        let mut steps = fit(side, folder);
        steps.extend([ToTensor.into(), Normalize::new([0.5; 3], [0.5; 3]).into()]);
        Compose::new(steps).into()
    } else {
        Compose::new([
            Resize::new(side * 256 / 224).into(),
            CenterCrop::new(side).into(),
            ToTensor.into(),
            imagenet_normalize().into(),
        ])
        .into()
    }
}

fn fit(side: usize, folder: bool) -> Vec<Transform> {
    if folder {
        vec![Resize::new([side, side]).into()]
    } else {
        Vec::new()
    }
}

/// torchvision's reference CIFAR recipe at side `side`: `RandomCrop(side, padding=side/8)`,
/// flip, `ColorJitter(0.2, 0.2)`, normalised to [-1, 1] (at 32: `pipelines::cifar()`).
fn cifar(side: usize) -> Vec<Transform> {
    use kindling_augment::transforms::{ColorJitter, RandomCrop, RandomHorizontalFlip};
    vec![
        RandomCrop::new(side).padding(side / 8).into(),
        RandomHorizontalFlip::default().into(),
        ColorJitter::new().brightness(0.2).contrast(0.2).into(),
        ToTensor.into(),
        Normalize::new([0.5; 3], [0.5; 3]).into(),
    ]
}

/// The ImageNet recipe at crop `side` (at 224: `pipelines::imagenet()`).
fn imagenet(side: usize) -> Transform {
    use kindling_augment::transforms::{
        ColorJitter, RandomHorizontalFlip, RandomResizedCrop, RandomRotation,
    };
    Compose::new([
        RandomResizedCrop::new(side).into(),
        RandomHorizontalFlip::default().into(),
        ColorJitter::new().brightness(0.2).contrast(0.2).into(),
        RandomRotation::new(15.0).into(),
        ToTensor.into(),
        imagenet_normalize().into(),
    ])
    .into()
}

fn imagenet_normalize() -> Normalize {
    Normalize::new([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
}
