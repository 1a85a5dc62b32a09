//! The AVX2 loop of [`super::NearestMap::row`], through pulp's safe intrinsics: the rounding
//! to the nearest pixel is one `cvtps2dq` (round half to even, the default rounding mode),
//! where the plain loop needs a magic-number sequence to vectorise.

use std::arch::x86_64::__m256;

use pulp::bytemuck::cast;
use pulp::x86::V3;

/// One rotated row's grid terms: source `x = ((col_x + tx) + rx2 + 1) * half_w - 0.5`, and the
/// same for `y` (the operations and order of `rotate`).
pub(super) struct RowTerms {
    pub tx: f32,
    pub ty: f32,
    pub rx2: f32,
    pub ry2: f32,
    pub half_w: f32,
    pub half_h: f32,
}

/// Fills `out[..8k]` for the columns whose `bx * r0` terms are `col_x`, `col_y` in an `h x w`
/// image (mirrored if `flip`); returns how many entries it wrote.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn rotated_row(
    simd: V3,
    col_x: &[f32],
    col_y: &[f32],
    t: &RowTerms,
    w: usize,
    h: usize,
    flip: bool,
    out: &mut [u32],
) -> usize {
    let (avx, a2) = (simd.avx, simd.avx2);
    let n = out.len().min(col_x.len()).min(col_y.len());
    let done = n - n % 8;
    let ps = |v: f32| avx._mm256_set1_ps(v);
    let epi = |v: i32| avx._mm256_set1_epi32(v);
    let (tx, ty, rx2, ry2) = (ps(t.tx), ps(t.ty), ps(t.rx2), ps(t.ry2));
    let (half_w, half_h, one, half) = (ps(t.half_w), ps(t.half_h), ps(1.0), ps(0.5));
    let (wi, hi, minus_one) = (epi(w as i32), epi(h as i32), epi(-1));
    let last = epi(w as i32 - 1);
    let load = |s: &[f32], x: usize| -> __m256 {
        let v: [f32; 8] = s[x..x + 8].try_into().unwrap_or([0.0; 8]);
        cast(v)
    };
    for x in (0..done).step_by(8) {
        let gx = avx._mm256_add_ps(avx._mm256_add_ps(load(col_x, x), tx), rx2);
        let gy = avx._mm256_add_ps(avx._mm256_add_ps(load(col_y, x), ty), ry2);
        let fx = avx._mm256_sub_ps(avx._mm256_mul_ps(avx._mm256_add_ps(gx, one), half_w), half);
        let fy = avx._mm256_sub_ps(avx._mm256_mul_ps(avx._mm256_add_ps(gy, one), half_h), half);
        // Out of the i32 range or NaN gives i32::MIN: outside, like any negative index.
        let (ix, iy) = (avx._mm256_cvtps_epi32(fx), avx._mm256_cvtps_epi32(fy));
        let inside_x = a2._mm256_and_si256(
            a2._mm256_cmpgt_epi32(ix, minus_one),
            a2._mm256_cmpgt_epi32(wi, ix),
        );
        let inside_y = a2._mm256_and_si256(
            a2._mm256_cmpgt_epi32(iy, minus_one),
            a2._mm256_cmpgt_epi32(hi, iy),
        );
        let col = if flip {
            a2._mm256_sub_epi32(last, ix)
        } else {
            ix
        };
        let idx = a2._mm256_add_epi32(a2._mm256_mullo_epi32(iy, wi), col);
        let inside = a2._mm256_and_si256(inside_x, inside_y);
        // u32::MAX (all ones) outside.
        let m = a2._mm256_blendv_epi8(minus_one, idx, inside);
        out[x..x + 8].copy_from_slice(&cast::<_, [u32; 8]>(m));
    }
    done
}
