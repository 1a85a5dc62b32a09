//! Fused fast paths for the two canonical pipelines.
//!
//! [`Compose`](crate::Compose) runs these automatically when its transforms have the shape of
//! [`pipelines::cifar`](crate::pipelines::cifar) (`RandomCrop` with constant padding ->
//! `RandomHorizontalFlip` -> `ColorJitter(brightness, contrast)` -> `ToTensor` -> `Normalize`)
//! or of [`pipelines::imagenet`](crate::pipelines::imagenet) (`RandomResizedCrop` (bilinear) ->
//! `RandomHorizontalFlip` -> `ColorJitter(brightness, contrast)` -> `RandomRotation` (nearest,
//! no expand, no centre) -> `ToTensor` -> `Normalize`) and the input is 3-channel u8.
//!
//! The parameters are drawn through the same per-transform code, in the same order, as the
//! op-by-op path, so a seed gives the same draws, recording and replay work unchanged, and the
//! output is bit-identical to running the transforms one by one:
//!
//! * the u8 colour ops (brightness, contrast) are pointwise on the 256 u8 levels once the
//!   contrast mean is known, so their composition (with u8 truncation after every op), then
//!   `ToTensor` and `Normalize`, becomes one 256-entry f32 table per channel, built with the
//!   very f32 operations of the op-by-op path;
//! * the contrast mean (mean of the floored grayscale of the image at that point) is computed
//!   from the source pixels through the table built so far; the fused multiply-adds of the
//!   grayscale use the FMA instruction in the AVX2 copy of the loop and an exact f64
//!   emulation otherwise (see [`crate::simd`] and [`fma_f32`]);
//! * crop, padding, flip and nearest rotation only move pixels, so the output loop reads each
//!   source pixel once through the table and writes the f32 output.
//!
//! Anything else (other padding modes, saturation or hue factors in replayed params, gray or
//! RGBA input, f32 input) falls back to the op-by-op path.

use rand::Rng;

use crate::buffer::Image;
use crate::error::{AugmentError, Result};
use crate::functional::{self as f, Interpolation, PaddingMode};
use crate::simd::Fma;
use crate::transforms::jitter;
use crate::transforms::{
    Augment, ColorJitter, Context, Normalize, RandomCrop, RandomHorizontalFlip, RandomResizedCrop,
    RandomRotation, Sample, Transform,
};

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Runs the fused path if `transforms` and `sample` have one of the supported shapes;
/// otherwise gives the sample back untouched (no parameter drawn).
pub(crate) fn try_run<R: Rng + ?Sized>(
    transforms: &[Transform],
    sample: Sample,
    ctx: &mut Context<'_, R>,
) -> Result<std::result::Result<Sample, Sample>> {
    let img = match sample {
        Sample::U8(img) if img.channels() == 3 => img,
        other => return Ok(Err(other)),
    };
    if let Some(p) = Cifar::matches(transforms) {
        return p.run(&img, ctx).map(|o| Ok(Sample::F32(o)));
    }
    if let Some(p) = Imagenet::matches(transforms) {
        return p.run(&img, ctx).map(|o| Ok(Sample::F32(o)));
    }
    Ok(Err(Sample::U8(img)))
}

/// The brightness/contrast part of a `ColorJitter` that the fused paths handle.
fn jitter_ok(j: &ColorJitter) -> bool {
    let r = j.ranges();
    r[2].is_none() && r[3].is_none()
}

/// Mean and std as f32, as `Normalize` uses them, if there are 3 of each.
fn norm_params(n: &Normalize) -> Option<([f32; 3], [f32; 3])> {
    if n.mean.len() != 3 || n.std.len() != 3 {
        return None;
    }
    Some((
        [0, 1, 2].map(|c| n.mean[c] as f32),
        [0, 1, 2].map(|c| n.std[c] as f32),
    ))
}

#[derive(Debug)]
struct Cifar<'a> {
    crop: &'a RandomCrop,
    flip: &'a RandomHorizontalFlip,
    jitter: &'a ColorJitter,
    mean: [f32; 3],
    std: [f32; 3],
}

impl<'a> Cifar<'a> {
    fn matches(t: &'a [Transform]) -> Option<Self> {
        let [
            Transform::RandomCrop(crop),
            Transform::RandomHorizontalFlip(flip),
            Transform::ColorJitter(jitter),
            Transform::ToTensor(_),
            Transform::Normalize(norm),
        ] = t
        else {
            return None;
        };
        // Cheap structural checks first: this runs for every sample.
        if crop.padding_mode != PaddingMode::Constant
            || !jitter_ok(jitter)
            || !matches!(crop.fill.values().len(), 1 | 3)
        {
            return None;
        }
        // Invalid parameters: let the op-by-op path report the error at the same point.
        if t.iter().any(|t| t.validate().is_err()) {
            return None;
        }
        let (mean, std) = norm_params(norm)?;
        Some(Self {
            crop,
            flip,
            jitter,
            mean,
            std,
        })
    }

    fn run<R: Rng + ?Sized>(
        &self,
        img: &Image<u8>,
        ctx: &mut Context<'_, R>,
    ) -> Result<Image<f32>> {
        let shape = img.shape();
        let (pad, [th, tw]) = self.crop.layout(shape)?;
        // The fill values as `pad` receives them (one or one per channel, truncated to u8).
        let fill = self.crop.fill.values();
        let fill: Vec<u8> = match fill.len() {
            1 => vec![fill[0] as f32 as u8; 3],
            3 => fill.iter().map(|&v| v as f32 as u8).collect(),
            n => return Err(AugmentError::param("fill", n, "1 or 3 values")),
        };
        let fill = [fill[0], fill[1], fill[2]];
        let (top, left) = self.crop.next_params(ctx, shape, pad, [th, tw])?;
        let flip = self.flip.next_flip(ctx)?;
        let (order, factors) = self.jitter.next_params(ctx)?;

        let [_, h, w] = shape;
        // The crop window in source coordinates (may stick out of the image into the padding).
        let y0 = top as isize - pad.top as isize;
        let x0 = left as isize - pad.left as isize;
        let window = Window {
            y0,
            x0,
            height: th,
            width: tw,
        };
        let ph = h + pad.top + pad.bottom;
        let pw = w + pad.left + pad.right;
        // checked_add: replayed positions come from the caller and may be huge.
        let outside = |start: usize, len: usize, limit: usize| {
            start.checked_add(len).is_none_or(|end| end > limit)
        };
        if factors[2].is_some()
            || factors[3].is_some()
            || outside(top, th, ph)
            || outside(left, tw, pw)
        {
            // Replayed saturation/hue, or a replayed crop outside the image (for the error):
            // op by op.
            return slow_cifar(self, img, pad, fill, window, flip, order, factors);
        }
        crate::simd::dispatch(
            #[inline(always)]
            |fma| {
                self.write(fma, img, window, fill, flip, order, factors)
                    .map(|out| Image::from_vec_unchecked(out, 3, th, tw))
            },
        )
    }

    /// The fused loop: colour levels, then every output pixel read once through the table.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        fma: Fma,
        img: &Image<u8>,
        window: Window,
        fill: [u8; 3],
        flip: bool,
        order: [u8; 4],
        factors: [Option<f64>; 4],
    ) -> Result<Vec<f32>> {
        let [_, h, w] = img.shape();
        let Window {
            y0,
            x0,
            height: th,
            width: tw,
        } = window;
        let levels = color_levels(fma, img, &window, fill, order, factors)?;
        let mut luts = [[0.0f32; 256]; 3];
        output_tables(&levels, self.mean, self.std, &mut luts);

        let src = img.as_slice();
        let plane_in = h * w;
        let plane_out = th * tw;
        // Written front to back without zeroing first.
        let mut out = Vec::with_capacity(3 * plane_out);
        // Columns of the window that lie inside the image.
        let cx_lo = (-x0).clamp(0, tw as isize) as usize;
        let cx_hi = (w as isize - x0).clamp(0, tw as isize) as usize;
        for c in 0..3 {
            let lut = &luts[c];
            let fill_v = lut[usize::from(fill[c])];
            let plane = &src[c * plane_in..(c + 1) * plane_in];
            for y in 0..th {
                let sy = y0 + y as isize;
                if sy < 0 || sy >= h as isize || cx_lo >= cx_hi {
                    out.extend(std::iter::repeat_n(fill_v, tw));
                    continue;
                }
                let sy = sy as usize;
                let sx_lo = (x0 + cx_lo as isize) as usize;
                let row_in = &plane[sy * w + sx_lo..sy * w + sx_lo + (cx_hi - cx_lo)];
                let start = out.len();
                out.extend(std::iter::repeat_n(fill_v, cx_lo));
                out.extend(row_in.iter().map(|&v| lut[usize::from(v)]));
                out.extend(std::iter::repeat_n(fill_v, tw - cx_hi));
                if flip {
                    out[start..].reverse();
                }
            }
        }
        Ok(out)
    }
}

/// The op-by-op CIFAR path for parameters the fused loop does not cover.
#[allow(clippy::too_many_arguments)]
fn slow_cifar(
    p: &Cifar<'_>,
    img: &Image<u8>,
    pad: f::Padding,
    fill: [u8; 3],
    win: Window,
    flip: bool,
    order: [u8; 4],
    factors: [Option<f64>; 4],
) -> Result<Image<f32>> {
    let padded = f::pad(img, pad, PaddingMode::Constant, &fill)?;
    let top = (win.y0 + pad.top as isize) as usize;
    let left = (win.x0 + pad.left as isize) as usize;
    let mut x = f::crop(&padded, top, left, win.height, win.width)?;
    if flip {
        f::horizontal_flip_in_place(&mut x);
    }
    let x = jitter(x, order, factors)?;
    f::normalize(&f::to_f32(&x), &p.mean, &p.std)
}

#[derive(Debug)]
struct Imagenet<'a> {
    rrc: &'a RandomResizedCrop,
    flip: &'a RandomHorizontalFlip,
    jitter: &'a ColorJitter,
    rot: &'a RandomRotation,
    mean: [f32; 3],
    std: [f32; 3],
}

impl<'a> Imagenet<'a> {
    fn matches(t: &'a [Transform]) -> Option<Self> {
        let [
            Transform::RandomResizedCrop(rrc),
            Transform::RandomHorizontalFlip(flip),
            Transform::ColorJitter(jitter),
            Transform::RandomRotation(rot),
            Transform::ToTensor(_),
            Transform::Normalize(norm),
        ] = t
        else {
            return None;
        };
        if t.iter().any(|t| t.validate().is_err()) {
            return None;
        }
        if rrc.interpolation != Interpolation::Bilinear
            || !jitter_ok(jitter)
            || rot.interpolation != Interpolation::Nearest
            || rot.expand
            || rot.center.is_some()
        {
            return None;
        }
        let n_fill = rot.fill.values().len();
        if n_fill != 1 && n_fill != 3 {
            return None;
        }
        let (mean, std) = norm_params(norm)?;
        Some(Self {
            rrc,
            flip,
            jitter,
            rot,
            mean,
            std,
        })
    }

    fn run<R: Rng + ?Sized>(
        &self,
        img: &Image<u8>,
        ctx: &mut Context<'_, R>,
    ) -> Result<Image<f32>> {
        let b = self.rrc.next_box(ctx, img.shape())?;
        let flip = self.flip.next_flip(ctx)?;
        let (order, factors) = self.jitter.next_params(ctx)?;
        let angle = self.rot.next_angle(ctx)?;
        let size = self.rrc.size.square_or_pair();
        let resized = f::resized_crop(img, b, size, Interpolation::Bilinear, self.rrc.antialias)?;
        let fill32: Vec<f32> = self.rot.fill.values().iter().map(|&v| v as f32).collect();
        if factors[2].is_some() || factors[3].is_some() || !angle.is_finite() {
            // Replayed saturation/hue (or a bad angle, for the error): op by op.
            let mut x = resized;
            if flip {
                f::horizontal_flip_in_place(&mut x);
            }
            let x = jitter(x, order, factors)?;
            let x = f::rotate(
                &x,
                angle,
                Interpolation::Nearest,
                false,
                None,
                Some(&fill32),
            )?;
            return f::normalize(&f::to_f32(&x), &self.mean, &self.std);
        }
        let [oh, ow] = size;
        let window = Window {
            y0: 0,
            x0: 0,
            height: oh,
            width: ow,
        };
        // The rotation's fill is not colour-adjusted: it is rounded to u8, then normalised.
        let fill_u8 = [0, 1, 2]
            .map(|c| fill32[if fill32.len() == 3 { c } else { 0 }].round_ties_even() as u8);
        let fill_out = [0, 1, 2].map(|c| norm_value(fill_u8[c], self.mean[c], self.std[c]));
        let map = crate::functional::NearestMap::new(oh, ow, angle, flip);
        let out = crate::simd::dispatch(
            #[inline(always)]
            |fma| -> Result<Vec<f32>> {
                // No padding in the window, so the fill argument is unused.
                let levels = color_levels(fma, &resized, &window, [0; 3], order, factors)?;
                let mut luts = [[0.0f32; 256]; 3];
                output_tables(&levels, self.mean, self.std, &mut luts);
                let plane = oh * ow;
                let src = resized.as_slice();
                let mut out = vec![0.0f32; 3 * plane];
                // The three channels per map entry: one read and one check of the map, one
                // load of the pixel, which is why the planes are interleaved first.
                let (o0, rest) = out.split_at_mut(plane);
                let (o1, o2) = rest.split_at_mut(plane);
                let (s0, rest) = src.split_at(plane);
                let (s1, s2) = rest.split_at(plane);
                let rgbx: Vec<u32> = s0
                    .iter()
                    .zip(s1)
                    .zip(s2)
                    .map(
                        #[inline(always)]
                        |((&r, &g), &b)| u32::from_le_bytes([r, g, b, 0]),
                    )
                    .collect();
                // The rotation map a row at a time, used while it is in the L1 cache.
                let mut map_row = vec![0u32; ow];
                let rows = o0.chunks_exact_mut(ow).zip(o1.chunks_exact_mut(ow));
                for (y, ((o0, o1), o2)) in rows.zip(o2.chunks_exact_mut(ow)).enumerate() {
                    map.row(fma, y, &mut map_row);
                    gather_row(&map_row, &rgbx, &luts, fill_out, [o0, o1, o2]);
                }
                Ok(out)
            },
        )?;
        Ok(Image::from_vec_unchecked(out, 3, oh, ow))
    }
}

/// One output row of the ImageNet path: the source pixel (RGB in the low bytes) of each map
/// entry (`u32::MAX`: the fill) through the channel tables. Scalar loads either way, so it is
/// its own small function (inlined into the AVX2 copy, it ran short of registers there).
#[inline(never)]
fn gather_row(
    map: &[u32],
    rgbx: &[u32],
    luts: &[[f32; 256]; 3],
    fill: [f32; 3],
    out: [&mut [f32]; 3],
) {
    let [o0, o1, o2] = out;
    let outs = o0.iter_mut().zip(o1.iter_mut()).zip(o2.iter_mut());
    for (((o0, o1), o2), &m) in outs.zip(map) {
        (*o0, *o1, *o2) = if let Some(&px) = rgbx.get(m as usize) {
            let [r, g, b, _] = px.to_le_bytes();
            (
                luts[0][usize::from(r)],
                luts[1][usize::from(g)],
                luts[2][usize::from(b)],
            )
        } else {
            (fill[0], fill[1], fill[2])
        };
    }
}

/// A `height x width` window of an image at `(y0, x0)`; parts outside the image are padding.
#[derive(Debug, Clone, Copy)]
struct Window {
    y0: isize,
    x0: isize,
    height: usize,
    width: usize,
}

/// The colour ops (in `order`) as a map of the 256 u8 levels, u8 rounding (truncation)
/// after each op as in the op-by-op path. The contrast mean is taken over `win`.
#[inline(always)]
fn color_levels(
    fma: Fma,
    img: &Image<u8>,
    win: &Window,
    fill: [u8; 3],
    order: [u8; 4],
    factors: [Option<f64>; 4],
) -> Result<[u8; 256]> {
    let mut levels: [u8; 256] = std::array::from_fn(|v| v as u8);
    // The brightness factor already in `levels` (the only op that can precede contrast).
    let mut brightness = None;
    for id in order {
        let Some(x) = factors[usize::from(id)] else {
            continue;
        };
        match id {
            0 => {
                crate::error::check_range("brightness_factor", x, 0.0, f64::MAX)?;
                let fx = x as f32;
                for l in &mut levels {
                    *l = clamp_trunc_u8(f32::from(*l) * fx);
                }
                brightness = Some(fx);
            }
            1 => {
                crate::error::check_range("contrast_factor", x, 0.0, f64::MAX)?;
                let sum = gray_sum(fma, img, win, fill, brightness);
                let n = (win.height * win.width) as f32;
                let m = sum as f64 as f32 / n;
                let r = x as f32;
                let alpha = (1.0 - x) as f32;
                for l in &mut levels {
                    let y = fma.mul_add(m, alpha, f32::from(*l) * r);
                    *l = clamp_trunc_u8(y);
                }
            }
            _ => {
                return Err(AugmentError::param(
                    "ColorJitter order",
                    order,
                    "brightness and contrast only on the fused path",
                ));
            }
        }
    }
    Ok(levels)
}

/// `y.clamp(0.0, 255.0) as u8` (truncation; NaN gives 0), without a float-to-int conversion
/// so that the 256-level loops vectorise: `c + 2^23` rounds `c` to an integer held in the low
/// mantissa bits, minus one where that rounding went up.
#[inline(always)]
fn clamp_trunc_u8(y: f32) -> u8 {
    const MAGIC: f32 = 8_388_608.0; // 2^23
    let c = y.clamp(0.0, 255.0);
    let c = if c.is_nan() { 0.0 } else { c };
    let u = c + MAGIC;
    (u.to_bits() - MAGIC.to_bits() - u32::from(u - MAGIC > c)) as u8
}

/// `ToTensor`'s factor: torchvision multiplies by `1/255` rather than dividing by 255.
const NORM_SCALE: f32 = 1.0 / 255.0;

/// `ToTensor` then `Normalize` of a u8 level: `(level * (1/255) - mean) / std`.
#[inline(always)]
fn norm_value(level: u8, mean: f32, std: f32) -> f32 {
    (f32::from(level) * NORM_SCALE - mean) / std
}

/// Fills `lut[c][v]` with `norm_value(levels[v], mean[c], std[c])`: the colour levels, then
/// `ToTensor` and `Normalize`, computed 8 values per instruction (faster than a cached table of
/// the normalised levels and a lookup per entry).
#[inline(always)]
fn output_tables(levels: &[u8; 256], mean: [f32; 3], std: [f32; 3], lut: &mut [[f32; 256]; 3]) {
    for ((out, &m), &s) in lut.iter_mut().zip(&mean).zip(&std) {
        for (o, &l) in out.iter_mut().zip(levels) {
            *o = norm_value(l, m, s);
        }
    }
}

/// Sum of the floored grayscale over the window, padding pixels having the fill values, all
/// levels first through the brightness adjustment of factor `brightness` when given (computed
/// per pixel: it vectorises, a table lookup does not).
#[inline(always)]
fn gray_sum(
    fma: Fma,
    img: &Image<u8>,
    win: &Window,
    fill: [u8; 3],
    brightness: Option<f32>,
) -> u64 {
    let adjust = |v: u8| brightness.map_or(v, |fx| clamp_trunc_u8(f32::from(v) * fx));
    let [_, h, w] = img.shape();
    let ys = win.y0.clamp(0, h as isize) as usize
        ..(win.y0 + win.height as isize).clamp(0, h as isize) as usize;
    let xs = win.x0.clamp(0, w as isize) as usize
        ..(win.x0 + win.width as isize).clamp(0, w as isize) as usize;
    let inside = ys.len() * xs.len();
    let mut sum = 0u64;
    if inside > 0 {
        let (r, g, b) = (img.plane(0), img.plane(1), img.plane(2));
        let n = xs.len();
        let mut mapped = match brightness {
            None => [Vec::new(), Vec::new(), Vec::new()],
            Some(_) => [vec![0u8; n], vec![0u8; n], vec![0u8; n]],
        };
        for y in ys {
            let mut row = y * w + xs.start..y * w + xs.end;
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = fma.avx2()
                && brightness.is_none_or(f32::is_finite)
            {
                let (r, g, b) = (&r[row.clone()], &g[row.clone()], &b[row.clone()]);
                let (part, done) = avx2::gray_floor_sum(simd, r, g, b, brightness);
                sum += u64::from(part);
                row.start += done;
            }
            let n = row.len();
            let (rr, gg, bb) = match brightness {
                None => (&r[row.clone()], &g[row.clone()], &b[row]),
                Some(fx) => {
                    for (plane, m) in [r, g, b].iter().zip(&mut mapped) {
                        for (o, &v) in m.iter_mut().zip(&plane[row.clone()]) {
                            *o = clamp_trunc_u8(f32::from(v) * fx);
                        }
                    }
                    (&mapped[0][..n], &mapped[1][..n], &mapped[2][..n])
                }
            };
            sum += u64::from(gray_floor_sum(fma, rr, gg, bb));
        }
    }
    let padding = (win.height * win.width - inside) as u64;
    if padding > 0 {
        let [fr, fg, fb] = fill.map(adjust);
        sum += padding * u64::from(gray_floor(fr, fg, fb));
    }
    sum
}

/// The sum of [`gray_floor`] over three planes (at most 2^24 pixels).
#[inline(always)]
fn gray_floor_sum(fma: Fma, r: &[u8], g: &[u8], b: &[u8]) -> u32 {
    // floor(l) for 0 <= l < 256 without a float-to-int conversion (so that the loop
    // vectorises): l + 2^23 rounds l to an integer whose value sits in the low mantissa bits;
    // subtract one where that rounding went up.
    const MAGIC: f32 = 8_388_608.0; // 2^23
    let mut acc = 0u32;
    for ((&r, &g), &b) in r.iter().zip(g).zip(b) {
        let l = gray(fma, r, g, b);
        let u = l + MAGIC;
        let rounded = u.to_bits() - MAGIC.to_bits();
        acc += rounded - u32::from(u - MAGIC > l);
    }
    acc
}

/// `floor(fma(b, 0.114, fma(g, 0.587, r * 0.2989)))` in f32, as `adjust_contrast` computes the
/// grayscale of a u8 pixel.
pub(crate) fn gray_floor(r: u8, g: u8, b: u8) -> u32 {
    gray(Fma::EMULATED, r, g, b) as u32
}

/// `fma(b, 0.114, fma(g, 0.587, r * 0.2989))` in f32. Without the FMA instruction: with
/// integer `g, b <= 255`, the products `g * 0.587f32` and `b * 0.114f32` and the sums with the
/// f32 partial results need at most 36 significant bits, so f64 holds them exactly and the
/// final `as f32` is the single rounding of the fused multiply-add.
#[inline(always)]
fn gray(fma: Fma, r: u8, g: u8, b: u8) -> f32 {
    let p = f32::from(r) * 0.2989;
    if fma.native() {
        let q = f32::from(g).mul_add(0.587, p);
        f32::from(b).mul_add(0.114, q)
    } else {
        let q = (f64::from(g) * f64::from(0.587f32) + f64::from(p)) as f32;
        (f64::from(b) * f64::from(0.114f32) + f64::from(q)) as f32
    }
}

/// `a.mul_add(b, c)` (one rounding), exactly, with f64 operations: the product of two f32 is
/// exact in f64, the sum is computed exactly as `hi + lo` (TwoSum), `hi` is rounded to odd
/// when `lo != 0`, and rounding that to f32 is then the correctly rounded result
/// (53 >= 24 + 2 bits).
#[inline(always)]
pub(crate) fn fma_f32(a: f32, b: f32, c: f32) -> f32 {
    let p = f64::from(a) * f64::from(b);
    let c = f64::from(c);
    let hi = p + c;
    let bb = hi - p;
    let lo = (p - (hi - bb)) + (c - bb);
    // Round to odd, branch-free (so that table loops vectorise): an inexact `hi` with an even
    // last bit moves one f64 ulp towards the exact sum.
    let bits = hi.to_bits();
    let odd = lo != 0.0 && bits & 1 == 0 && hi.is_finite() && hi != 0.0;
    let step: i64 = if (lo > 0.0) == (hi > 0.0) { 1 } else { -1 };
    let hi = f64::from_bits(bits.wrapping_add_signed(if odd { step } else { 0 }));
    hi as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// The fused-vs-op-by-op equality tests in tests/it/fused.rs only mean something if the
    /// seed pipelines really take the fused path.
    #[test]
    fn seed_pipelines_take_the_fused_path() {
        let cifar = crate::pipelines::cifar();
        assert!(Cifar::matches(&cifar.transforms).is_some());
        let imagenet = crate::pipelines::imagenet();
        assert!(Imagenet::matches(&imagenet.transforms).is_some());
        // A structural difference (reflect padding) must fall back to op by op.
        let mut reflect = crate::pipelines::cifar();
        if let Transform::RandomCrop(crop) = &mut reflect.transforms[0] {
            crop.padding_mode = PaddingMode::Reflect;
        }
        assert!(Cifar::matches(&reflect.transforms).is_none());
    }

    #[test]
    fn fma_emulation_matches_mul_add() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..200_000 {
            let m = rng.random_range(0.0f32..255.0);
            let ratio = rng.random_range(0.0f64..2.5);
            let alpha = (1.0 - ratio) as f32;
            let v = f32::from(rng.random::<u8>()) * ratio as f32;
            assert_eq!(fma_f32(m, alpha, v), m.mul_add(alpha, v), "{m} {alpha} {v}");
            let (a, b, c) = (
                rng.random::<f32>() * 300.0,
                rng.random::<f32>() - 0.5,
                rng.random::<f32>() * 100.0,
            );
            assert_eq!(
                fma_f32(a, b, c).to_bits(),
                a.mul_add(b, c).to_bits(),
                "{a} {b} {c}"
            );
        }
    }

    /// The AVX2 copy (native FMA) and the baseline copy (f64 emulation) give the same levels.
    #[test]
    fn both_cpu_copies_give_the_same_colour_levels() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..300 {
            let data: Vec<u8> = (0..3 * 20 * 24).map(|_| rng.random()).collect();
            let img = Image::from_vec_unchecked(data, 3, 20, 24);
            let win = Window {
                y0: rng.random_range(-4i32..4) as isize,
                x0: rng.random_range(-4i32..4) as isize,
                height: 20,
                width: 24,
            };
            let fill = [rng.random(), rng.random(), rng.random()];
            let order = if rng.random() {
                [0, 1, 2, 3]
            } else {
                [1, 0, 3, 2]
            };
            let factors = [
                Some(rng.random_range(0.0..2.0)),
                Some(rng.random_range(0.0..2.0)),
                None,
                None,
            ];
            let base = color_levels(Fma::EMULATED, &img, &win, fill, order, factors).unwrap();
            let fast = crate::simd::dispatch(
                #[inline(always)]
                |fma| color_levels(fma, &img, &win, fill, order, factors).unwrap(),
            );
            assert_eq!(base, fast);
        }
    }

    /// The whole seed pipelines (fused loops, resampler, rotation map) give the same samples
    /// in the baseline copy as in the AVX2 copy. (Only this test switches the copy; other
    /// tests running meanwhile get one copy or the other, which is the claim under test.)
    #[test]
    fn baseline_and_avx2_copies_give_the_same_samples() {
        use crate::Augment;
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut image = |h: usize, w: usize| {
            let data: Vec<u8> = (0..3 * h * w).map(|_| rng.random()).collect();
            Image::from_vec_unchecked(data, 3, h, w)
        };
        let cases = [
            (crate::pipelines::cifar(), image(32, 32)),
            (crate::pipelines::imagenet(), image(150, 200)),
        ];
        for (pipeline, img) in cases {
            for i in 0..40 {
                let fast = pipeline.apply_seeded(img.clone(), 9, 0, i).unwrap();
                crate::simd::force_baseline(true);
                let base = pipeline.apply_seeded(img.clone(), 9, 0, i);
                crate::simd::force_baseline(false);
                assert_eq!(base.unwrap(), fast, "sample {i}");
            }
        }
    }

    #[test]
    fn clamp_trunc_matches_cast() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let special = [
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
            -0.0,
            0.0,
            255.0,
            254.99998,
            256.0,
        ];
        for y in special
            .into_iter()
            .chain((0..100_000).map(|_| rng.random_range(-10.0f32..300.0)))
        {
            assert_eq!(clamp_trunc_u8(y), y.clamp(0.0, 255.0) as u8, "{y}");
        }
        for k in 0..=255u8 {
            let y = f32::from(k);
            for v in [y, y.next_up(), y.next_down()] {
                assert_eq!(clamp_trunc_u8(v), v.clamp(0.0, 255.0) as u8, "{v}");
            }
        }
    }

    #[test]
    fn gray_floor_sum_matches_gray_floor_per_pixel() {
        let r: Vec<u8> = (0..65536u32).map(|i| (i & 255) as u8).collect();
        let g: Vec<u8> = (0..65536u32).map(|i| (i >> 8) as u8).collect();
        for b0 in (0..=255u8).step_by(5).chain([254, 255]) {
            let b = vec![b0; r.len()];
            for i in 0..r.len() {
                let one = gray_floor_sum(Fma::EMULATED, &r[i..=i], &g[i..=i], &b[i..=i]);
                let fast = crate::simd::dispatch(|fma| {
                    gray_floor_sum(fma, &r[i..=i], &g[i..=i], &b[i..=i])
                });
                assert_eq!(one, fast);
                assert_eq!(one, gray_floor(r[i], g[i], b0), "{} {} {b0}", r[i], g[i]);
            }
        }
    }

    /// The AVX2 grayscale sum (8 pixels per step, brightness applied in registers) against
    /// the portable loop, over every (r, g) pair, windows with a tail of fewer than 8 pixels.
    #[test]
    fn gray_sums_agree_between_the_cpu_copies() {
        let data: Vec<u8> = (0..3 * 65536u32)
            .map(|i| match i / 65536 {
                0 => (i & 255) as u8,
                1 => ((i >> 8) & 255) as u8,
                _ => (i.wrapping_mul(2_654_435_761) >> 24) as u8,
            })
            .collect();
        let img = Image::from_vec_unchecked(data, 3, 256, 256);
        for brightness in [None, Some(0.0f32), Some(0.8), Some(1.2), Some(3.7)] {
            for (x0, width) in [(0, 256), (3, 250), (-2, 13)] {
                let win = Window {
                    y0: 0,
                    x0,
                    height: 256,
                    width,
                };
                let fill = [9, 200, 31];
                let base = gray_sum(Fma::EMULATED, &img, &win, fill, brightness);
                let fast = crate::simd::dispatch(
                    #[inline(always)]
                    |fma| gray_sum(fma, &img, &win, fill, brightness),
                );
                assert_eq!(base, fast, "{brightness:?} {x0} {width}");
            }
        }
    }

    #[test]
    fn gray_floor_matches_mul_add_for_all_pixels() {
        for r in 0..=255u8 {
            for g in 0..=255u8 {
                for b in (0..=255u8).step_by(3) {
                    let l = f32::from(b)
                        .mul_add(0.114, f32::from(g).mul_add(0.587, f32::from(r) * 0.2989));
                    assert_eq!(gray_floor(r, g, b), l.floor() as u32, "{r} {g} {b}");
                }
            }
        }
    }
}
