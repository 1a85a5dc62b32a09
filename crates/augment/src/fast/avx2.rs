//! AVX2 loops of the fused paths, through pulp's safe intrinsics, where the plain loops leave
//! float-to-int conversions to slower sequences (Rust's `as` saturates; `cvttps2dq` does not
//! need to for these ranges).

use std::arch::x86_64::__m128i;

use pulp::bytemuck::cast;
use pulp::x86::V3;

/// The sum of `floor(gray)` over the first `8 * k` pixels of three planes, with each level
/// first scaled by `brightness` and truncated to a u8 level (as [`super::clamp_trunc_u8`]
/// does) when given; returns the sum and the number of pixels done. `brightness` must be
/// finite and non-negative; the caller finishes the other pixels.
#[inline(always)]
pub(super) fn gray_floor_sum(
    simd: V3,
    r: &[u8],
    g: &[u8],
    b: &[u8],
    brightness: Option<f32>,
) -> (u32, usize) {
    let (avx, a2, fma) = (simd.avx, simd.avx2, simd.fma);
    let n = r.len().min(g.len()).min(b.len());
    let done = n - n % 8;
    let factor = avx._mm256_set1_ps(brightness.unwrap_or(1.0));
    let top = avx._mm256_set1_ps(255.0);
    let (wr, wg, wb) = (
        avx._mm256_set1_ps(0.2989),
        avx._mm256_set1_ps(0.587),
        avx._mm256_set1_ps(0.114),
    );
    let level = |plane: &[u8], x: usize| {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&plane[x..x + 8]);
        let v = avx._mm256_cvtepi32_ps(a2._mm256_cvtepu8_epi32(cast::<_, __m128i>(bytes)));
        match brightness {
            // v * factor >= 0 (no NaN), so min then truncation is clamp(0, 255) as u8.
            Some(_) => avx._mm256_cvtepi32_ps(
                avx._mm256_cvttps_epi32(avx._mm256_min_ps(avx._mm256_mul_ps(v, factor), top)),
            ),
            None => v,
        }
    };
    let mut acc = avx._mm256_setzero_si256();
    for x in (0..done).step_by(8) {
        let (r, g, b) = (level(r, x), level(g, x), level(b, x));
        let gray = fma._mm256_fmadd_ps(b, wb, fma._mm256_fmadd_ps(g, wg, avx._mm256_mul_ps(r, wr)));
        // gray >= 0: truncation is the floor.
        acc = a2._mm256_add_epi32(acc, avx._mm256_cvttps_epi32(gray));
    }
    let lanes = cast::<_, [u32; 8]>(acc);
    (lanes.iter().sum(), done)
}
