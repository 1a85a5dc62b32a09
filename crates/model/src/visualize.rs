//! Pictures of what the network learned: first-layer filters and activation maps, tiled into
//! one in-memory image each (the caller decides where to save them).

use burn::tensor::{Tensor, TensorData};
use image::{Rgb, RgbImage};

use crate::error::ModelError;
use crate::model::{AlexNet, LayerId};

/// Layout of a tiled picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridOptions {
    /// Tiles per row; `None` picks a near-square grid.
    pub columns: Option<usize>,
    /// Each tile pixel becomes a `scale x scale` block (filters are only 3 to 11 pixels wide).
    pub scale: u32,
    /// Pixels of background between tiles.
    pub gap: u32,
}

impl Default for GridOptions {
    fn default() -> Self {
        Self {
            columns: None,
            scale: 4,
            gap: 1,
        }
    }
}

/// Per-filter statistics of a first-layer weight tensor, the numbers behind Figure 3 of the
/// paper (filters that learned frequency/orientation detectors have large norms and contrast).
#[derive(Debug, Clone, PartialEq)]
pub struct FilterStats {
    /// Output channel.
    pub index: usize,
    /// L2 norm of the filter.
    pub norm: f32,
    /// Mean over all weights.
    pub mean: f32,
    /// Mean absolute difference between the colour channels (0 for a grey filter).
    pub colourfulness: f32,
}

fn tensor_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    // A float tensor always converts to f32 data.
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

fn grid_shape(n: usize, columns: Option<usize>) -> (usize, usize) {
    let cols = columns
        .unwrap_or_else(|| (n as f64).sqrt().ceil() as usize)
        .max(1);
    (cols, n.div_ceil(cols).max(1))
}

/// Lays out `n` tiles of `w x h` pixels; `pixel(tile, x, y)` gives each pixel's colour.
fn tile(
    n: usize,
    (w, h): (usize, usize),
    options: GridOptions,
    pixel: impl Fn(usize, usize, usize) -> [u8; 3],
) -> RgbImage {
    let (cols, rows) = grid_shape(n, options.columns);
    let scale = options.scale.max(1);
    let (tw, th) = (w as u32 * scale, h as u32 * scale);
    let gap = options.gap;
    let width = cols as u32 * (tw + gap) + gap;
    let height = rows as u32 * (th + gap) + gap;
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for t in 0..n {
        let (col, row) = ((t % cols) as u32, (t / cols) as u32);
        let (ox, oy) = (gap + col * (tw + gap), gap + row * (th + gap));
        for y in 0..th {
            for x in 0..tw {
                let value = pixel(t, (x / scale) as usize, (y / scale) as usize);
                img.put_pixel(ox + x, oy + y, Rgb(value));
            }
        }
    }
    img
}

fn to_byte(v: f32, lo: f32, hi: f32) -> u8 {
    if hi > lo {
        ((v - lo) / (hi - lo) * 255.0).round().clamp(0.0, 255.0) as u8
    } else {
        128
    }
}

fn min_max(values: &[f32]) -> (f32, f32) {
    values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// Tiles RGB filters `[out, 3, kH, kW]` into one image, each filter stretched to the full
/// 0..255 range on its own so that weak filters stay visible.
pub fn filter_grid(weight: Tensor<4>, options: GridOptions) -> RgbImage {
    let [n, c, kh, kw] = weight.dims();
    let values = tensor_values(weight);
    let per = c * kh * kw;
    let ranges: Vec<(f32, f32)> = (0..n)
        .map(|i| min_max(&values[i * per..(i + 1) * per]))
        .collect();
    tile(n, (kw, kh), options, |t, x, y| {
        let (lo, hi) = ranges[t];
        let at = |ch: usize| {
            let ch = ch.min(c.saturating_sub(1));
            to_byte(values[t * per + ch * kh * kw + y * kw + x], lo, hi)
        };
        [at(0), at(1), at(2)]
    })
}

/// Tiles the channels of one sample of a feature map `[batch, C, H, W]` as grey images,
/// each channel normalised on its own (a dead channel is mid-grey).
pub fn activation_grid(
    activation: Tensor<4>,
    sample: usize,
    options: GridOptions,
) -> Result<RgbImage, ModelError> {
    let [batch, c, h, w] = activation.dims();
    if sample >= batch {
        return Err(ModelError::SampleOutOfRange {
            index: sample,
            batch,
        });
    }
    let values = tensor_values(activation.narrow(0, sample, 1));
    let per = h * w;
    let ranges: Vec<(f32, f32)> = (0..c)
        .map(|i| min_max(&values[i * per..(i + 1) * per]))
        .collect();
    Ok(tile(c, (w, h), options, |t, x, y| {
        let (lo, hi) = ranges[t];
        let v = to_byte(values[t * per + y * w + x], lo, hi);
        [v, v, v]
    }))
}

impl AlexNet {
    /// The filters of a 3-input-channel convolution (normally `features.0`) tiled into one
    /// image, like Figure 3 of the AlexNet paper.
    pub fn filter_image(
        &self,
        layer: impl Into<LayerId>,
        options: GridOptions,
    ) -> Result<RgbImage, ModelError> {
        let (_, spec) = self.resolve(layer)?;
        let weight = self.conv_weight(spec.name.as_str())?;
        let [_, channels, _, _] = weight.dims();
        if channels != 3 {
            return Err(ModelError::NotRgbFilters {
                layer: spec.name,
                channels,
            });
        }
        Ok(filter_grid(weight, options))
    }

    /// Per-filter statistics of a convolution's weights, sorted by output channel.
    pub fn filter_stats(&self, layer: impl Into<LayerId>) -> Result<Vec<FilterStats>, ModelError> {
        let weight = self.conv_weight(layer)?;
        let [n, c, kh, kw] = weight.dims();
        let values = tensor_values(weight);
        let per = c * kh * kw;
        Ok((0..n)
            .map(|i| {
                let f = &values[i * per..(i + 1) * per];
                let norm = f.iter().map(|v| v * v).sum::<f32>().sqrt();
                let mean = f.iter().sum::<f32>() / per as f32;
                let plane = kh * kw;
                let colourfulness = if c < 2 {
                    0.0
                } else {
                    let mut acc = 0.0;
                    for p in 0..plane {
                        let px: Vec<f32> = (0..c).map(|ch| f[ch * plane + p]).collect();
                        let m = px.iter().sum::<f32>() / c as f32;
                        acc += px.iter().map(|v| (v - m).abs()).sum::<f32>() / c as f32;
                    }
                    acc / plane as f32
                };
                FilterStats {
                    index: i,
                    norm,
                    mean,
                    colourfulness,
                }
            })
            .collect())
    }

    /// Runs `input` up to `layer` and tiles the feature maps of sample `sample`.
    pub fn activation_image(
        &self,
        input: Tensor<4>,
        layer: impl Into<LayerId>,
        sample: usize,
        options: GridOptions,
    ) -> Result<RgbImage, ModelError> {
        let (_, spec) = self.resolve(layer)?;
        let out = self.forward_until(input, spec.name.as_str())?;
        let shape = format!("{:?}", out.dims());
        let map = out.spatial().ok_or(ModelError::NotSpatial {
            layer: spec.name,
            shape,
        })?;
        activation_grid(map, sample, options)
    }
}

/// Builds a `[1, 3, H, W]` tensor from an RGB image, scaled to 0..1 and normalised with
/// ImageNet's mean and standard deviation (what torchvision's AlexNet weights expect).
pub fn image_to_tensor(img: &RgbImage, device: &burn::tensor::Device) -> Tensor<4> {
    const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    const STD: [f32; 3] = [0.229, 0.224, 0.225];
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0.0f32; 3 * w * h];
    for (x, y, px) in img.enumerate_pixels() {
        for c in 0..3 {
            data[c * w * h + y as usize * w + x as usize] =
                (px.0[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    Tensor::from_data(TensorData::new(data, [1, 3, h, w]), device)
}
