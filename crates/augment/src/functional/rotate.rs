//! Rotation, following torchvision v2's `rotate_image` (affine grid + `grid_sample`).

use crate::buffer::{Image, Pixel};
use crate::error::{AugmentError, Result};
use crate::functional::geometry::per_channel;
use crate::functional::resize::Interpolation;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Rotates by `angle` degrees counter-clockwise (as displayed) about `center`.
///
/// * `center`: `[x, y]` in pixel-edge coordinates (pixel `(r, c)` has its centre at
///   `(c + 0.5, r + 0.5)`); `None` is the image centre.
/// * `expand`: grow the output to hold the whole rotated image.
/// * `fill`: `None` samples zeros outside the image (plain zero padding); `Some(values)` (one
///   or one per channel, on the image's own scale) fills the outside with those values. For
///   bilinear this is torchvision's mask blend `(img - fill) * mask + fill`, so with
///   `Some(&[0.0])` border pixels are attenuated twice compared with `None`.
///
/// Multiples of 90° take exact fast paths, as in torchvision (90°/270° only for square images
/// or with `expand`, and only without `center`).
pub fn rotate<T: Pixel>(
    img: &Image<T>,
    angle: f64,
    interpolation: Interpolation,
    expand: bool,
    center: Option<[f64; 2]>,
    fill: Option<&[f32]>,
) -> Result<Image<T>> {
    if !angle.is_finite() {
        return Err(AugmentError::param(
            "angle",
            angle,
            "a finite number of degrees",
        ));
    }
    if let Some([x, y]) = center
        && !(x.is_finite() && y.is_finite())
    {
        return Err(AugmentError::param("center", [x, y], "finite coordinates"));
    }
    let fill = fill
        .map(|f| per_channel("fill", f, img.channels(), 0.0))
        .transpose()?;
    let angle = angle.rem_euclid(360.0);
    let [c, h, w] = img.shape();
    if center.is_none() {
        if angle == 0.0 {
            return Ok(img.clone());
        }
        if angle == 180.0 {
            return Image::from_fn([c, h, w], |ch, y, x| img.get(ch, h - 1 - y, w - 1 - x));
        }
        if expand || h == w {
            if angle == 90.0 {
                return Image::from_fn([c, w, h], |ch, y, x| img.get(ch, x, w - 1 - y));
            }
            if angle == 270.0 {
                return Image::from_fn([c, w, h], |ch, y, x| img.get(ch, h - 1 - x, y));
            }
        }
    }

    let m = inverse_matrix(h, w, angle, center);

    let (out_w, out_h) = if expand {
        expanded_size(&m, w, h)
    } else {
        (w, h)
    };
    if out_w == 0 || out_h == 0 {
        return Err(AugmentError::unsupported(
            "rotate",
            &img.shape(),
            "expanded output is empty",
        ));
    }

    // `_affine_grid` (f32): the theta columns are divided by half the input size, then applied
    // to output pixel centres relative to the output centre; `grid_sample(align_corners=False)`
    // maps the normalised coordinate g to pixel index (g + 1) * size / 2 - 0.5.
    let (rx, ry) = grid_rows(&m, h, w);
    let (half_w, half_h) = (0.5 * w as f32, 0.5 * h as f32);
    let mut data = vec![T::default(); c * out_h * out_w];
    let plane_out = out_h * out_w;
    let mut vals = vec![0.0f32; c];
    for oy in 0..out_h {
        let by = oy as f32 - (out_h as f32 - 1.0) * 0.5;
        for ox in 0..out_w {
            let bx = ox as f32 - (out_w as f32 - 1.0) * 0.5;
            let gx = bx * rx[0] + by * rx[1] + rx[2];
            let gy = bx * ry[0] + by * ry[1] + ry[2];
            let ix = (gx + 1.0) * half_w - 0.5;
            let iy = (gy + 1.0) * half_h - 0.5;
            let mask = sample(img, interpolation, ix, iy, &mut vals);
            for (ch, v) in vals.iter().enumerate() {
                let v = match (&fill, interpolation) {
                    (None, _) => *v,
                    (Some(f), Interpolation::Nearest) => {
                        if mask < 0.5 {
                            f[ch]
                        } else {
                            *v
                        }
                    }
                    (Some(f), Interpolation::Bilinear) => (*v - f[ch]) * mask + f[ch],
                };
                // u8 results are rounded (half to even), not truncated: torchvision calls round_()
                // (the cast then saturates, as torch's does for in-range values).
                data[ch * plane_out + oy * out_w + ox] = T::from_f32_round(v);
            }
        }
    }
    Ok(Image::from_vec_unchecked(data, c, out_h, out_w))
}

/// torchvision's `_get_inverse_affine_matrix(center_f, -angle, ...)`, in f64 like Python;
/// the centre is relative to the image centre.
pub(crate) fn inverse_matrix(h: usize, w: usize, angle: f64, center: Option<[f64; 2]>) -> [f64; 6] {
    let [cx, cy] = center.map_or([0.0, 0.0], |[x, y]| {
        [x - w as f64 * 0.5, y - h as f64 * 0.5]
    });
    let rot = (-angle).to_radians();
    let (sin, cos) = rot.sin_cos();
    let mut m = [cos, sin, 0.0, -sin, cos, 0.0];
    m[2] += cx - m[0] * cx - m[1] * cy;
    m[5] += cy - m[3] * cx - m[4] * cy;
    m
}

/// `_affine_grid`'s rows in f32: the theta columns divided by half the input size. The
/// normalised source of the output pixel at `(bx, by)` (relative to the output centre) is
/// `(rx . [bx, by, 1], ry . [bx, by, 1])`.
pub(crate) fn grid_rows(m: &[f64; 6], h: usize, w: usize) -> ([f32; 3], [f32; 3]) {
    let theta = m.map(|v| v as f32);
    let (half_w, half_h) = (0.5 * w as f32, 0.5 * h as f32);
    (
        [theta[0] / half_w, theta[1] / half_w, theta[2] / half_w],
        [theta[3] / half_h, theta[4] / half_h, theta[5] / half_h],
    )
}

/// The whole [`NearestMap`], row-major (the tests compare it with [`rotate`]).
#[cfg(test)]
pub(crate) fn rotate_nearest_map(h: usize, w: usize, angle: f64, flip: bool) -> Vec<u32> {
    let map = NearestMap::new(h, w, angle, flip);
    crate::simd::dispatch(
        #[inline(always)]
        |cpu| {
            let mut out = vec![0u32; h * w];
            for (oy, row) in out.chunks_exact_mut(w.max(1)).enumerate() {
                map.row(cpu, oy, row);
            }
            out
        },
    )
}

/// For nearest rotation about the centre without `expand`, of an `h x w` image that is first
/// mirrored left to right if `flip`: the source index `y * w + x` (in the unmirrored image) of
/// every output pixel, or `u32::MAX` where [`rotate`] takes the fill value, one output row at a
/// time (used while the row is in the L1 cache). The coordinates are computed with exactly the
/// f32 operations of [`rotate`], including its exact paths for multiples of 90°.
#[derive(Debug)]
pub(crate) struct NearestMap {
    h: usize,
    w: usize,
    flip: bool,
    kind: MapKind,
}

/// (h, w, y, x) -> source (y, x) of the exact paths.
type Exact = fn(usize, usize, usize, usize) -> (usize, usize);

#[derive(Debug)]
enum MapKind {
    Exact(Exact),
    /// The grid rows of [`rotate`], with `bx * r[0]` of every output column precomputed
    /// (the same product, so the same bits).
    Rotated {
        rx: [f32; 3],
        ry: [f32; 3],
        col_x: Vec<f32>,
        col_y: Vec<f32>,
    },
}

impl NearestMap {
    /// `angle` must be finite.
    pub(crate) fn new(h: usize, w: usize, angle: f64, flip: bool) -> Self {
        let angle = angle.rem_euclid(360.0);
        let exact: Option<Exact> = if angle == 0.0 {
            Some(|_, _, y, x| (y, x))
        } else if angle == 180.0 {
            Some(|h, w, y, x| (h - 1 - y, w - 1 - x))
        } else if h == w && angle == 90.0 {
            Some(|_, w, y, x| (x, w - 1 - y))
        } else if h == w && angle == 270.0 {
            Some(|h, _, y, x| (h - 1 - x, y))
        } else {
            None
        };
        let kind = match exact {
            Some(pos) => MapKind::Exact(pos),
            None => {
                let (rx, ry) = grid_rows(&inverse_matrix(h, w, angle, None), h, w);
                let cx = (w as f32 - 1.0) * 0.5;
                let bx = (0..w).map(|ox| ox as f32 - cx);
                MapKind::Rotated {
                    rx,
                    ry,
                    col_x: bx.clone().map(|bx| bx * rx[0]).collect(),
                    col_y: bx.map(|bx| bx * ry[0]).collect(),
                }
            }
        };
        Self { h, w, flip, kind }
    }

    /// Output row `oy` (`w` entries) into `out`.
    #[inline(always)]
    pub(crate) fn row(&self, cpu: crate::simd::Fma, oy: usize, out: &mut [u32]) {
        let (h, w, flip) = (self.h, self.w, self.flip);
        let (rx, ry, col_x, col_y) = match &self.kind {
            MapKind::Exact(pos) => {
                for (x, m) in out.iter_mut().enumerate() {
                    let (sy, sx) = pos(h, w, oy, x);
                    *m = (sy * w + if flip { w - 1 - sx } else { sx }) as u32;
                }
                return;
            }
            MapKind::Rotated {
                rx,
                ry,
                col_x,
                col_y,
            } => (rx, ry, col_x, col_y),
        };
        let (half_w, half_h) = (0.5 * w as f32, 0.5 * h as f32);
        let (wi, hi) = (w as i32, h as i32);
        // The column term of the index: x, or w - 1 - x for the mirrored image.
        let (x_base, x_sign) = if flip { (w as i32 - 1, -1) } else { (0, 1) };
        let by = oy as f32 - (h as f32 - 1.0) * 0.5;
        // Same operations and order as `rotate`: (bx * r0 + by * r1) + r2.
        let (tx, ty) = (by * rx[1], by * ry[1]);
        #[allow(unused_mut)]
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = cpu.avx2() {
            let (rx2, ry2) = (rx[2], ry[2]);
            let t = avx2::RowTerms {
                tx,
                ty,
                rx2,
                ry2,
                half_w,
                half_h,
            };
            done = avx2::rotated_row(simd, col_x, col_y, &t, w, h, flip, out);
        }
        let cols = out.iter_mut().zip(col_x).zip(col_y).skip(done);
        for ((m, &ax), &ay) in cols {
            let gx = ax + tx + rx[2];
            let gy = ay + ty + ry[2];
            let (ix, ok_x) = round_even_i32((gx + 1.0) * half_w - 0.5);
            let (iy, ok_y) = round_even_i32((gy + 1.0) * half_h - 0.5);
            let inside = ok_x & ok_y & (ix >= 0) & (iy >= 0) & (ix < wi) & (iy < hi);
            let idx = iy * wi + x_base + x_sign * ix;
            *m = if inside { idx as u32 } else { u32::MAX };
        }
    }
}

/// `(x.round_ties_even() as i32, true)` for `|x| < 2^22`, `(_, false)` otherwise (then `x` is
/// outside any image, NaN included): the integer is read from the bits of `x + 1.5 * 2^23`,
/// whose unit in the last place is 1, so that the loop vectorises without conversions.
#[inline(always)]
fn round_even_i32(x: f32) -> (i32, bool) {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let ok = x.abs() < 4_194_304.0;
    let i = (x + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32;
    (i, ok)
}

/// Samples every channel at pixel coordinate `(ix, iy)` with zero padding into `out`; returns
/// the same sample of an all-ones mask (the fraction of the footprint inside the image).
fn sample<T: Pixel>(
    img: &Image<T>,
    interpolation: Interpolation,
    ix: f32,
    iy: f32,
    out: &mut [f32],
) -> f32 {
    let [_, h, w] = img.shape();
    let at = |x: f32, y: f32| -> Option<(usize, usize)> {
        (x >= 0.0 && y >= 0.0 && x < w as f32 && y < h as f32).then_some((y as usize, x as usize))
    };
    match interpolation {
        Interpolation::Nearest => {
            // grid_sample's nearest uses nearbyint: round half to even.
            let p = at(ix.round_ties_even(), iy.round_ties_even());
            for (ch, o) in out.iter_mut().enumerate() {
                *o = p.map_or(0.0, |(y, x)| img.get(ch, y, x).to_f32());
            }
            if p.is_some() { 1.0 } else { 0.0 }
        }
        Interpolation::Bilinear => {
            let (x0, y0) = (ix.floor(), iy.floor());
            let (we, wn) = (ix - x0, iy - y0);
            let (ww, ws) = (1.0 - we, 1.0 - wn);
            let corners = [
                (at(x0, y0), ws * ww),
                (at(x0 + 1.0, y0), ws * we),
                (at(x0, y0 + 1.0), wn * ww),
                (at(x0 + 1.0, y0 + 1.0), wn * we),
            ];
            for (ch, o) in out.iter_mut().enumerate() {
                let v = |k: usize| {
                    corners[k]
                        .0
                        .map_or(0.0, |(y, x)| img.get(ch, y, x).to_f32())
                };
                // Same summation order as torch's vectorised kernel.
                *o = v(0) * corners[0].1
                    + v(1) * corners[1].1
                    + v(2) * corners[2].1
                    + v(3) * corners[3].1;
            }
            let m = |k: usize| if corners[k].0.is_some() { 1.0 } else { 0.0 };
            m(0) * corners[0].1 + m(1) * corners[1].1 + m(2) * corners[2].1 + m(3) * corners[3].1
        }
    }
}

/// torchvision's `_compute_affine_output_size`: bounding box of the rotated corners in f32,
/// truncated to 1e-4 before ceil/floor so that rounding noise does not add a pixel.
pub(crate) fn expanded_size(m: &[f64; 6], w: usize, h: usize) -> (usize, usize) {
    let t = m.map(|v| v as f32);
    let (hw, hh) = (0.5 * w as f32, 0.5 * h as f32);
    let pts = [(-hw, -hh), (-hw, hh), (hw, hh), (hw, -hh)];
    let (mut min, mut max) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for (x, y) in pts {
        let p = [x * t[0] + y * t[1] + t[2], x * t[3] + y * t[4] + t[5]];
        for k in 0..2 {
            min[k] = min[k].min(p[k]);
            max[k] = max[k].max(p[k]);
        }
    }
    let halfs = [hw, hh];
    let inv_tol = (1.0f64 / 1e-4) as f32;
    let tol = 1e-4f32;
    let size = |k: usize| {
        let hi = ((max[k] + halfs[k]) * inv_tol).trunc() * tol;
        let lo = ((min[k] + halfs[k]) * inv_tol).trunc() * tol;
        (hi.ceil() - lo.floor()).max(0.0) as usize
    };
    (size(0), size(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> Image<u8> {
        Image::from_chw((0..3 * 4 * 5).map(|v| v as u8).collect(), 3, 4, 5).expect("valid")
    }

    #[test]
    fn quarter_turns_are_exact() {
        let img = img();
        let r90 = rotate(&img, 90.0, Interpolation::Nearest, true, None, None).expect("ok");
        assert_eq!(r90.shape(), [3, 5, 4]);
        // Counter-clockwise: the top-right pixel goes to the top-left.
        assert_eq!(r90.get(0, 0, 0), img.get(0, 0, 4));
        let back = rotate(&r90, -90.0, Interpolation::Bilinear, true, None, None).expect("ok");
        assert_eq!(back, img);
        let twice = rotate(
            &rotate(&img, 180.0, Interpolation::Nearest, false, None, None).expect("ok"),
            180.0,
            Interpolation::Nearest,
            false,
            None,
            None,
        )
        .expect("ok");
        assert_eq!(twice, img);
    }

    #[test]
    fn explicit_center_in_pixel_edge_coordinates() {
        // Rotating 180° about (1.5, 1.5) keeps pixel (1, 1) in place.
        let img = Image::<u8>::from_chw((0..25).collect(), 1, 5, 5).expect("valid");
        let out = rotate(
            &img,
            180.0,
            Interpolation::Nearest,
            false,
            Some([1.5, 1.5]),
            Some(&[0.0]),
        )
        .expect("ok");
        assert_eq!(out.get(0, 1, 1), img.get(0, 1, 1));
        assert_eq!(out.get(0, 0, 0), img.get(0, 2, 2));
    }

    #[test]
    fn nearest_map_matches_rotate() {
        for (h, w) in [(24, 24), (17, 30), (9, 9)] {
            let n = h * w;
            let img =
                Image::<f32>::from_chw((0..n).map(|v| v as f32).collect(), 1, h, w).expect("valid");
            for angle in [
                0.0, 7.5, -15.0, 14.999, 45.0, 90.0, 180.0, 270.0, -90.0, 333.3,
            ] {
                for flip in [false, true] {
                    let mut src = img.clone();
                    if flip {
                        crate::functional::horizontal_flip_in_place(&mut src);
                    }
                    let rotated = rotate(
                        &src,
                        angle,
                        Interpolation::Nearest,
                        false,
                        None,
                        Some(&[-1.0]),
                    )
                    .expect("ok");
                    let map = rotate_nearest_map(h, w, angle, flip);
                    let want: Vec<f32> = map
                        .iter()
                        .map(|&m| if m == u32::MAX { -1.0 } else { m as f32 })
                        .collect();
                    assert_eq!(rotated.as_slice(), &want[..], "{h}x{w} {angle} {flip}");
                }
            }
        }
        for x in [
            -2.5f32, -0.5, 0.5, 1.5, 2.5, 3.4999, 223.5, -0.49, 1e7, -1e7,
        ] {
            let (i, ok) = round_even_i32(x);
            assert_eq!(ok, x.abs() < 4_194_304.0);
            if ok {
                assert_eq!(i, x.round_ties_even() as i32, "{x}");
            }
        }
    }

    #[test]
    fn rejects_bad_parameters() {
        let img = img();
        assert!(rotate(&img, f64::NAN, Interpolation::Nearest, false, None, None).is_err());
        assert!(
            rotate(
                &img,
                10.0,
                Interpolation::Nearest,
                false,
                None,
                Some(&[1.0, 2.0])
            )
            .is_err()
        );
    }
}
