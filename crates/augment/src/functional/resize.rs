//! Resizing, following torch's CPU `interpolate` kernels as torchvision v2 calls them.

use std::any::Any;

use crate::buffer::{Image, Pixel};
use crate::error::{AugmentError, Result};
use crate::functional::geometry::{check_box, crop};
use crate::simd::Fma;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Resampling filter (torchvision's `InterpolationMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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
            let full = CropBox {
                top: 0,
                left: 0,
                height: img.height(),
                width: img.width(),
            };
            if let Some(out) = fast_u8(img, full, size, antialias) {
                return Ok(out);
            }
            resize_bilinear_generic(img, out_h, out_w, antialias)
        }
    }
}

/// The bilinear resize for any pixel type, one output value at a time (the reference for the
/// fixed-point u8 fast path, [`bilinear_u8`]).
fn resize_bilinear_generic<T: Pixel>(
    img: &Image<T>,
    out_h: usize,
    out_w: usize,
    antialias: bool,
) -> Result<Image<T>> {
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
    if interpolation == Interpolation::Bilinear
        && size[0] > 0
        && size[1] > 0
        && let Some(out) = fast_u8(img, crop_box, size, antialias)
    {
        return Ok(out);
    }
    resize(
        &crop(img, top, left, height, width)?,
        size,
        interpolation,
        antialias,
    )
}

/// [`bilinear_u8`] for u8 images; `None` for f32.
fn fast_u8<T: Pixel>(
    img: &Image<T>,
    crop_box: CropBox,
    size: [usize; 2],
    antialias: bool,
) -> Option<Image<T>> {
    let img = (img as &dyn Any).downcast_ref::<Image<u8>>()?;
    let out: Box<dyn Any> = Box::new(bilinear_u8(img, crop_box, size, antialias));
    out.downcast::<Image<T>>().ok().map(|b| *b)
}

/// Bilinear resize of the `crop_box` region of a u8 image to `[out_h, out_w]`, with torch's
/// fixed-point u8 kernel: bit-identical to [`resize_bilinear_generic`] on the cropped image
/// (horizontal pass, rounded to u8, then vertical pass; a pass is skipped when its size is
/// unchanged), but with fixed-length tap rows the compiler unrolls, i32 accumulators and a
/// vertical pass that runs along whole rows. The box must lie inside the image.
pub(crate) fn bilinear_u8(
    img: &Image<u8>,
    crop_box: CropBox,
    size: [usize; 2],
    antialias: bool,
) -> Image<u8> {
    crate::simd::dispatch(
        #[inline(always)]
        |cpu| bilinear_u8_loops(cpu, img, crop_box, size, antialias),
    )
}

#[inline(always)]
fn bilinear_u8_loops(
    cpu: Fma,
    img: &Image<u8>,
    crop_box: CropBox,
    [out_h, out_w]: [usize; 2],
    antialias: bool,
) -> Image<u8> {
    let [c, h, w] = img.shape();
    let CropBox {
        top,
        left,
        height,
        width,
    } = crop_box;
    let src = img.as_slice();
    let rows = |ch: usize| (0..height).map(move |y| (ch * h + top + y) * w + left);
    let mut hbuf = vec![0u8; c * height * out_w];
    if out_w != width {
        let taps = FixedTaps::new(&AxisTaps::bilinear(width, out_w, antialias), width);
        let starts: Vec<usize> = (0..c).flat_map(rows).collect();
        #[allow(unused_mut)]
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = cpu.avx2() {
            done = taps.rows_avx2(simd, src, width, &starts, &mut hbuf);
        }
        // Blocks of rows share each output position's taps (kept in registers).
        for (block, out) in starts[done..]
            .chunks(ROW_BLOCK)
            .zip(hbuf[done * out_w..].chunks_mut(ROW_BLOCK * out_w))
        {
            let rows: Vec<&[u8]> = block.iter().map(|&s| &src[s..s + width]).collect();
            taps.apply_rows(&rows, out);
        }
    } else {
        let mut out_rows = hbuf.chunks_exact_mut(out_w);
        for ch in 0..c {
            for (start, out) in rows(ch).zip(&mut out_rows) {
                out.copy_from_slice(&src[start..start + width]);
            }
        }
    }
    if out_h == height {
        return Image::from_vec_unchecked(hbuf, c, height, out_w);
    }
    let taps = AxisTaps::bilinear(height, out_h, antialias);
    let round = taps.round();
    // The AVX2 kernel's weight pairs (only in the AVX2 copy), `pairs_per_row` per output row.
    #[cfg(target_arch = "x86_64")]
    let pairs_per_row = taps.stride.div_ceil(2);
    #[cfg(target_arch = "x86_64")]
    let vertical_pairs: Vec<i32> = match cpu.avx2() {
        Some(_) => {
            let weights: Vec<i16> = taps.weights_i.iter().map(|&w| int16(w)).collect();
            weight_pairs(&weights, taps.stride)
        }
        None => Vec::new(),
    };
    let mut out = vec![0u8; c * out_h * out_w];
    let mut acc = vec![0i32; out_w];
    let mut out_rows = out.chunks_exact_mut(out_w);
    for plane in hbuf.chunks_exact(height * out_w) {
        for (y, out_row) in (0..out_h).zip(&mut out_rows) {
            let (s, n) = (taps.start[y], taps.len[y]);
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = cpu.avx2() {
                let pairs = &vertical_pairs[y * pairs_per_row..];
                let prec = taps.precision;
                macro_rules! pairs {
                    ($($p:literal)*) => {
                        match n.div_ceil(2) {
                            $($p => {
                                avx2::vertical_row::<$p>(
                                    simd, plane, out_w, s, n, pairs, round, prec, out_row,
                                );
                                continue;
                            })*
                            _ => {}
                        }
                    };
                }
                pairs!(1 2 3 4 5 6 7 8 9 10 11 12);
            }
            acc.fill(round);
            let wts = &taps.weights_i[y * taps.stride..y * taps.stride + n];
            for (k, &wt) in wts.iter().enumerate() {
                let row = &plane[(s + k) * out_w..(s + k + 1) * out_w];
                // 16-bit operands (torch's int16 weights): 16x16-bit vector multiplies.
                let wt = int16(wt);
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += i32::from(i16::from(v)) * i32::from(wt);
                }
            }
            for (o, &a) in out_row.iter_mut().zip(&acc) {
                *o = (a >> taps.precision).min(255) as u8;
            }
        }
    }
    Image::from_vec_unchecked(out, c, out_h, out_w)
}

/// A tap weight as torch's u8 kernel stores it (int16; its weights stay below 2^15).
#[inline(always)]
fn int16(w: i32) -> i16 {
    i16::try_from(w).unwrap_or(i16::MAX)
}

/// Each `taps`-long row of `weights` in the lane pairs of the AVX2 kernels' `pmaddwd`: taps
/// `2t` and `2t + 1` (a zero after an odd last tap) as one i32, `w0` in the low half; so
/// `taps.div_ceil(2)` pairs per row. (Plain loops: iterator adaptors such as `flat_map` are not
/// inlined into the AVX2 copy and cost more here than the resize they prepare.)
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn weight_pairs(weights: &[i16], taps: usize) -> Vec<i32> {
    let mut pairs = Vec::with_capacity(weights.len() / taps.max(1) * taps.div_ceil(2));
    for row in weights.chunks_exact(taps) {
        for p in row.chunks(2) {
            let w1 = p.get(1).copied().unwrap_or(0);
            pairs.push(i32::from(p[0] as u16) | (i32::from(w1) << 16));
        }
    }
    pairs
}

/// Transposes an 8x8 byte matrix held as 8 little-endian rows: byte `c` of `a[r]` becomes
/// byte `r` of word `c` of the result. Three rounds swap the off-diagonal blocks (4x4, 2x2,
/// then single bytes) with masks and shifts instead of 64 byte moves.
#[inline(always)]
fn transpose8(a: [u64; 8]) -> [u64; 8] {
    #[inline(always)]
    fn swap(a: &mut [u64; 8], i: usize, j: usize, shift: u32, mask: u64) {
        let t = ((a[i] >> shift) ^ a[j]) & mask;
        a[i] ^= t << shift;
        a[j] ^= t;
    }
    let mut a = a;
    /// Shift in bytes, mask of the low halves, the word pairs that trade them.
    type Round = (u32, u64, [(usize, usize); 4]);
    const ROUNDS: [Round; 3] = [
        (4, 0x0000_0000_FFFF_FFFF, [(0, 4), (1, 5), (2, 6), (3, 7)]),
        (2, 0x0000_FFFF_0000_FFFF, [(0, 2), (1, 3), (4, 6), (5, 7)]),
        (1, 0x00FF_00FF_00FF_00FF, [(0, 1), (2, 3), (4, 5), (6, 7)]),
    ];
    for (bytes, mask, pairs) in ROUNDS {
        for (i, j) in pairs {
            swap(&mut a, i, j, 8 * bytes, mask);
        }
    }
    a
}

/// Rows filtered together by the horizontal pass of [`bilinear_u8`].
///
/// In both passes the accumulators are non-negative (the triangle filter's weights are), so
/// only the upper clamp of torch's `clamp(0, 255)` can bind.
const ROW_BLOCK: usize = 8;

/// Integer taps of one axis rearranged to the same length `k` for every output position: the
/// window start is moved left where needed to stay inside the input, and the weights are
/// shifted to match (padded with zeros), so no output reads past the row.
#[derive(Debug)]
struct FixedTaps {
    k: usize,
    start: Vec<usize>,
    /// torch's u8 kernel keeps its weights below 2^15 (int16).
    weights: Vec<i16>,
    precision: u32,
    round: i32,
}

impl FixedTaps {
    fn new(taps: &AxisTaps, input: usize) -> Self {
        let k = taps.len.iter().copied().max().unwrap_or(1).clamp(1, input);
        // No padding to whole vectors: blocks of rows take one vector operation per tap.
        let n_out = taps.start.len();
        let mut start = Vec::with_capacity(n_out);
        let mut weights = vec![0i16; n_out * k];
        for i in 0..n_out {
            let (s, n) = (taps.start[i], taps.len[i]);
            let s2 = s.min(input - k);
            let shift = s - s2;
            for j in 0..n {
                let wt = taps.weights_i[i * taps.stride + j];
                weights[i * k + shift + j] = int16(wt);
            }
            start.push(s2);
        }
        Self {
            k,
            start,
            weights,
            precision: taps.precision,
            round: taps.round(),
        }
    }

    /// The whole blocks of 8 of the rows of `src` at `row_starts` with the AVX2 kernel, into
    /// `out`; returns how many rows it filtered (none when the taps are too long for it).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn rows_avx2(
        &self,
        simd: crate::simd::Avx2,
        src: &[u8],
        width: usize,
        row_starts: &[usize],
        out: &mut [u8],
    ) -> usize {
        let rows = row_starts.len() - row_starts.len() % ROW_BLOCK;
        let out = &mut out[..rows * self.start.len()];
        let pair_weights = weight_pairs(&self.weights, self.k);
        macro_rules! pairs {
            ($($p:literal)*) => {
                match self.k.div_ceil(2) {
                    $($p => avx2::horizontal::<$p>(
                        simd,
                        src,
                        width,
                        &row_starts[..rows],
                        &self.start,
                        &pair_weights,
                        self.round,
                        self.precision,
                        out,
                    ),)*
                    _ => return 0,
                }
            };
        }
        pairs!(1 2 3 4 5 6 7 8 9 10 11 12);
        rows
    }

    /// Filters each of `rows` (at most [`ROW_BLOCK`]) into the matching `out` row of
    /// `self.start.len()` values, output position by output position.
    #[inline(always)]
    fn apply_rows(&self, rows: &[&[u8]], out: &mut [u8]) {
        macro_rules! fixed {
            ($($k:literal)*) => {
                match self.k {
                    $($k => self.rows_k::<$k>(rows, out),)*
                    _ => self.rows_dyn(rows, out),
                }
            };
        }
        fixed!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 20 24);
    }

    #[inline(always)]
    fn rows_k<const K: usize>(&self, rows: &[&[u8]], out: &mut [u8]) {
        if let Ok(block) = <&[&[u8]; ROW_BLOCK]>::try_from(rows) {
            return self.block_k::<K>(block, out);
        }
        let n_out = self.start.len();
        for (x, (&s, wts)) in self
            .start
            .iter()
            .zip(self.weights.chunks_exact(K))
            .enumerate()
        {
            let wts: [i32; K] = std::array::from_fn(|j| i32::from(wts[j]));
            for (row, o) in rows.iter().zip(out[x..].iter_mut().step_by(n_out)) {
                let px: &[u8; K] = row[s..s + K].try_into().unwrap_or(&[0; K]);
                let mut acc = self.round;
                for j in 0..K {
                    acc += i32::from(px[j]) * wts[j];
                }
                *o = (acc >> self.precision).min(255) as u8;
            }
        }
    }

    /// [`rows_k`](Self::rows_k) on a full block of rows, computed across the rows: the block
    /// is interleaved so that column `x` of all its rows is 8 adjacent bytes, and each output
    /// position then takes one vector multiply-add per tap for all 8 rows (a dot product along
    /// a planar row does not vectorise). Same integer sums, so the same bytes.
    #[inline(always)]
    fn block_k<const K: usize>(&self, rows: &[&[u8]; ROW_BLOCK], out: &mut [u8]) {
        let n_out = self.start.len();
        let width = rows.iter().map(|r| r.len()).min().unwrap_or(0);
        let rows = rows.map(|r| &r[..width]);
        let mut cols = vec![[0u8; ROW_BLOCK]; width];
        let whole = width - width % 8;
        for (x0, chunk) in (0..whole).step_by(8).zip(cols.chunks_exact_mut(8)) {
            let words = transpose8(std::array::from_fn(|r| {
                u64::from_le_bytes(rows[r][x0..x0 + 8].try_into().unwrap_or([0; 8]))
            }));
            for (col, w) in chunk.iter_mut().zip(words) {
                *col = w.to_le_bytes();
            }
        }
        for (x, col) in cols.iter_mut().enumerate().skip(whole) {
            *col = rows.map(|r| r[x]);
        }
        let mut outs = vec![[0u8; ROW_BLOCK]; n_out];
        for ((o, &s), wts) in outs
            .iter_mut()
            .zip(&self.start)
            .zip(self.weights.chunks_exact(K))
        {
            let mut acc = [self.round; ROW_BLOCK];
            for (col, &wt) in cols[s..s + K].iter().zip(wts) {
                let wt = i32::from(wt);
                for (a, &p) in acc.iter_mut().zip(col) {
                    *a += i32::from(p) * wt;
                }
            }
            *o = acc.map(|a| (a >> self.precision).min(255) as u8);
        }
        for (r, row) in out.chunks_exact_mut(n_out).enumerate() {
            for (o, v) in row.iter_mut().zip(&outs) {
                *o = v[r];
            }
        }
    }

    #[inline(always)]
    fn rows_dyn(&self, rows: &[&[u8]], out: &mut [u8]) {
        let (k, n_out) = (self.k, self.start.len());
        for (row, out) in rows.iter().zip(out.chunks_exact_mut(n_out)) {
            for ((o, &s), wts) in out
                .iter_mut()
                .zip(&self.start)
                .zip(self.weights.chunks_exact(k))
            {
                let mut acc = self.round;
                for (&p, &wt) in row[s..s + k].iter().zip(wts) {
                    acc += i32::from(p) * i32::from(wt);
                }
                *o = (acc >> self.precision).min(255) as u8;
            }
        }
    }
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

/// Axis resampling as a dense `[output, full]` row-major matrix: output position `i` is the
/// weighted sum of input positions `offset + k` for `k` in `0..input` (a crop of an axis of
/// length `full`), with exactly the taps of [`resize`]. An unchanged size is a plain copy of
/// the crop, as [`resize`] skips that pass. The batched tensor ops resize with these.
///
/// `fixed_point` gives the u8 kernel's quantised weights (`weights_i / 2^precision`): with
/// them an f32 matmul over u8 values is exact, and `floor(x + 0.5)` then reproduces the u8
/// kernel's rounding bit for bit.
pub(crate) fn axis_matrix(
    full: usize,
    offset: usize,
    input: usize,
    output: usize,
    interpolation: Interpolation,
    antialias: bool,
    fixed_point: bool,
) -> Vec<f32> {
    let mut m = vec![0.0f32; output * full];
    if input == output {
        for i in 0..output {
            m[i * full + offset + i] = 1.0;
        }
        return m;
    }
    match interpolation {
        Interpolation::Nearest => {
            for i in 0..output {
                m[i * full + offset + nearest_source(i, input, output)] = 1.0;
            }
        }
        Interpolation::Bilinear => {
            let taps = AxisTaps::bilinear(input, output, antialias);
            let unit = 1.0 / f64::from(1u32 << taps.precision);
            for i in 0..output {
                let (s, n) = (taps.start[i], taps.len[i]);
                let range = i * taps.stride..i * taps.stride + n;
                for k in 0..n {
                    let j = range.start + k;
                    m[i * full + offset + s + k] = if fixed_point {
                        (f64::from(taps.weights_i[j]) * unit) as f32
                    } else {
                        taps.weights_f[j]
                    };
                }
            }
        }
    }
    m
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

    /// The fixed-point rounding term: one half in `precision` fractional bits.
    fn round(&self) -> i32 {
        if self.precision > 0 {
            1 << (self.precision - 1)
        } else {
            0
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
    fn u8_fast_path_equals_generic() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (h, w) = (61, 83);
        let data: Vec<u8> = (0..3 * h * w).map(|_| rng.random()).collect();
        let img = Image::<u8>::from_chw(data, 3, h, w).expect("valid");
        for _ in 0..300 {
            let height = rng.random_range(1..=h);
            let width = rng.random_range(1..=w);
            let b = CropBox {
                top: rng.random_range(0..=h - height),
                left: rng.random_range(0..=w - width),
                height,
                width,
            };
            let size = [rng.random_range(1..90), rng.random_range(1..90)];
            let aa = rng.random::<bool>();
            let cropped = crop(&img, b.top, b.left, b.height, b.width).expect("ok");
            let want = resize_bilinear_generic(&cropped, size[0], size[1], aa).expect("ok");
            // The AVX2 kernels (where the CPU has them), then the portable loops.
            assert_eq!(bilinear_u8(&img, b, size, aa), want, "{b:?} {size:?} {aa}");
            crate::simd::force_baseline(true);
            let baseline = bilinear_u8(&img, b, size, aa);
            crate::simd::force_baseline(false);
            assert_eq!(baseline, want, "baseline copy: {b:?} {size:?} {aa}");
        }
    }

    #[test]
    fn transpose8_transposes() {
        let m: [[u8; 8]; 8] = std::array::from_fn(|r| std::array::from_fn(|c| (r * 8 + c) as u8));
        let t = transpose8(m.map(u64::from_le_bytes)).map(u64::to_le_bytes);
        for (r, row) in m.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                assert_eq!(t[c][r], v, "({r}, {c})");
            }
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
