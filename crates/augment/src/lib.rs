//! torchvision-compatible image augmentation.
//!
//! - [`Image`] holds a raw CHW buffer (u8 or f32); [`functional`] has the ops with fixed
//!   parameters, numerically matching `torchvision.transforms.v2.functional` on CPU (checked
//!   by the conformance test in `tests/it`).
//! - [`transforms`] has the random transforms with torchvision's names, defaults and sampling
//!   rules (`RandomCrop`, `ColorJitter`, `RandomResizedCrop`, ...), composed with [`Compose`]
//!   and applied through the [`Augment`] trait to a [`Sample`] (u8 before `ToTensor`, f32
//!   after).
//! - Reproducibility: every draw comes from the RNG passed in; [`sample_rng`] derives it from
//!   `(seed, epoch, index)`, so a sample's augmentation does not depend on thread order.
//!   [`Augment::apply_recorded`] returns the drawn parameters ([`Applied`]) and
//!   [`Augment::replay`] re-applies them exactly.
//! - Pipelines are data: [`Transform`] (de)serialises to JSON and TOML, tagged by the
//!   torchvision class name; [`pipelines`] has the CIFAR and ImageNet recipes, also shipped as
//!   `pipelines/*.toml` and `*.json`.
//!
//! Gray (1-channel) or RGBA (4-channel) input to an RGB-only transform (`ColorJitter`) is an
//! [`AugmentError::UnsupportedInput`] naming the channel count; geometric transforms accept
//! any channel count.
//!
//! ```
//! use kindling_augment::functional::{self as f, Interpolation};
//! use kindling_augment::transforms::{
//!     ColorJitter, Normalize, RandomCrop, RandomHorizontalFlip, ToTensor,
//! };
//! use kindling_augment::{Augment, Compose, Image, Transform};
//!
//! // Functional ops with fixed parameters.
//! let img = Image::<u8>::filled(128, 3, 48, 64)?;
//! let img = f::horizontal_flip(&f::resize(&img, [32, 32], Interpolation::Bilinear, true)?);
//! let img = f::adjust_brightness(&img, 1.2)?;
//! let x = f::normalize(&f::to_f32(&img), &f::IMAGENET_MEAN, &f::IMAGENET_STD)?;
//! assert_eq!(x.shape(), [3, 32, 32]);
//!
//! // A random pipeline, seeded per (seed, epoch, sample index).
//! let cifar = Compose::new([
//!     RandomCrop::new(32).padding(4).into(),
//!     RandomHorizontalFlip::default().into(),
//!     ColorJitter::new().brightness(0.2).contrast(0.2).into(),
//!     ToTensor.into(),
//!     Normalize::new([0.5; 3], [0.5; 3]).into(),
//! ]);
//! let out = cifar.apply_seeded(img.clone(), 42, 0, 7)?;
//! assert_eq!((out.shape(), out.dtype()), ([3, 32, 32], "f32"));
//! assert_eq!(out, cifar.apply_seeded(img, 42, 0, 7)?);
//!
//! // The same pipeline as data.
//! let toml = r#"
//! type = "Compose"
//! [[transforms]]
//! type = "RandomCrop"
//! size = 32
//! padding = 4
//! [[transforms]]
//! type = "RandomHorizontalFlip"
//! [[transforms]]
//! type = "ColorJitter"
//! brightness = 0.2
//! contrast = 0.2
//! [[transforms]]
//! type = "ToTensor"
//! [[transforms]]
//! type = "Normalize"
//! mean = [0.5, 0.5, 0.5]
//! std = [0.5, 0.5, 0.5]
//! "#;
//! assert_eq!(Transform::from_toml(toml)?, Transform::from(cifar));
//! # Ok::<(), kindling_augment::AugmentError>(())
//! ```

mod batch;
pub mod batched;
mod buffer;
mod error;
mod fast;
pub mod functional;
pub mod pipelines;
mod seed;
mod simd;
mod tensor;
pub mod transforms;

pub use batch::{Batch, apply_batch};
pub use buffer::{Image, Pixel};
pub use error::{AugmentError, Result};
pub use seed::{sample_rng, sample_seed};
pub use tensor::batch_to_tensor;
pub use transforms::{Applied, Augment, Compose, Sample, Transform};
