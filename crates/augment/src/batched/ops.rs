//! Functional ops on a batch `Tensor<4>` `[N, C, H, W]`, each with its own parameters per
//! sample, built from burn tensor ops so they run on the batch's device.
//!
//! The same [`Dtype`] rules as the CPU ops hold: a `U8` batch holds integer values `0..=255`
//! (stored as f32), colour ops truncate and geometric resampling rounds half to even; an
//! `F32` batch is on the `[0, 1]` scale (then normalised). Per-sample parameters are small
//! host arrays; pixels never leave the device.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{AugmentError, Result, check_range};
use crate::functional::{self as f, CropBox, Interpolation, Padding, PaddingMode};

/// What the values of a batch tensor mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// Integer pixel values `0..=255` stored as f32 (before `ToTensor`).
    U8,
    /// f32 on the `[0, 1]` scale (after `ToTensor`), or normalised.
    F32,
}

impl Dtype {
    fn max(self) -> f32 {
        match self {
            Dtype::U8 => 255.0,
            Dtype::F32 => 1.0,
        }
    }

    /// Colour ops: clamp to the valid range, then truncate for u8 (torch's `.to(uint8)`).
    fn clamp_trunc(self, x: Tensor<4>) -> Tensor<4> {
        // Separate one-sided clamps and an int round trip (truncation, exact for values in
        // 0..=255) are several times faster on flex than `clamp` and `floor`.
        let x = x.clamp_min(0.0).clamp_max(self.max());
        match self {
            Dtype::U8 => x.int().float(),
            Dtype::F32 => x,
        }
    }

    /// Geometric resampling: round half to even for u8 (torch's `round_()` before the cast).
    fn round(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Dtype::U8 => x.round().clamp(0.0, 255.0),
            Dtype::F32 => x,
        }
    }

    /// The u8 resize kernel's fixed-point rounding: half up (values are non-negative).
    fn round_half_up(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Dtype::U8 => x
                .add_scalar(0.5)
                .clamp_min(0.0)
                .clamp_max(255.0)
                .int()
                .float(),
            Dtype::F32 => x,
        }
    }
}

/// `[N, C, H, W]` of a batch, checking that it has `n` samples.
pub(crate) fn dims_for(x: &Tensor<4>, op: &'static str, n: usize) -> Result<[usize; 4]> {
    let dims = x.dims();
    if dims[0] == 0 || dims[1] == 0 || dims[2] == 0 || dims[3] == 0 {
        return Err(AugmentError::unsupported(op, &dims, "the batch is empty"));
    }
    if dims[0] != n {
        return Err(AugmentError::mismatch(
            format!("{op} per-sample parameters"),
            dims[0],
            n,
        ));
    }
    Ok(dims)
}

fn rgb_only(op: &'static str, dims: [usize; 4]) -> Result<()> {
    if dims[1] == 3 {
        Ok(())
    } else {
        Err(AugmentError::unsupported(
            op,
            &dims,
            format!("needs 3 (RGB) channels, got {}", dims[1]),
        ))
    }
}

/// One value per sample as a `[N, 1, 1, 1]` tensor.
fn per_sample(values: &[f32], device: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len(), 1, 1, 1]),
        device,
    )
}

/// One value per channel (or one for all) as a `[1, C, 1, 1]` tensor.
fn per_channel(name: &'static str, values: &[f32], c: usize, device: &Device) -> Result<Tensor<4>> {
    let v: Vec<f32> = match values.len() {
        1 => vec![values[0]; c],
        n if n == c => values.to_vec(),
        n => {
            return Err(AugmentError::mismatch(
                format!("{name} values per channel"),
                c,
                n,
            ));
        }
    };
    if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
        return Err(AugmentError::param(name, bad, "finite"));
    }
    Ok(Tensor::from_data(TensorData::new(v, [1, c, 1, 1]), device))
}

/// Mirrors left to right the samples whose `flip` is true.
pub fn horizontal_flip(x: Tensor<4>, flip: &[bool]) -> Result<Tensor<4>> {
    flip_where(x, flip, 3, "horizontal_flip")
}

/// Mirrors top to bottom the samples whose `flip` is true.
pub fn vertical_flip(x: Tensor<4>, flip: &[bool]) -> Result<Tensor<4>> {
    flip_where(x, flip, 2, "vertical_flip")
}

fn flip_where(x: Tensor<4>, flip: &[bool], axis: usize, op: &'static str) -> Result<Tensor<4>> {
    let dims = dims_for(&x, op, flip.len())?;
    if !flip.iter().any(|&b| b) {
        return Ok(x);
    }
    if flip.iter().all(|&b| b) {
        return Ok(x.flip([axis]));
    }
    // A per-sample permutation matrix (identity or reversal) applied by matmul: exact, and
    // on flex several times faster than materialising `flip` and selecting per sample.
    let [n, c, ..] = dims;
    let len = dims[axis];
    let mut perm = vec![0.0f32; n * len * len];
    for (s, &f) in flip.iter().enumerate() {
        for i in 0..len {
            let j = if f { len - 1 - i } else { i };
            perm[(s * len + i) * len + j] = 1.0;
        }
    }
    let perm = Tensor::<4>::from_data(TensorData::new(perm, [n, 1, len, len]), &x.device())
        .expand([n, c, len, len]);
    // Symmetric, so the same matrix works on either side.
    Ok(if axis == 3 {
        x.matmul(perm)
    } else {
        perm.matmul(x)
    })
}

/// `x` with rows `idx` replaced by `values`.
pub(crate) fn assign_rows(x: Tensor<4>, idx: Tensor<1, Int>, values: Tensor<4>) -> Tensor<4> {
    let old = x.clone().select(0, idx.clone());
    x.select_assign(0, idx, values - old, burn::tensor::IndexingUpdateOp::Add)
}

/// Resamples every sample with its own separable maps: `rows[n]` is `[out_h, H]` and
/// `cols[n]` is `[out_w, W]` (row-major), so `out[n, c] = rows[n] @ x[n, c] @ cols[n]^T`.
/// Columns are resampled first, then rows, each rounded half up for u8 (torch's u8 resize
/// kernel, whose fixed-point weights the u8 maps carry; one-hot maps stay exact).
fn separable(
    x: Tensor<4>,
    rows: Vec<f32>,
    cols: Vec<f32>,
    out: [usize; 2],
    dtype: Dtype,
) -> Tensor<4> {
    // One-hot maps (crops, pads, nearest) move values exactly: no rounding needed.
    let exact = rows.iter().chain(&cols).all(|&v| v == 0.0 || v == 1.0);
    let dtype = if exact { Dtype::F32 } else { dtype };
    let [n, c, h, w] = x.dims();
    let [oh, ow] = out;
    let device = x.device();
    // Transposed on the host: [n, 1, w, ow].
    let mut cols_t = vec![0.0f32; cols.len()];
    for s in 0..n {
        for o in 0..ow {
            for i in 0..w {
                cols_t[(s * w + i) * ow + o] = cols[(s * ow + o) * w + i];
            }
        }
    }
    let cols_t = Tensor::<4>::from_data(TensorData::new(cols_t, [n, 1, w, ow]), &device)
        .expand([n, c, w, ow]);
    let rows_t =
        Tensor::<4>::from_data(TensorData::new(rows, [n, 1, oh, h]), &device).expand([n, c, oh, h]);
    let x = dtype.round_half_up(x.matmul(cols_t));
    dtype.round_half_up(rows_t.matmul(x))
}

/// Pads (mode and fill as [`functional::pad`](crate::functional::pad)) and crops a
/// `size` window whose top-left corner in the padded image is `positions[n]` for sample `n`,
/// then mirrors left to right the samples whose `hflip` is true (if given): `RandomCrop` with
/// padding and `RandomHorizontalFlip` in one gather, without materialising the padded batch.
pub fn pad_crop(
    x: Tensor<4>,
    padding: Padding,
    mode: PaddingMode,
    fill: &[f32],
    positions: &[(usize, usize)],
    size: [usize; 2],
    hflip: Option<&[bool]>,
) -> Result<Tensor<4>> {
    let [n, c, h, w] = dims_for(&x, "pad_crop", positions.len())?;
    let [th, tw] = size;
    let (ph, pw) = (
        h + padding.top + padding.bottom,
        w + padding.left + padding.right,
    );
    if th == 0 || tw == 0 || th > ph || tw > pw {
        return Err(AugmentError::param(
            "size",
            size,
            format!("between 1 and the padded size {ph}x{pw}"),
        ));
    }
    if let Some(p) = positions.iter().find(|(t, l)| t + th > ph || l + tw > pw) {
        return Err(AugmentError::param(
            "crop position",
            p,
            format!("a {th}x{tw} window inside the padded {ph}x{pw} image"),
        ));
    }
    if let Some(flips) = hflip
        && flips.len() != n
    {
        return Err(AugmentError::mismatch("pad_crop flips", n, flips.len()));
    }
    // One-hot maps (the padding mode folded into the indices, the flip into the column
    // order), applied as two matmuls: on flex much faster than a gather. A row or column on
    // constant padding is all zeros and gets the fill below.
    let axis =
        |start: usize, pad: usize, len: usize, out: usize, reverse: bool, valid: &mut Vec<f32>| {
            let mut m = vec![0.0f32; out * len];
            for i in 0..out {
                let k = if reverse { out - 1 - i } else { i };
                match f::source_index((start + k) as isize - pad as isize, len, mode) {
                    Some(src) => {
                        m[i * len + src] = 1.0;
                        valid.push(1.0);
                    }
                    None => valid.push(0.0),
                }
            }
            m
        };
    let (mut row_ok, mut col_ok) = (Vec::new(), Vec::new());
    let mut rows = Vec::with_capacity(n * th * h);
    let mut cols = Vec::with_capacity(n * tw * w);
    for (s, &(top, left)) in positions.iter().enumerate() {
        let flip = hflip.is_some_and(|f| f[s]);
        rows.extend(axis(top, padding.top, h, th, false, &mut row_ok));
        cols.extend(axis(left, padding.left, w, tw, flip, &mut col_ok));
    }
    let device = x.device();
    let fill_t = per_channel("fill", fill, c, &device)?;
    // One-hot maps are exact, so the dtype's rounding never applies.
    let out = separable(x, rows, cols, size, Dtype::F32);
    if fill.iter().all(|&v| v == 0.0) || row_ok.iter().chain(&col_ok).all(|&v| v == 1.0) {
        return Ok(out);
    }
    let inside = Tensor::<4>::from_data(TensorData::new(row_ok, [n, 1, th, 1]), &device)
        * Tensor::<4>::from_data(TensorData::new(col_ok, [n, 1, 1, tw]), &device);
    let outside = inside.neg().add_scalar(1.0);
    Ok(out + outside * fill_t)
}

/// Crops `boxes[n]` from sample `n` and resizes it to `size` (as
/// [`functional::resized_crop`](crate::functional::resized_crop)).
pub fn resized_crop(
    x: Tensor<4>,
    boxes: &[CropBox],
    size: [usize; 2],
    interpolation: Interpolation,
    antialias: bool,
    dtype: Dtype,
) -> Result<Tensor<4>> {
    let [n, _, h, w] = dims_for(&x, "resized_crop", boxes.len())?;
    let [oh, ow] = size;
    if oh == 0 || ow == 0 {
        return Err(AugmentError::param(
            "size",
            size,
            "both dimensions at least 1",
        ));
    }
    let mut rows = Vec::with_capacity(n * oh * h);
    let mut cols = Vec::with_capacity(n * ow * w);
    for b in boxes {
        if b.height == 0 || b.width == 0 || b.top + b.height > h || b.left + b.width > w {
            return Err(AugmentError::param(
                "crop box",
                b,
                format!("a non-empty box inside the {h}x{w} image"),
            ));
        }
        rows.extend(f::axis_matrix(
            h,
            b.top,
            b.height,
            oh,
            interpolation,
            antialias,
            dtype == Dtype::U8,
        ));
        cols.extend(f::axis_matrix(
            w,
            b.left,
            b.width,
            ow,
            interpolation,
            antialias,
            dtype == Dtype::U8,
        ));
    }
    Ok(separable(x, rows, cols, size, dtype))
}

/// Resizes every sample to `size` (as [`functional::resize`](crate::functional::resize)).
pub fn resize(
    x: Tensor<4>,
    size: [usize; 2],
    interpolation: Interpolation,
    antialias: bool,
    dtype: Dtype,
) -> Result<Tensor<4>> {
    let [n, _, h, w] = x.dims();
    let full = CropBox {
        top: 0,
        left: 0,
        height: h,
        width: w,
    };
    resized_crop(x, &vec![full; n], size, interpolation, antialias, dtype)
}

/// Crops the same box from every sample.
pub fn crop(x: Tensor<4>, b: CropBox) -> Result<Tensor<4>> {
    let [n, c, h, w] = x.dims();
    if b.height == 0 || b.width == 0 || b.top + b.height > h || b.left + b.width > w {
        return Err(AugmentError::param(
            "crop box",
            b,
            format!("a non-empty box inside the {h}x{w} image"),
        ));
    }
    Ok(x.slice([
        0..n,
        0..c,
        b.top..b.top + b.height,
        b.left..b.left + b.width,
    ]))
}

/// Rotates sample `n` by `angles[n]` degrees counter-clockwise about `center` (as
/// [`functional::rotate`](crate::functional::rotate)): the source coordinates are computed on
/// the device with the CPU op's f32 formulas and sampled with gathers. With `expand`, every
/// angle must give the same output size (a batch holds one size).
#[allow(clippy::too_many_arguments)]
pub fn rotate(
    x: Tensor<4>,
    angles: &[f64],
    interpolation: Interpolation,
    expand: bool,
    center: Option<[f64; 2]>,
    fill: Option<&[f32]>,
    dtype: Dtype,
) -> Result<Tensor<4>> {
    let [n, c, h, w] = dims_for(&x, "rotate", angles.len())?;
    if let Some(a) = angles.iter().find(|a| !a.is_finite()) {
        return Err(AugmentError::param(
            "angle",
            a,
            "a finite number of degrees",
        ));
    }
    if let Some([cx, cy]) = center
        && !(cx.is_finite() && cy.is_finite())
    {
        return Err(AugmentError::param(
            "center",
            [cx, cy],
            "finite coordinates",
        ));
    }
    let device = x.device();
    let fill = fill
        .map(|f| per_channel("fill", f, c, &device))
        .transpose()?;
    // Per sample: rx and ry (3 each) of the inverse map, and the output size.
    let mut coef = Vec::with_capacity(n * 6);
    let mut out_size = None;
    for &a in angles {
        let m = f::inverse_matrix(h, w, a.rem_euclid(360.0), center);
        let size = if expand {
            let (ow, oh) = f::expanded_size(&m, w, h);
            [oh, ow]
        } else {
            [h, w]
        };
        if size.contains(&0) || out_size.is_some_and(|s| s != size) {
            return Err(AugmentError::unsupported(
                "rotate",
                &[n, c, h, w],
                format!("expanded output {size:?} is empty or differs between samples"),
            ));
        }
        out_size = Some(size);
        let (rx, ry) = f::grid_rows(&m, h, w);
        coef.extend(rx);
        coef.extend(ry);
    }
    let [oh, ow] = out_size.unwrap_or([h, w]);
    let coef = Tensor::<2>::from_data(TensorData::new(coef, [n, 6]), &device);
    let k = |i: usize| coef.clone().slice([0..n, i..i + 1]).reshape([n, 1, 1]);
    let bx = Tensor::<1, Int>::arange(0..ow as i64, &device)
        .float()
        .sub_scalar((ow as f32 - 1.0) * 0.5)
        .reshape([1, 1, ow]);
    let by = Tensor::<1, Int>::arange(0..oh as i64, &device)
        .float()
        .sub_scalar((oh as f32 - 1.0) * 0.5)
        .reshape([1, oh, 1]);
    let gx = bx.clone() * k(0) + by.clone() * k(1) + k(2);
    let gy = bx * k(3) + by * k(4) + k(5);
    let (half_w, half_h) = (0.5 * w as f32, 0.5 * h as f32);
    let ix = gx.add_scalar(1.0).mul_scalar(half_w).sub_scalar(0.5);
    let iy = gy.add_scalar(1.0).mul_scalar(half_h).sub_scalar(0.5);

    let flat = x.reshape([n, c, h * w]);
    // The value at integer source coordinates (xs, ys) and whether they are inside.
    let tap = |xs: Tensor<3>, ys: Tensor<3>| -> (Tensor<4>, Tensor<3>) {
        let inside = xs
            .clone()
            .greater_equal_elem(0.0)
            .float()
            .mul(xs.clone().lower_elem(w as f32).float())
            .mul(ys.clone().greater_equal_elem(0.0).float())
            .mul(ys.clone().lower_elem(h as f32).float());
        let xi = xs.clamp(0.0, (w - 1) as f32);
        let yi = ys.clamp(0.0, (h - 1) as f32);
        let idx = (yi.mul_scalar(w as f32) + xi)
            .int()
            .reshape([n, 1, oh * ow])
            .repeat_dim(1, c);
        let v = flat.clone().gather(2, idx).reshape([n, c, oh, ow]);
        let v = v * inside.clone().unsqueeze_dim::<4>(1);
        (v, inside)
    };
    let (value, mask) = match interpolation {
        Interpolation::Nearest => tap(ix.round(), iy.round()),
        Interpolation::Bilinear => {
            let (x0, y0) = (ix.clone().floor(), iy.clone().floor());
            let we = ix - x0.clone();
            let wn = iy - y0.clone();
            let ww = we.clone().neg().add_scalar(1.0);
            let ws = wn.clone().neg().add_scalar(1.0);
            let x1 = x0.clone().add_scalar(1.0);
            let y1 = y0.clone().add_scalar(1.0);
            let corners = [
                (x0.clone(), y0.clone(), ws.clone() * ww.clone()),
                (x1.clone(), y0, ws * we.clone()),
                (x0, y1.clone(), wn.clone() * ww),
                (x1, y1, wn * we),
            ];
            let mut value: Option<Tensor<4>> = None;
            let mut mask: Option<Tensor<3>> = None;
            for (xs, ys, wt) in corners {
                let (v, inside) = tap(xs, ys);
                let v = v * wt.clone().unsqueeze_dim::<4>(1);
                let m = inside * wt;
                value = Some(match value {
                    None => v,
                    Some(acc) => acc + v,
                });
                mask = Some(match mask {
                    None => m,
                    Some(acc) => acc + m,
                });
            }
            (value.expect("four corners"), mask.expect("four corners"))
        }
    };
    let mask = mask.unsqueeze_dim::<4>(1);
    let out = match (fill, interpolation) {
        (None, _) => value,
        (Some(f), Interpolation::Nearest) => {
            let outside = mask.lower_elem(0.5).repeat_dim(1, c);
            value.mask_where(outside, f.expand([n, c, oh, ow]))
        }
        (Some(f), Interpolation::Bilinear) => (value - f.clone()) * mask + f,
    };
    Ok(dtype.round(out))
}

fn check_factors(name: &'static str, factors: &[f64], lo: f64, hi: f64) -> Result<Vec<f32>> {
    factors
        .iter()
        .map(|&v| check_range(name, v, lo, hi).map(|()| v as f32))
        .collect()
}

/// `x * factor[n]`, clamped (and truncated for u8).
pub fn adjust_brightness(x: Tensor<4>, factors: &[f64], dtype: Dtype) -> Result<Tensor<4>> {
    dims_for(&x, "adjust_brightness", factors.len())?;
    let f = check_factors("brightness_factor", factors, 0.0, f64::MAX)?;
    let f = per_sample(&f, &x.device());
    Ok(dtype.clamp_trunc(x * f))
}

/// `0.2989 R + 0.587 G + 0.114 B` as `[N, 1, H, W]`, floored for u8.
fn grayscale(x: &Tensor<4>, dtype: Dtype) -> Tensor<4> {
    let [n, _, h, w] = x.dims();
    // As one broadcast matmul `[1, 3] @ [3, H * W]` per sample: much faster on flex than
    // slicing the channels.
    let weights = Tensor::<3>::from_data(
        TensorData::new(vec![0.2989f32, 0.587, 0.114], [1, 1, 3]),
        &x.device(),
    )
    .expand([n, 1, 3]);
    let g = weights
        .matmul(x.clone().reshape([n, 3, h * w]))
        .reshape([n, 1, h, w]);
    match dtype {
        // Truncation of non-negative values is the floor.
        Dtype::U8 => g.clamp_min(0.0).int().float(),
        Dtype::F32 => g,
    }
}

/// torchvision's `_blend`: `clamp(x * ratio + other * (1 - ratio))`.
fn blend(x: Tensor<4>, other: Tensor<4>, ratio: &[f32], dtype: Dtype) -> Tensor<4> {
    let device = x.device();
    let r = per_sample(ratio, &device);
    let alpha = per_sample(&ratio.iter().map(|r| 1.0 - r).collect::<Vec<_>>(), &device);
    dtype.clamp_trunc(x * r + other * alpha)
}

/// Blends sample `n` with the mean of its grayscale image by `factor[n]`.
pub fn adjust_contrast(x: Tensor<4>, factors: &[f64], dtype: Dtype) -> Result<Tensor<4>> {
    let dims = dims_for(&x, "adjust_contrast", factors.len())?;
    rgb_only("adjust_contrast", dims)?;
    let f = check_factors("contrast_factor", factors, 0.0, f64::MAX)?;
    let mean = grayscale(&x, dtype).mean_dims(&[2, 3]);
    Ok(blend(x, mean, &f, dtype))
}

/// One ColorJitter step on the whole batch: sample `n` gets brightness (`Some((false, f))`),
/// contrast (`Some((true, f))`) or nothing (`None`). Both are torchvision's `_blend` with a
/// per-sample constant (0 for brightness, the mean gray for contrast), so this is one pass.
pub(crate) fn blend_with_mean(
    x: Tensor<4>,
    which: &[Option<(bool, f64)>],
    dtype: Dtype,
) -> Result<Tensor<4>> {
    let dims = dims_for(&x, "ColorJitter", which.len())?;
    let mut ratio = Vec::with_capacity(which.len());
    let mut mean_weight = Vec::with_capacity(which.len());
    for w in which {
        let (contrast, f) = w.unwrap_or((false, 1.0));
        let name = if contrast {
            "contrast_factor"
        } else {
            "brightness_factor"
        };
        check_range(name, f, 0.0, f64::MAX)?;
        ratio.push(f as f32);
        mean_weight.push(if contrast { 1.0 - f as f32 } else { 0.0 });
    }
    let device = x.device();
    let r = per_sample(&ratio, &device);
    let y = if mean_weight.iter().any(|&m| m != 0.0) {
        rgb_only("adjust_contrast", dims)?;
        let mean = grayscale(&x, dtype).mean_dims(&[2, 3]);
        x * r + mean * per_sample(&mean_weight, &device)
    } else {
        x * r
    };
    Ok(dtype.clamp_trunc(y))
}

/// Blends each pixel with its grayscale value by `factor[n]`.
pub fn adjust_saturation(x: Tensor<4>, factors: &[f64], dtype: Dtype) -> Result<Tensor<4>> {
    let dims = dims_for(&x, "adjust_saturation", factors.len())?;
    rgb_only("adjust_saturation", dims)?;
    let f = check_factors("saturation_factor", factors, 0.0, f64::MAX)?;
    let gray = grayscale(&x, dtype);
    Ok(blend(x, gray, &f, dtype))
}

/// Shifts the hue of sample `n` by `factor[n]` (in `[-0.5, 0.5]`), through HSV with
/// torchvision's formulas.
pub fn adjust_hue(x: Tensor<4>, factors: &[f64], dtype: Dtype) -> Result<Tensor<4>> {
    let dims = dims_for(&x, "adjust_hue", factors.len())?;
    rgb_only("adjust_hue", dims)?;
    let f = check_factors("hue_factor", factors, -0.5, 0.5)?;
    let [n, _, h, w] = dims;
    let device = x.device();
    let x = match dtype {
        Dtype::U8 => x.mul_scalar(1.0f32 / 255.0),
        Dtype::F32 => x,
    };
    let ch = |i: usize| x.clone().slice([0..n, i..i + 1, 0..h, 0..w]);
    let (r, g, b) = (ch(0), ch(1), ch(2));
    // _rgb_to_hsv
    let maxc = r.clone().max_pair(g.clone()).max_pair(b.clone());
    let minc = r.clone().min_pair(g.clone()).min_pair(b.clone());
    let eqc = maxc.clone().equal(minc.clone());
    let range = maxc.clone() - minc;
    let ones = maxc.ones_like();
    let s = range.clone() / maxc.clone().mask_where(eqc.clone(), ones.clone());
    let div = range.mask_where(eqc, ones);
    let rc = (maxc.clone() - r.clone()) / div.clone();
    let gc = (maxc.clone() - g.clone()) / div.clone();
    let bc = (maxc.clone() - b) / div;
    let max_is_r = maxc.clone().equal(r).float();
    let max_is_g = maxc.clone().equal(g).float();
    let not_r = max_is_r.clone().neg().add_scalar(1.0);
    let not_g = max_is_g.clone().neg().add_scalar(1.0);
    let hr = max_is_r * (bc.clone() - gc.clone());
    let hg = max_is_g * not_r.clone() * (rc.clone().add_scalar(2.0) - bc);
    let hb = not_g * not_r * (gc.add_scalar(4.0) - rc);
    let hue = (hr + hg + hb)
        .mul_scalar(1.0f32 / 6.0)
        .add_scalar(1.0)
        .remainder_scalar(1.0);
    // Shift, then _hsv_to_rgb.
    let hue = (hue + per_sample(&f, &device)).remainder_scalar(1.0);
    let v = maxc;
    let h6 = hue.mul_scalar(6.0);
    let i = h6.clone().floor();
    let frac = h6 - i.clone();
    let i = i.remainder_scalar(6.0);
    let sxf = s.clone() * frac;
    let one_minus_s = s.neg().add_scalar(1.0);
    let q = (sxf.clone().neg().add_scalar(1.0) * v.clone()).clamp(0.0, 1.0);
    let t = ((sxf + one_minus_s.clone()) * v.clone()).clamp(0.0, 1.0);
    let p = (one_minus_s * v.clone()).clamp(0.0, 1.0);
    // Pick (r, g, b) by sector i: 0 (v,t,p) 1 (q,v,p) 2 (p,v,t) 3 (p,q,v) 4 (t,p,v) 5 (v,p,q).
    let pick = |choices: [&Tensor<4>; 6]| {
        let mut out = choices[0].clone();
        for (k, c) in choices.iter().enumerate().skip(1) {
            out = out.mask_where(i.clone().equal_elem(k as f32), (*c).clone());
        }
        out
    };
    let r = pick([&v, &q, &p, &p, &t, &v]);
    let g = pick([&t, &v, &v, &q, &p, &p]);
    let b = pick([&p, &p, &t, &v, &v, &q]);
    let out = Tensor::cat(vec![r, g, b], 1);
    Ok(match dtype {
        Dtype::U8 => out.mul_scalar(255.999f32).floor().clamp(0.0, 255.0),
        Dtype::F32 => out,
    })
}

/// One erased box: rows `top..top + height`, columns `left..left + width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EraseBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// Sets box `boxes[n]` of sample `n` (if any) to `values` (one value or one per channel), or,
/// where `noise` is given (a full `[N, C, H, W]` tensor), to the noise inside the box.
pub fn erase(
    x: Tensor<4>,
    boxes: &[Option<EraseBox>],
    values: &[f32],
    noise: Option<Tensor<4>>,
) -> Result<Tensor<4>> {
    let [n, c, h, w] = dims_for(&x, "erase", boxes.len())?;
    if boxes.iter().all(Option::is_none) {
        return Ok(x);
    }
    let (mut y0, mut y1, mut x0, mut x1) = (vec![], vec![], vec![], vec![]);
    for b in boxes {
        let b = b.unwrap_or(EraseBox {
            top: 0,
            left: 0,
            height: 0,
            width: 0,
        });
        if b.top + b.height > h || b.left + b.width > w {
            return Err(AugmentError::param(
                "erase box",
                b,
                format!("inside the {h}x{w} image"),
            ));
        }
        y0.push(b.top as f32);
        y1.push((b.top + b.height) as f32);
        x0.push(b.left as f32);
        x1.push((b.left + b.width) as f32);
    }
    let device = x.device();
    let ys = Tensor::<1, Int>::arange(0..h as i64, &device)
        .float()
        .reshape([1, 1, h, 1]);
    let xs = Tensor::<1, Int>::arange(0..w as i64, &device)
        .float()
        .reshape([1, 1, 1, w]);
    let inside = ys.clone().greater_equal(per_sample(&y0, &device)).float()
        * ys.lower(per_sample(&y1, &device)).float()
        * xs.clone().greater_equal(per_sample(&x0, &device)).float()
        * xs.lower(per_sample(&x1, &device)).float();
    let mask = inside.greater_elem(0.5).repeat_dim(1, c);
    let value = match noise {
        Some(noise) => {
            if noise.dims() != [n, c, h, w] {
                return Err(AugmentError::unsupported(
                    "erase",
                    &noise.dims(),
                    format!("noise must have the batch's shape {:?}", [n, c, h, w]),
                ));
            }
            noise
        }
        None => per_channel("erase value", values, c, &device)?.expand([n, c, h, w]),
    };
    Ok(x.mask_where(mask, value))
}

/// `(x - mean[c]) / std[c]` (divides, like torchvision).
pub fn normalize(x: Tensor<4>, mean: &[f32], std: &[f32]) -> Result<Tensor<4>> {
    let [n, c, ..] = x.dims();
    dims_for(&x, "normalize", n)?;
    if let Some(s) = std.iter().find(|s| !s.is_finite() || **s == 0.0) {
        return Err(AugmentError::param("std", s, "finite and non-zero"));
    }
    if mean.len() != c || std.len() != c {
        return Err(AugmentError::mismatch(
            "normalize mean/std values per channel",
            c,
            if mean.len() != c {
                mean.len()
            } else {
                std.len()
            },
        ));
    }
    let device = x.device();
    let mean = per_channel("mean", mean, c, &device)?;
    let std = per_channel("std", std, c, &device)?;
    Ok((x - mean) / std)
}

/// `[0, 1]` values to u8 values with torchvision's `trunc(x * 255.999)`, saturating.
pub fn to_u8_values(x: Tensor<4>) -> Tensor<4> {
    x.mul_scalar(255.999f32).clamp(0.0, 255.0).floor()
}

/// u8 values to the `[0, 1]` scale: `x * f32(1 / 255)`, bit-exact with torchvision.
pub fn to_unit(x: Tensor<4>) -> Tensor<4> {
    x.mul_scalar(1.0f32 / 255.0)
}
