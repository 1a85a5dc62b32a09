//! AVX2 kernels of the fixed-point u8 resampler ([`super::bilinear_u8`]), through pulp's safe
//! intrinsics. The multiply-add is `pmaddwd`: two 16-bit products of adjacent lanes summed into
//! one i32, so the u8 pixels of two taps are laid out side by side and one instruction applies
//! a pair of taps to 8 values. The integer sums are those of the portable loops (integer
//! addition is exact in any order), so the bytes are the same.

use std::arch::x86_64::{__m128i, __m256i};

use pulp::bytemuck::cast;
use pulp::x86::V3;

/// Horizontal filter of the rows of `src` starting at `row_starts` (`width` values each, a
/// multiple of 8 rows), into `out` (`start.len()` values per row, in the same order): 16 rows
/// at a time, then 8.
///
/// `start` are [`super::FixedTaps`]' windows and `pair_weights` their weights as
/// [`super::weight_pairs`], `P` pairs per output position.
/// Every window `start..start + 2P - 1` must lie inside the row.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn horizontal<const P: usize>(
    simd: V3,
    src: &[u8],
    width: usize,
    row_starts: &[usize],
    start: &[usize],
    pair_weights: &[i32],
    round: i32,
    precision: u32,
    out: &mut [u8],
) {
    let n_out = start.len();
    let taps = Taps {
        start,
        pair_weights,
        round: simd.avx._mm256_set1_epi32(round),
        shift: simd.sse2._mm_cvtsi32_si128(precision as i32),
    };
    let rows = |block: &[usize]| -> [&[u8]; 8] {
        let mut rows: [&[u8]; 8] = [&[]; 8];
        for (r, &s) in rows.iter_mut().zip(block) {
            *r = &src[s..s + width];
        }
        rows
    };
    let zero = simd.sse2._mm_setzero_si128();
    let mut pairs = vec![[zero; 2]; width];
    let sixteen = row_starts.len() - row_starts.len() % 16;
    for (block, out) in row_starts[..sixteen]
        .chunks_exact(16)
        .zip(out.chunks_exact_mut(16 * n_out))
    {
        fill_pairs(simd, rows(&block[..8]), &mut pairs, 0);
        fill_pairs(simd, rows(&block[8..]), &mut pairs, 1);
        filter_block::<P, 2>(simd, &pairs, &taps, out);
    }
    let mut pairs = vec![[zero; 1]; width];
    for (block, out) in row_starts[sixteen..]
        .chunks_exact(8)
        .zip(out[sixteen * n_out..].chunks_exact_mut(8 * n_out))
    {
        fill_pairs(simd, rows(block), &mut pairs, 0);
        filter_block::<P, 1>(simd, &pairs, &taps, out);
    }
}

/// One axis' taps for [`filter_block`].
struct Taps<'a> {
    start: &'a [usize],
    pair_weights: &'a [i32],
    round: __m256i,
    shift: __m128i,
}

/// Group `g` of `pairs[x]`: columns x and x + 1 of the 8 `rows`, interleaved row by row
/// (row 0 at x, at x + 1, row 1 ...); past the last column comes a zero column, only ever met
/// with a zero weight.
#[inline(always)]
fn fill_pairs<const G: usize>(simd: V3, rows: [&[u8]; 8], pairs: &mut [[__m128i; G]], g: usize) {
    const INTERLEAVE: [u8; 16] = [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15];
    let interleave = cast::<[u8; 16], __m128i>(INTERLEAVE);
    let pair = |two_cols: __m128i| simd.ssse3._mm_shuffle_epi8(two_cols, interleave);
    let width = pairs.len();
    let whole = width - width % 16;
    // 16 columns at a time, in registers (through memory, the loads of the odd pairs would
    // straddle two stores and stall).
    let mut prev = simd.sse2._mm_setzero_si128();
    for x0 in (0..whole).step_by(16) {
        let mut a = [simd.sse2._mm_setzero_si128(); 8];
        for (v, row) in a.iter_mut().zip(rows) {
            *v = load16(row, x0);
        }
        let t = transpose_8x16(simd, a);
        if x0 > 0 {
            pairs[x0 - 1][g] = pair(simd.ssse3._mm_alignr_epi8::<8>(t[0], prev));
        }
        let p = &mut pairs[x0..x0 + 16];
        for j in 0..8 {
            p[2 * j][g] = pair(t[j]);
        }
        for j in 0..7 {
            p[2 * j + 1][g] = pair(simd.ssse3._mm_alignr_epi8::<8>(t[j + 1], t[j]));
        }
        prev = t[7];
    }
    // From the last column done on: that column, the rest, the zero column, as bytes.
    let first = whole.saturating_sub(1);
    let mut cols = [0u8; 8 * 17];
    if whole > 0 {
        cols[..8].copy_from_slice(&cast::<__m128i, [u8; 16]>(prev)[8..]);
    }
    for x in whole..width {
        for (r, row) in rows.iter().enumerate() {
            cols[8 * (x - first) + r] = row[x];
        }
    }
    for (x, p) in pairs.iter_mut().enumerate().skip(first) {
        p[g] = pair(load16(&cols, 8 * (x - first)));
    }
}

/// Filters `8 * G` rows whose column pairs are in `pairs` into `out` (`8 * G` rows of
/// `taps.start.len()` values): each output position takes one broadcast of each weight pair for
/// all the rows.
#[inline(always)]
fn filter_block<const P: usize, const G: usize>(
    simd: V3,
    pairs: &[[__m128i; G]],
    taps: &Taps<'_>,
    out: &mut [u8],
) {
    let n_out = taps.start.len();
    let a2 = simd.avx2;
    for x0 in (0..n_out).step_by(8) {
        let mut acc = [[taps.round; 8]; G];
        for i in 0..8 {
            // The last group repeats the last position for the lanes past the end.
            let o = (x0 + i).min(n_out - 1);
            let s = taps.start[o];
            let wts = &taps.pair_weights[o * P..o * P + P];
            let window = &pairs[s..s + 2 * P - 1];
            let mut a = [taps.round; G];
            for (t, &w) in wts.iter().enumerate() {
                let w = simd.avx._mm256_set1_epi32(w);
                for (a, &px) in a.iter_mut().zip(&window[2 * t]) {
                    let px = a2._mm256_cvtepu8_epi16(px);
                    *a = a2._mm256_add_epi32(*a, a2._mm256_madd_epi16(px, w));
                }
            }
            for (acc, a) in acc.iter_mut().zip(a) {
                acc[i] = a2._mm256_sra_epi32(a, taps.shift);
            }
        }
        for (acc, out) in acc.into_iter().zip(out.chunks_exact_mut(8 * n_out)) {
            let rows8 = transpose_8x8_i32_to_u8(simd, acc);
            for (row, bytes) in out.chunks_exact_mut(n_out).zip(rows8) {
                let bytes = bytes.to_le_bytes();
                match row.get_mut(x0..x0 + 8) {
                    Some(dst) => dst.copy_from_slice(&bytes),
                    None => store_tail(&mut row[x0..], bytes),
                }
            }
        }
    }
}

/// Vertical filter of one output row: `out[x] = sum_t plane[first + t][x] * w_t`, rounded and
/// shifted, where the weights `w_t` come in `NP` pairs as in [`horizontal`] (`taps` of them, so
/// an odd last tap has a zero partner) and `plane` has `width` values per row.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn vertical_row<const NP: usize>(
    simd: V3,
    plane: &[u8],
    width: usize,
    first: usize,
    taps: usize,
    pair_weights: &[i32],
    round: i32,
    precision: u32,
    out: &mut [u8],
) {
    let row = |k: usize| &plane[(first + k) * width..(first + k + 1) * width];
    // The rows and weights of each pair, set up once for the whole row.
    let mut upper = [&plane[..0]; NP];
    let mut lower = [&plane[..0]; NP];
    let mut weights = [simd.avx._mm256_setzero_si256(); NP];
    for (j, &w) in pair_weights.iter().take(NP).enumerate() {
        upper[j] = row(2 * j);
        // An odd last tap pairs with its own row, with a zero weight.
        lower[j] = row((2 * j + 1).min(taps - 1));
        weights[j] = simd.avx._mm256_set1_epi32(w);
    }
    let shift = simd.sse2._mm_cvtsi32_si128(precision as i32);
    let round_v = simd.avx._mm256_set1_epi32(round);
    let a2 = simd.avx2;
    let zero = simd.avx._mm256_setzero_si256();
    let wide = width - width % 32;
    for x in (0..wide).step_by(32) {
        // Per 128-bit lane (pixels 0-15 | 16-31): interleave the two rows' bytes, widen to
        // 16 bits with zeros, multiply-add. acc[k] holds pixels 4k..4k+4 | 16+4k..16+4k+4,
        // an order the lane-wise packs below undo.
        let mut acc = [round_v; 4];
        for j in 0..NP {
            let (a, b) = (load32(upper[j], x), load32(lower[j], x));
            let (il, ih) = (a2._mm256_unpacklo_epi8(a, b), a2._mm256_unpackhi_epi8(a, b));
            let px = [
                a2._mm256_unpacklo_epi8(il, zero),
                a2._mm256_unpackhi_epi8(il, zero),
                a2._mm256_unpacklo_epi8(ih, zero),
                a2._mm256_unpackhi_epi8(ih, zero),
            ];
            for (acc, px) in acc.iter_mut().zip(px) {
                *acc = a2._mm256_add_epi32(*acc, a2._mm256_madd_epi16(px, weights[j]));
            }
        }
        let acc = acc.map(
            #[inline(always)]
            |a| a2._mm256_sra_epi32(a, shift),
        );
        // The packs saturate to 0..=255, torch's clamp.
        let bytes = a2._mm256_packus_epi16(
            a2._mm256_packus_epi32(acc[0], acc[1]),
            a2._mm256_packus_epi32(acc[2], acc[3]),
        );
        out[x..x + 32].copy_from_slice(&cast::<__m256i, [u8; 32]>(bytes));
    }
    let whole = width - width % 16;
    for x in (wide..whole).step_by(16) {
        let (mut lo, mut hi) = (round_v, round_v);
        for j in 0..NP {
            let (a, b) = (load16(upper[j], x), load16(lower[j], x));
            let l = simd
                .avx2
                ._mm256_cvtepu8_epi16(simd.sse2._mm_unpacklo_epi8(a, b));
            let h = simd
                .avx2
                ._mm256_cvtepu8_epi16(simd.sse2._mm_unpackhi_epi8(a, b));
            lo = simd
                .avx2
                ._mm256_add_epi32(lo, simd.avx2._mm256_madd_epi16(l, weights[j]));
            hi = simd
                .avx2
                ._mm256_add_epi32(hi, simd.avx2._mm256_madd_epi16(h, weights[j]));
        }
        let lo = simd.avx2._mm256_sra_epi32(lo, shift);
        let hi = simd.avx2._mm256_sra_epi32(hi, shift);
        // u16 lanes [lo 0-3, hi 0-3 | lo 4-7, hi 4-7] -> [lo 0-7, hi 0-7]; the packs saturate
        // to 0..=255, torch's clamp.
        let p = simd.avx2._mm256_packus_epi32(lo, hi);
        let p = simd.avx2._mm256_permute4x64_epi64::<0b11_01_10_00>(p);
        let bytes = simd.sse2._mm_packus_epi16(
            simd.avx._mm256_castsi256_si128(p),
            simd.avx2._mm256_extracti128_si256::<1>(p),
        );
        out[x..x + 16].copy_from_slice(&cast::<__m128i, [u8; 16]>(bytes));
    }
    for (x, o) in out.iter_mut().enumerate().take(width).skip(whole) {
        let mut acc = round;
        for (t, &w) in (0..taps).step_by(2).zip(pair_weights) {
            let (w0, w1) = (i32::from(w as i16), w >> 16);
            acc += i32::from(row(t)[x]) * w0;
            if t + 1 < taps {
                acc += i32::from(row(t + 1)[x]) * w1;
            }
        }
        *o = (acc >> precision).min(255) as u8;
    }
}

/// The last, partial group of a row. Out of line: inlined, the compiler merges it with the
/// fixed 8-byte store of every other group into one variable-length `memcpy` call.
#[cold]
#[inline(never)]
fn store_tail(dst: &mut [u8], bytes: [u8; 8]) {
    let n = dst.len().min(8);
    dst[..n].copy_from_slice(&bytes[..n]);
}

/// 32 bytes of `s` from `at` (in range by the callers' bounds).
#[inline(always)]
fn load32(s: &[u8], at: usize) -> __m256i {
    let bytes: [u8; 32] = s[at..at + 32].try_into().unwrap_or([0; 32]);
    cast(bytes)
}

/// 16 bytes of `s` from `at` (in range by the callers' bounds).
#[inline(always)]
fn load16(s: &[u8], at: usize) -> __m128i {
    let bytes: [u8; 16] = s[at..at + 16].try_into().unwrap_or([0; 16]);
    cast(bytes)
}

/// 8 rows of 16 bytes to 16 columns of 8 bytes: result `j` holds columns `2j` and `2j + 1`.
/// (Plain loops, no `array::from_fn`: its closures are not inlined, and an intrinsic called
/// outside the AVX2 copy is an out-of-line call.)
#[inline(always)]
fn transpose_8x16(simd: V3, a: [__m128i; 8]) -> [__m128i; 8] {
    let s = simd.sse2;
    // Rows 2i, 2i + 1 interleaved: columns 0-7 (lo) and 8-15 (hi).
    let mut lo = a;
    let mut hi = a;
    for i in 0..4 {
        lo[i] = s._mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
        hi[i] = s._mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
    }
    // c[4 * half + q]: columns 4q..4q+4 of rows 4half..4half+4.
    let mut c = a;
    for half in 0..2 {
        let (p, q) = (2 * half, 2 * half + 1);
        c[4 * half] = s._mm_unpacklo_epi16(lo[p], lo[q]);
        c[4 * half + 1] = s._mm_unpackhi_epi16(lo[p], lo[q]);
        c[4 * half + 2] = s._mm_unpacklo_epi16(hi[p], hi[q]);
        c[4 * half + 3] = s._mm_unpackhi_epi16(hi[p], hi[q]);
    }
    let mut out = a;
    for q in 0..4 {
        out[2 * q] = s._mm_unpacklo_epi32(c[q], c[4 + q]);
        out[2 * q + 1] = s._mm_unpackhi_epi32(c[q], c[4 + q]);
    }
    out
}

/// Eight vectors of 8 i32 (vector `i`: output position `i`, lane `r`: row `r`), saturated to
/// u8, transposed to 8 rows of 8 bytes (as little-endian u64: byte `i` is position `i`).
#[inline(always)]
fn transpose_8x8_i32_to_u8(simd: V3, acc: [__m256i; 8]) -> [u64; 8] {
    let a2 = simd.avx2;
    // Per 128-bit lane (rows 0-3 | rows 4-7): positions 0-3, then 4-7, 4 bytes each.
    let q0 = a2._mm256_packus_epi16(
        a2._mm256_packus_epi32(acc[0], acc[1]),
        a2._mm256_packus_epi32(acc[2], acc[3]),
    );
    let q1 = a2._mm256_packus_epi16(
        a2._mm256_packus_epi32(acc[4], acc[5]),
        a2._mm256_packus_epi32(acc[6], acc[7]),
    );
    // 4x4 byte transpose within each lane: byte 4i + j (position i, row j) to 4j + i.
    const T4: [u8; 32] = [
        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, //
        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
    ];
    let t4 = cast::<[u8; 32], __m256i>(T4);
    let t0 = a2._mm256_shuffle_epi8(q0, t4);
    let t1 = a2._mm256_shuffle_epi8(q1, t4);
    // Rows 0, 1 | 4, 5 and rows 2, 3 | 6, 7, each row's positions 0-3 then 4-7.
    let lo = cast::<__m256i, [u64; 4]>(a2._mm256_unpacklo_epi32(t0, t1));
    let hi = cast::<__m256i, [u64; 4]>(a2._mm256_unpackhi_epi32(t0, t1));
    [lo[0], lo[1], hi[0], hi[1], lo[2], lo[3], hi[2], hi[3]]
}
