//! Applying a pipeline to a batch of images in parallel (rayon).

use rayon::prelude::*;

use crate::buffer::Image;
use crate::error::{AugmentError, Result};
use crate::transforms::Augment;

/// A batch of f32 CHW images stacked into one contiguous `[N, C, H, W]` buffer, ready to
/// become a `Tensor<B, 4>` with one copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub data: Vec<f32>,
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
}

/// Runs `pipeline` on every image with rayon, image `i` with the RNG of sample
/// `first_index + i` in `epoch` of a run seeded with `seed`
/// ([`sample_rng`](crate::sample_rng)), so the result does not depend on the thread count.
///
/// The pipeline must end in f32 (after `ToTensor`) and give every image the same shape;
/// otherwise the error is an [`AugmentError::UnsupportedInput`] or
/// [`AugmentError::SizeMismatch`]. An empty slice gives an empty batch of shape `[0, 0, 0, 0]`.
pub fn apply_batch<A: Augment + Sync>(
    pipeline: &A,
    images: &[Image<u8>],
    seed: u64,
    epoch: u64,
    first_index: u64,
) -> Result<Batch> {
    let Some(first) = images.first() else {
        return Ok(Batch {
            data: Vec::new(),
            shape: [0; 4],
        });
    };
    let x0 = pipeline
        .apply_seeded(first.clone(), seed, epoch, first_index)?
        .into_f32()?;
    let [c, h, w] = x0.shape();
    let chw = c * h * w;
    let mut data = vec![0.0f32; images.len() * chw];
    data[..chw].copy_from_slice(x0.as_slice());
    data[chw..]
        .par_chunks_mut(chw)
        .zip(images[1..].par_iter())
        .enumerate()
        .try_for_each(|(i, (out, img))| -> Result<()> {
            let x = pipeline
                .apply_seeded(img.clone(), seed, epoch, first_index + 1 + i as u64)?
                .into_f32()?;
            if x.shape() != [c, h, w] {
                return Err(AugmentError::mismatch(
                    "batch image elements (all outputs must have the first one's shape)",
                    chw,
                    x.as_slice().len(),
                ));
            }
            out.copy_from_slice(x.as_slice());
            Ok(())
        })?;
    Ok(Batch {
        data,
        shape: [images.len(), c, h, w],
    })
}
