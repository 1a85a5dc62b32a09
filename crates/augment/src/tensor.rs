//! Handing augmented images to burn: a batch becomes one `Tensor<4>` [N, C, H, W] f32.

use burn::tensor::{Device, Tensor, TensorData};

use crate::{AugmentError, Image, Result};

/// Stacks same-shaped CHW images into one [N, C, H, W] tensor on `device`.
///
/// The pixels are copied once, into the buffer burn takes ownership of; images of different
/// shapes or an empty batch are errors naming the offending sample.
pub fn batch_to_tensor(images: &[Image<f32>], device: &Device) -> Result<Tensor<4>> {
    let first = images
        .first()
        .ok_or_else(|| AugmentError::unsupported("batch_to_tensor", &[0], "the batch is empty"))?;
    let [c, h, w] = first.shape();
    let mut data = Vec::with_capacity(images.len() * c * h * w);
    for (i, img) in images.iter().enumerate() {
        if img.shape() != [c, h, w] {
            return Err(AugmentError::unsupported(
                "batch_to_tensor",
                &img.shape(),
                format!("sample {i} differs from sample 0's shape {:?}", [c, h, w]),
            ));
        }
        data.extend_from_slice(img.as_slice());
    }
    let data = TensorData::new(data, [images.len(), c, h, w]);
    Ok(Tensor::from_data(data, device))
}
