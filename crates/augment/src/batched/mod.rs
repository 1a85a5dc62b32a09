//! Augmentation of whole batches on burn tensors, on whatever device the batch lives on, with
//! a different random draw per sample (kornia's and DALI's model, unlike torchvision's batched
//! tensors that share one draw).
//!
//! - [`ops`]: functional ops on `[N, C, H, W]` with per-sample parameters.
//! - [`augment_batch`]: runs a [`Transform`](crate::Transform) pipeline on a [`DeviceBatch`];
//!   sample `i` draws its parameters from the RNG of `(seed, epoch, indices[i])` in the same
//!   order as the CPU path, so the two paths give the same sample.
//! - [`mix`]: MixUp, CutMix, timm's switch between them and the soft-target loss.
//! - [`AugmentBatcher`]: a burn `Batcher` that decodes, augments (CPU or device) and mixes.
//!
//! ```
//! use burn::tensor::Device;
//! use kindling_augment::batched::{DeviceBatch, Dtype, augment_batch};
//! use kindling_augment::{Image, Transform, pipelines};
//!
//! let device = Device::flex();
//! let images = vec![Image::<u8>::filled(100, 3, 32, 32)?; 4];
//! let batch = DeviceBatch::from_u8(&images, &device)?;
//! let out = augment_batch(&Transform::from(pipelines::cifar()), batch, 42, 0, &[0, 1, 2, 3])?;
//! assert_eq!((out.dims(), out.dtype), ([4, 3, 32, 32], Dtype::F32));
//! # Ok::<(), kindling_augment::AugmentError>(())
//! ```

mod batcher;
pub mod mix;
pub mod ops;
mod pipeline;

pub use batcher::{AugmentBatcher, AugmentOn, AugmentedBatch, ImageSource, LabeledImage};
pub use mix::{BatchMix, MixDraw, soft_cross_entropy};
pub use ops::Dtype;
pub use pipeline::{
    DeviceBatch, Kernels, augment_batch, augment_batch_recorded, augment_batch_with, replay_batch,
    replay_batch_with,
};
