//! A burn [`Batcher`]: decode, augment (on the CPU or on the device), stack, mix, and hand
//! over image and target tensors.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

use super::mix::{BatchMix, mixed_targets};
use super::ops::Dtype;
use super::pipeline::{DeviceBatch, augment_batch};
use crate::buffer::Image;
use crate::error::{AugmentError, Result};
use crate::seed::sample_rng;
use crate::tensor::batch_to_tensor;
use crate::transforms::{Augment, Transform};

/// Where a dataset item's pixels come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// An encoded file (PNG, JPEG), decoded to RGB by the batcher.
    Encoded(Vec<u8>),
    /// Decoded pixels.
    Pixels(Image<u8>),
}

/// One dataset item: its pixels, its class and its index in the dataset (which seeds its
/// augmentation, so a sample is augmented the same whatever batch it lands in).
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledImage {
    pub image: ImageSource,
    pub label: usize,
    pub index: u64,
}

/// Where [`AugmentBatcher`] runs the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AugmentOn {
    /// Per image on the CPU with rayon, then one copy into the batch tensor.
    #[default]
    Cpu,
    /// On the batch tensor, on the batcher's device ([`augment_batch`]).
    Device,
}

impl std::str::FromStr for AugmentOn {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(AugmentOn::Cpu),
            "device" => Ok(AugmentOn::Device),
            other => Err(format!("`{other}`: expected cpu or device")),
        }
    }
}

/// What [`AugmentBatcher`] yields: images `[N, C, H, W]`, soft targets `[N, num_classes]`
/// (one-hot, smoothed or mixed) and the original labels `[N]`.
#[derive(Debug, Clone)]
pub struct AugmentedBatch {
    pub images: Tensor<4>,
    pub targets: Tensor<2>,
    pub labels: Tensor<1, Int>,
}

/// Decodes, augments and batches [`LabeledImage`]s, then applies MixUp/CutMix if configured.
///
/// The pipeline must end in f32 (after `ToTensor`). Sample `i` is augmented with the RNG of
/// `(seed, epoch, item.index)`; the mix of a batch with that of `(seed ^ MIX_STREAM, epoch,
/// first item's index)`. Set the epoch with [`set_epoch`](Self::set_epoch) at the start of
/// every epoch. Errors (a corrupt image, a label out of range, a pipeline that cannot run)
/// come back as the batch's `Err`, naming the item.
#[derive(Debug)]
pub struct AugmentBatcher {
    pub pipeline: Transform,
    pub on: AugmentOn,
    pub mix: Option<BatchMix>,
    pub num_classes: usize,
    pub seed: u64,
    epoch: AtomicU64,
}

/// Salt that separates the batch-mix RNG stream from the per-sample streams.
const MIX_STREAM: u64 = 0x6D69_7862_6174_6368;

impl AugmentBatcher {
    pub fn new(pipeline: Transform, on: AugmentOn, num_classes: usize, seed: u64) -> Self {
        Self {
            pipeline,
            on,
            mix: None,
            num_classes,
            seed,
            epoch: AtomicU64::new(0),
        }
    }

    /// Adds MixUp/CutMix.
    pub fn with_mix(mut self, mix: BatchMix) -> Self {
        self.mix = Some(mix);
        self
    }

    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The fallible body of [`Batcher::batch`].
    pub fn try_batch(&self, items: Vec<LabeledImage>, device: &Device) -> Result<AugmentedBatch> {
        if items.is_empty() {
            return Err(AugmentError::unsupported(
                "AugmentBatcher",
                &[0],
                "the batch is empty",
            ));
        }
        let labels: Vec<usize> = items.iter().map(|it| it.label).collect();
        if let Some(it) = items.iter().find(|it| it.label >= self.num_classes) {
            return Err(AugmentError::param(
                "label",
                (it.index, it.label),
                format!("(item index, label) with label below {}", self.num_classes),
            ));
        }
        let epoch = self.epoch();
        let indices: Vec<u64> = items.iter().map(|it| it.index).collect();
        let images: Vec<Image<u8>> = items
            .into_par_iter()
            .map(|it| decode(it.image, it.index))
            .collect::<Result<_>>()?;
        let images = match self.on {
            AugmentOn::Cpu => {
                let out: Vec<Image<f32>> = images
                    .into_par_iter()
                    .zip(indices.par_iter())
                    .map(|(img, &i)| {
                        self.pipeline
                            .apply_seeded(img, self.seed, epoch, i)?
                            .into_f32()
                    })
                    .collect::<Result<_>>()?;
                batch_to_tensor(&out, device)?
            }
            AugmentOn::Device => {
                let batch = DeviceBatch::from_u8(&images, device)?;
                let out = augment_batch(&self.pipeline, batch, self.seed, epoch, &indices)?;
                if out.dtype != Dtype::F32 {
                    return Err(AugmentError::unsupported(
                        "AugmentBatcher",
                        &out.dims(),
                        "the pipeline must end in f32 (add ToTensor)",
                    ));
                }
                out.pixels
            }
        };
        let [_, _, h, w] = images.dims();
        let (images, targets) = match &self.mix {
            None => {
                let t = mixed_targets(&labels, self.num_classes, 1.0, 0.0, device)?;
                (images, t)
            }
            Some(mix) => {
                let mut rng = sample_rng(self.seed ^ MIX_STREAM, epoch, indices[0]);
                let draw = mix.draw(&mut rng, h, w)?;
                mix.apply(images, &labels, self.num_classes, draw)?
            }
        };
        let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let n = labels.len();
        Ok(AugmentedBatch {
            images,
            targets,
            labels: Tensor::from_data(TensorData::new(labels, [n]), device),
        })
    }
}

fn decode(source: ImageSource, index: u64) -> Result<Image<u8>> {
    match source {
        ImageSource::Pixels(img) => Ok(img),
        ImageSource::Encoded(bytes) => {
            let img = image::load_from_memory(&bytes).map_err(|e| AugmentError::Decode {
                index,
                message: e.to_string(),
            })?;
            Image::try_from(&img.to_rgb8())
        }
    }
}

impl Batcher<LabeledImage, Result<AugmentedBatch>> for AugmentBatcher {
    fn batch(&self, items: Vec<LabeledImage>, device: &Device) -> Result<AugmentedBatch> {
        self.try_batch(items, device)
    }
}
