//! `kindling-model`: the AlexNet family for burn, with torchinfo-style introspection and
//! torchvision weight loading.
//!
//! Three networks share one [`AlexNetConfig`] with a [`Variant`]: the 32x32
//! [CIFAR AlexNet](Variant::Cifar), [torchvision's AlexNet](Variant::Torchvision) and the
//! [2012 paper's network](Variant::Paper) (local response normalisation, optional grouped
//! convolutions). Parameters carry torchvision's names (`features.0.weight`,
//! `classifier.6.bias`), so torchvision state dicts load without key remapping.
//!
//! Where to start:
//! - build: `AlexNetConfig::cifar().init(&Device::flex())`, then [`AlexNet::forward`];
//! - weights: [`AlexNet::load_weights`] (`.pth` / `.safetensors`, torchvision layout),
//!   [`AlexNet::save_checkpoint`] / [`AlexNet::load_checkpoint`] for Kindling's own files;
//! - introspection: [`AlexNet::summary`] (a [`ModelSummary`] that prints as a table and
//!   serialises to JSON), [`AlexNet::forward_until`], [`AlexNet::capture`], [`AlexNet::layer`];
//! - pictures: [`AlexNet::filter_image`] and [`AlexNet::activation_image`].
//!
//! Errors are typed: [`ModelError`] for inputs and layer references, [`WeightError`] for files.

mod error;
mod model;
mod summary;
mod visualize;
mod weights;

pub use error::{ModelError, StateDictMismatch, WeightError, WeightFormat};
pub use model::{
    Activation, AlexNet, AlexNetConfig, Captured, ClassifierLayer, FeatureLayer, LayerId,
    LayerKind, LayerRef, LayerSpec, Variant, WeightInit,
};
pub use summary::{LayerSummary, ModelSummary, ReceptiveField};
pub use visualize::{FilterStats, GridOptions, activation_grid, filter_grid, image_to_tensor};
pub use weights::{LoadOptions, LoadReport, WeightSource};
