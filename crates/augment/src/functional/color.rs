//! Colour ops and dtype conversion, following torchvision v2's tensor kernels.
//!
//! The u8 variants compute in f32 and then truncate (torch's `.to(uint8)`), not round: rounding
//! would differ from torchvision by one level on about half of the pixels.

use crate::buffer::{Image, Pixel};
use crate::error::{AugmentError, Result, check_range};

/// u8 -> f32 in `[0, 1]`, bit-exact with torchvision's `to_dtype(float32, scale=True)`.
pub fn to_f32(img: &Image<u8>) -> Image<f32> {
    img.map(Pixel::to_unit)
}

/// f32 in `[0, 1]` -> u8 with torchvision's rule `trunc(x * 255.999)` (not `round(x * 255)`).
/// Values outside `[0, 1]` saturate.
pub fn to_u8(img: &Image<f32>) -> Image<u8> {
    img.map(<u8 as Pixel>::from_unit)
}

/// `(x - mean[c]) / std[c]`; divides rather than multiplying by `1/std`, like torchvision.
pub fn normalize(img: &Image<f32>, mean: &[f32], std: &[f32]) -> Result<Image<f32>> {
    let c = img.channels();
    for (name, v) in [("mean", mean), ("std", std)] {
        if v.len() != c {
            return Err(AugmentError::mismatch(
                format!("normalize `{name}` values per channel"),
                c,
                v.len(),
            ));
        }
    }
    if let Some(s) = std.iter().find(|s| !s.is_finite() || **s == 0.0) {
        return Err(AugmentError::param("std", s, "finite and non-zero"));
    }
    if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
        return Err(AugmentError::param("mean", m, "finite"));
    }
    let plane = img.height() * img.width();
    let mut out = img.clone();
    for (k, v) in out.as_mut_slice().iter_mut().enumerate() {
        let ch = k / plane;
        *v = (*v - mean[ch]) / std[ch];
    }
    Ok(out)
}

/// Multiplies every component by `factor` and clamps.
pub fn adjust_brightness<T: Pixel>(img: &Image<T>, factor: f64) -> Result<Image<T>> {
    check_range("brightness_factor", factor, 0.0, f64::MAX)?;
    let f = factor as f32;
    Ok(img.map(|v| T::from_f32_trunc((v.to_f32() * f).clamp(0.0, T::MAX))))
}

/// Blends with the mean of the grayscale image. For u8 the grayscale is floored before the
/// mean is taken, as torchvision does.
pub fn adjust_contrast<T: Pixel>(img: &Image<T>, factor: f64) -> Result<Image<T>> {
    check_range("contrast_factor", factor, 0.0, f64::MAX)?;
    let gray: Vec<f32> = match img.channels() {
        3 => grayscale(img),
        1 => img.as_slice().iter().map(|v| v.to_f32()).collect(),
        _ => {
            return Err(AugmentError::unsupported(
                "adjust_contrast",
                &img.shape(),
                "needs 1 or 3 channels",
            ));
        }
    };
    // For u8 the floored grays are integers and the f64 sum is exact; torch sums in f32 and
    // divides the sum by the element count.
    let sum: f64 = gray.iter().map(|&g| f64::from(g)).sum();
    let mean = sum as f32 / gray.len() as f32;
    Ok(blend(img, factor, |_| mean))
}

/// Blends each pixel with its own grayscale value (floored for u8).
pub fn adjust_saturation<T: Pixel>(img: &Image<T>, factor: f64) -> Result<Image<T>> {
    check_range("saturation_factor", factor, 0.0, f64::MAX)?;
    match img.channels() {
        1 => Ok(img.clone()),
        3 => {
            let gray = grayscale(img);
            let plane = gray.len();
            Ok(blend(img, factor, |k| gray[k % plane]))
        }
        _ => Err(AugmentError::unsupported(
            "adjust_saturation",
            &img.shape(),
            "needs 1 or 3 channels",
        )),
    }
}

/// `0.2989 R + 0.587 G + 0.114 B` per pixel in f32, floored for u8 input.
fn grayscale<T: Pixel>(img: &Image<T>) -> Vec<f32> {
    let (r, g, b) = (img.plane(0), img.plane(1), img.plane(2));
    r.iter()
        .zip(g)
        .zip(b)
        .map(|((r, g), b)| {
            // torch: r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114); its vectorised
            // add-with-alpha is a fused multiply-add.
            let l = b
                .to_f32()
                .mul_add(0.114, g.to_f32().mul_add(0.587, r.to_f32() * 0.2989));
            if T::IS_FLOAT { l } else { l.floor() }
        })
        .collect()
}

/// torchvision's `_blend`: `clamp(x * ratio + other * (1 - ratio))`, `other` indexed by the
/// component's flat CHW index.
fn blend<T: Pixel>(img: &Image<T>, ratio: f64, other: impl Fn(usize) -> f32) -> Image<T> {
    let r = ratio as f32;
    let alpha = (1.0 - ratio) as f32;
    let mut out = Vec::with_capacity(img.as_slice().len());
    for (k, v) in img.as_slice().iter().enumerate() {
        let y = other(k).mul_add(alpha, v.to_f32() * r);
        out.push(T::from_f32_trunc(y.clamp(0.0, T::MAX)));
    }
    Image::from_vec_unchecked(out, img.channels(), img.height(), img.width())
}

/// Rotates the hue by `factor` turns (`-0.5..=0.5`). u8 input goes through f32 and comes back
/// with [`to_u8`]'s truncation rule, as in torchvision.
pub fn adjust_hue<T: Pixel>(img: &Image<T>, factor: f64) -> Result<Image<T>> {
    check_range("hue_factor", factor, -0.5, 0.5)?;
    match img.channels() {
        1 => return Ok(img.clone()),
        3 => {}
        _ => {
            return Err(AugmentError::unsupported(
                "adjust_hue",
                &img.shape(),
                "needs 1 or 3 channels",
            ));
        }
    }
    let plane = img.height() * img.width();
    let (r, g, b) = (img.plane(0), img.plane(1), img.plane(2));
    let mut out = vec![T::default(); 3 * plane];
    let f = factor as f32;
    for p in 0..plane {
        let rgb = [r[p].to_unit(), g[p].to_unit(), b[p].to_unit()];
        let [h, s, v] = rgb_to_hsv(rgb);
        let h = remainder(h + f, 1.0);
        let out_rgb = hsv_to_rgb([h, s, v]);
        for (c, x) in out_rgb.into_iter().enumerate() {
            out[c * plane + p] = T::from_unit(x);
        }
    }
    Ok(Image::from_vec_unchecked(out, 3, img.height(), img.width()))
}

/// Python-style modulo (result has the sign of the divisor), as torch's `remainder`.
fn remainder(a: f32, b: f32) -> f32 {
    let m = a % b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        m + b
    } else {
        m
    }
}

/// torchvision's `_rgb_to_hsv` (Pillow's formulas), step by step for identical rounding.
fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let eqc = maxc == minc;
    let range = maxc - minc;
    let s = range / if eqc { 1.0 } else { maxc };
    let div = if eqc { 1.0 } else { range };
    let (rc, gc, bc) = ((maxc - r) / div, (maxc - g) / div, (maxc - b) / div);
    let max_is_r = maxc == r;
    let max_is_g = maxc == g;
    let hr = if max_is_r { bc - gc } else { 0.0 };
    let hg = if max_is_g && !max_is_r {
        rc + 2.0 - bc
    } else {
        0.0
    };
    let hb = if !max_is_g && !max_is_r {
        gc + 4.0 - rc
    } else {
        0.0
    };
    let h = hr + hg + hb;
    let h = (h * (1.0 / 6.0) + 1.0) % 1.0;
    [h, s, maxc]
}

/// torchvision's `_hsv_to_rgb`.
fn hsv_to_rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    let h6 = h * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let sxf = s * f;
    let one_minus_s = 1.0 - s;
    let q = ((1.0 - sxf) * v).clamp(0.0, 1.0);
    let t = ((sxf + one_minus_s) * v).clamp(0.0, 1.0);
    let p = (one_minus_s * v).clamp(0.0, 1.0);
    match (i as i32).rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> Image<u8> {
        Image::from_chw(
            vec![10, 200, 30, 40, 250, 60, 70, 80, 0, 100, 110, 255],
            3,
            2,
            2,
        )
        .expect("valid")
    }

    #[test]
    fn rejects_nan_and_out_of_range_factors() {
        let img = img();
        assert!(matches!(
            adjust_brightness(&img, f64::NAN),
            Err(AugmentError::InvalidParameter {
                name: "brightness_factor",
                ..
            })
        ));
        assert!(adjust_contrast(&img, -0.1).is_err());
        assert!(adjust_saturation(&img, f64::INFINITY).is_err());
        assert!(adjust_hue(&img, 0.6).is_err());
        assert!(normalize(&to_f32(&img), &[0.5; 3], &[0.5, 0.0, 0.5]).is_err());
        assert!(normalize(&to_f32(&img), &[0.5; 2], &[0.5; 2]).is_err());
    }

    #[test]
    fn identity_factors_keep_the_image() {
        let img = img();
        assert_eq!(adjust_brightness(&img, 1.0).expect("ok"), img);
        assert_eq!(adjust_saturation(&img, 1.0).expect("ok"), img);
        assert_eq!(adjust_hue(&img, 0.0).expect("ok"), img);
        assert_eq!(to_u8(&to_f32(&img)), img);
    }

    #[test]
    fn u8_results_truncate() {
        let one = Image::<u8>::from_chw(vec![3], 1, 1, 1).expect("valid");
        // 3 * 0.5 = 1.5 is stored as 1, not rounded to 2.
        assert_eq!(adjust_brightness(&one, 0.5).expect("ok").into_vec(), [1]);
    }
}
