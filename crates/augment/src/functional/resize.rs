//! Resizing, following torch's CPU `interpolate` kernels as torchvision v2 calls them.

use crate::buffer::{Image, Pixel};
use crate::error::{AugmentError, Result};
use crate::functional::geometry::{check_box, crop};

/// Resampling filter (torchvision's `InterpolationMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// torch's legacy `nearest` (not `nearest-exact`).
    Nearest,
    /// Triangle filter with half-pixel centres (`align_corners=False`).
    Bilinear,
}

/// A crop box in pixels: rows `top..top+height`, columns `left..left+width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// Resizes to `[height, width]`. With `antialias`, downscaling widens the bilinear filter by the
/// scale factor (Pillow's semantics); it has no effect on `Nearest` or on upscaling.
pub fn resize<T: Pixel>(
    img: &Image<T>,
    size: [usize; 2],
    interpolation: Interpolation,
    antialias: bool,
) -> Result<Image<T>> {
    let [out_h, out_w] = size;
    if out_h == 0 || out_w == 0 {
        return Err(AugmentError::param(
            "size",
            size,
            "both dimensions at least 1",
        ));
    }
    match interpolation {
        Interpolation::Nearest => resize_nearest(img, out_h, out_w),
        Interpolation::Bilinear => {
            let [c, h, w] = img.shape();
            let mut out = img.clone();
            // Horizontal pass first, then vertical, each skipped when its size is unchanged: the
            // order matters for u8, which is rounded to u8 between the passes.
            if out_w != w {
                let taps = AxisTaps::bilinear(w, out_w, antialias);
                let src = out.as_slice();
                let mut data = Vec::with_capacity(c * h * out_w);
                for row in src.chunks_exact(w) {
                    data.extend((0..out_w).map(|x| taps.apply(x, |k| row[k])));
                }
                out = Image::from_vec_unchecked(data, c, h, out_w);
            }
            if out_h != h {
                let taps = AxisTaps::bilinear(h, out_h, antialias);
                let cur_w = out.width();
                let src = out.as_slice();
                let mut data = Vec::with_capacity(c * out_h * cur_w);
                for plane in src.chunks_exact(h * cur_w) {
                    for y in 0..out_h {
                        data.extend((0..cur_w).map(|x| taps.apply(y, |k| plane[k * cur_w + x])));
                    }
                }
                out = Image::from_vec_unchecked(data, c, out_h, cur_w);
            }
            Ok(out)
        }
    }
}

/// Crops `crop_box` and resizes the crop to `size` (`[height, width]`).
pub fn resized_crop<T: Pixel>(
    img: &Image<T>,
    crop_box: CropBox,
    size: [usize; 2],
    interpolation: Interpolation,
    antialias: bool,
) -> Result<Image<T>> {
    let CropBox {
        top,
        left,
        height,
        width,
    } = crop_box;
    check_box("resized_crop", img, top, left, height, width)?;
    resize(
        &crop(img, top, left, height, width)?,
        size,
        interpolation,
        antialias,
    )
}

fn resize_nearest<T: Pixel>(img: &Image<T>, out_h: usize, out_w: usize) -> Result<Image<T>> {
    let ys: Vec<usize> = (0..out_h)
        .map(|i| nearest_source(i, img.height(), out_h))
        .collect();
    let xs: Vec<usize> = (0..out_w)
        .map(|i| nearest_source(i, img.width(), out_w))
        .collect();
    Image::from_fn([img.channels(), out_h, out_w], |c, y, x| {
        img.get(c, ys[y], xs[x])
    })
}

/// torch's `nearest_idx`: `min(floor(dst * (in / out)), in - 1)` with the scale in f32, which
/// is why it is not simply `dst * in / out` in integers.
fn nearest_source(dst: usize, input: usize, output: usize) -> usize {
    if output == input {
        dst
    } else if output == 2 * input {
        dst >> 1
    } else {
        let scale = input as f32 / output as f32;
        ((dst as f32 * scale).floor() as usize).min(input - 1)
    }
}

/// Per-output-position filter taps along one axis.
///
/// Weights are computed in f64 as torch does for its u8 kernel, which then quantises them to
/// fixed point (`weights_i`, `precision` fractional bits); the float path uses them as f32.
#[derive(Debug)]
struct AxisTaps {
    start: Vec<usize>,
    len: Vec<usize>,
    stride: usize,
    weights_f: Vec<f32>,
    weights_i: Vec<i32>,
    precision: u32,
}

impl AxisTaps {
    /// torch's `_compute_indices_min_size_weights_aa` with the triangle filter.
    fn bilinear(input: usize, output: usize, antialias: bool) -> Self {
        let scale = input as f64 / output as f64;
        let widen = antialias && scale >= 1.0;
        let support = if widen { scale } else { 1.0 };
        let stride = if antialias {
            support.ceil() as usize * 2 + 1
        } else {
            2
        };
        let invscale = if widen { 1.0 / scale } else { 1.0 };
        let mut start = Vec::with_capacity(output);
        let mut len = Vec::with_capacity(output);
        let mut weights = vec![0.0f64; output * stride];
        let mut wt_max = 0.0f64;
        for i in 0..output {
            let center = scale * (i as f64 + 0.5);
            // `as i64` truncates toward zero, like the C++ static_cast.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(input as i64);
            let n = (xmax - xmin).clamp(0, stride as i64) as usize;
            let w = &mut weights[i * stride..i * stride + n];
            let mut total = 0.0;
            for (j, wj) in w.iter_mut().enumerate() {
                let x = ((j as i64 + xmin) as f64 - center + 0.5) * invscale;
                *wj = (1.0 - x.abs()).max(0.0);
                total += *wj;
            }
            if total != 0.0 {
                for wj in w.iter_mut() {
                    *wj /= total;
                    wt_max = wt_max.max(*wj);
                }
            }
            start.push(xmin as usize);
            len.push(n);
        }
        // The most fractional bits that keep the largest weight below 2^15 (int16 weights).
        let mut precision = 0;
        while precision < 22
            && ((0.5 + wt_max * f64::from(1u32 << (precision + 1))) as i64) < (1 << 15)
        {
            precision += 1;
        }
        let unit = f64::from(1u32 << precision);
        let weights_i = weights
            .iter()
            .map(|&w| {
                let v = w * unit;
                if v < 0.0 {
                    (v - 0.5) as i32
                } else {
                    (v + 0.5) as i32
                }
            })
            .collect();
        Self {
            start,
            len,
            stride,
            weights_f: weights.iter().map(|&w| w as f32).collect(),
            weights_i,
            precision,
        }
    }

    /// The filtered value at output position `i`; `src(k)` reads input position `k`.
    fn apply<T: Pixel>(&self, i: usize, src: impl Fn(usize) -> T) -> T {
        let (s, n) = (self.start[i], self.len[i]);
        let taps = i * self.stride..i * self.stride + n;
        if T::IS_FLOAT {
            let mut acc = 0.0f32;
            for (k, &w) in self.weights_f[taps].iter().enumerate() {
                acc += src(s + k).to_f32() * w;
            }
            T::from_f32_trunc(acc)
        } else {
            // Fixed point with round-half-up, as torch's u8 kernel (and Pillow) do.
            let mut acc: i64 = if self.precision > 0 {
                1 << (self.precision - 1)
            } else {
                0
            };
            for (k, &w) in self.weights_i[taps].iter().enumerate() {
                acc += src(s + k).to_f32() as i64 * i64::from(w);
            }
            T::from_f32_trunc((acc >> self.precision).clamp(0, 255) as f32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity() {
        let img = Image::<u8>::from_chw((0..48).collect(), 3, 4, 4).expect("valid");
        for interp in [Interpolation::Nearest, Interpolation::Bilinear] {
            assert_eq!(resize(&img, [4, 4], interp, true).expect("ok"), img);
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = Image::<u8>::filled(77, 3, 9, 13).expect("valid");
        for aa in [false, true] {
            let out = resize(&img, [4, 20], Interpolation::Bilinear, aa).expect("ok");
            assert!(out.as_slice().iter().all(|&v| v == 77));
        }
    }

    #[test]
    fn rejects_bad_sizes_and_boxes() {
        let img = Image::<f32>::filled(0.5, 3, 8, 8).expect("valid");
        assert!(resize(&img, [0, 4], Interpolation::Bilinear, true).is_err());
        let b = CropBox {
            top: 4,
            left: 0,
            height: 5,
            width: 8,
        };
        assert!(resized_crop(&img, b, [4, 4], Interpolation::Nearest, false).is_err());
    }
}
