//! Runtime CPU dispatch for the hot pixel loops.
//!
//! The crate is built for baseline x86-64 (SSE2), where the compiler vectorises f32 loops 4
//! wide and cannot use FMA, `roundps` or gathers. [`dispatch`] runs a closure compiled for
//! AVX2 + FMA (x86-64-v3: Intel since 2013, AMD since 2015) when the CPU has them, and as it
//! is otherwise. The closure and what it calls with `#[inline(always)]` are inlined into the
//! AVX2 copy, so the same plain loops vectorise 8 wide there. Rust never contracts `a * b + c`
//! into an FMA on its own, so both copies compute the same bits.

/// How the running copy computes a fused multiply-add: with the FMA instruction in the
/// AVX2 copy, emulated exactly with f64 operations in the baseline one (where `mul_add` is
/// a slow library call). Both give the correctly rounded `a * b + c`.
/// In the AVX2 copy it also carries pulp's proof of the CPU features, which makes pulp's
/// AVX2 intrinsic wrappers safe to call (the explicit kernels in the `avx2` modules of
/// `functional::resize`, `functional::rotate` and `fast`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fma(Option<Avx2>);

#[cfg(target_arch = "x86_64")]
pub(crate) type Avx2 = pulp::x86::V3;
/// No AVX2 on other architectures.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Avx2 {}

impl Fma {
    /// The baseline copy's emulation, for code outside [`dispatch`].
    pub(crate) const EMULATED: Fma = Fma(None);

    /// Whether this is the AVX2 copy, with the FMA instruction.
    #[inline(always)]
    pub(crate) fn native(self) -> bool {
        self.0.is_some()
    }

    /// The AVX2 intrinsics, in the AVX2 copy.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn avx2(self) -> Option<Avx2> {
        self.0
    }

    #[inline(always)]
    pub(crate) fn mul_add(self, a: f32, b: f32, c: f32) -> f32 {
        if self.native() {
            a.mul_add(b, c)
        } else {
            crate::fast::fma_f32(a, b, c)
        }
    }
}

/// Runs `f`, compiled for AVX2 + FMA when this CPU has both. Mark the closure
/// `#[inline(always)]`: otherwise it stays a baseline function called from the AVX2 copy.
#[inline(always)]
pub(crate) fn dispatch<R>(f: impl FnOnce(Fma) -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if !BASELINE_ONLY.load(std::sync::atomic::Ordering::Relaxed)
        && let Some(simd) = pulp::x86::V3::try_new()
    {
        // SAFETY: `v3` only requires x86-64-v3 features, all of which `V3::try_new` detected.
        #[allow(unsafe_code)]
        return unsafe { v3(simd, f) };
    }
    f(Fma(None))
}

/// Set by tests to run the baseline copy on a CPU that has AVX2, and compare.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
static BASELINE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes [`dispatch`] run the baseline copy (`true`) or pick by CPU again (`false`).
#[cfg(test)]
pub(crate) fn force_baseline(on: bool) {
    BASELINE_ONLY.store(on, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,lzcnt,popcnt,sse3,ssse3,sse4.1,sse4.2")]
fn v3<R>(simd: Avx2, f: impl FnOnce(Fma) -> R) -> R {
    f(Fma(Some(simd)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dispatch_returns_the_closure_result() {
        let v: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
        let plain: f32 = v.iter().map(|x| x * 1.5 + 1.0).sum();
        let fast = super::dispatch(|_| v.iter().map(|x| x * 1.5 + 1.0).sum::<f32>());
        assert_eq!(plain.to_bits(), fast.to_bits());
    }

    #[test]
    fn both_fma_copies_round_once() {
        let cases = [
            (3.0f32, 1.0 / 3.0, -1.0f32),
            (1e8, 1.000_000_1, -1e8),
            (0.1, 0.2, 0.3),
        ];
        for (a, b, c) in cases {
            let expected = a.mul_add(b, c).to_bits();
            assert_eq!(
                super::dispatch(|fma| fma.mul_add(a, b, c)).to_bits(),
                expected
            );
            assert_eq!(super::Fma::EMULATED.mul_add(a, b, c).to_bits(), expected);
        }
    }
}
