//! torchvision-compatible image augmentation.
//!
//! [`Image`] holds a raw CHW buffer (u8 or f32); [`functional`] has the ops with fixed
//! parameters, numerically matching `torchvision.transforms.v2.functional` on CPU (checked by the
//! conformance test in `tests/it`).
//!
//! ```
//! use kindling_augment::Image;
//! use kindling_augment::functional::{self as f, Interpolation};
//!
//! let img = Image::<u8>::filled(128, 3, 48, 64)?;
//! let img = f::horizontal_flip(&f::resize(&img, [32, 32], Interpolation::Bilinear, true)?);
//! let img = f::adjust_brightness(&img, 1.2)?;
//! let x = f::normalize(&f::to_f32(&img), &f::IMAGENET_MEAN, &f::IMAGENET_STD)?;
//! assert_eq!(x.shape(), [3, 32, 32]);
//! # Ok::<(), kindling_augment::AugmentError>(())
//! ```

mod buffer;
mod error;
pub mod functional;

pub use buffer::{Image, Pixel};
pub use error::{AugmentError, Result};
