//! Functional ops with fixed parameters, named and behaving like
//! `torchvision.transforms.v2.functional` on CHW tensors.

mod color;
mod geometry;
mod mix;
mod resize;
mod rotate;

pub use color::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, normalize, to_f32, to_u8,
};
pub(crate) use geometry::source_index;
pub use geometry::{
    Padding, PaddingMode, center_crop, crop, erase, erase_in_place, horizontal_flip,
    horizontal_flip_in_place, pad, vertical_flip,
};
pub use mix::{MixBox, Mixed, cutmix, mixup};
pub(crate) use mix::{cutmix_lambda, smoothed_mix_targets};
pub(crate) use resize::axis_matrix;
pub use resize::{CropBox, Interpolation, resize, resized_crop};
pub use rotate::rotate;
pub(crate) use rotate::{NearestMap, expanded_size, grid_rows, inverse_matrix};

/// ImageNet channel means, the usual `normalize` parameters.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
