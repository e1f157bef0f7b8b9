//! Run-time choice of the instruction set for the hot loops.
//!
//! Wheels are built for baseline x86-64; the inner loops are written so the
//! compiler vectorizes them, and each is compiled four times (AVX-512 with
//! AVX512-BF16, AVX-512, AVX2+FMA, baseline) by [`multiversion!`]. The first
//! call detects what the CPU offers. The loops never reassociate sums, and the
//! vector variants all fuse multiply-adds, so they compute bit-identical
//! results; the baseline variant rounds products separately (baseline x86-64
//! has no FMA, and emulating it costs 30×), so its float32 results differ in
//! the last bits (its bfloat16 dot products do not: a product of two bfloat16
//! values is exact in float32).
//!
//! The bfloat16 dot products use `vdpbf16ps` where the CPU has it. Its
//! arithmetic is written out in the portable path (value `2l+1`, then `2l`,
//! into lane `l`, each step one rounding), and detection checks that this CPU
//! computes exactly that before choosing it. One difference remains by the
//! instruction's definition: it flushes sums below 1.2e-38 to zero, which the
//! portable path does not.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// AVX-512 with the bfloat16 dot product (`vdpbf16ps`).
    Avx512Bf16,
    Avx512,
    Avx2,
    Baseline,
}

impl Level {
    pub fn name(&self) -> &'static str {
        match self {
            Level::Avx512Bf16 => "avx512-bf16",
            Level::Avx512 => "avx512",
            Level::Avx2 => "avx2",
            Level::Baseline => "baseline",
        }
    }
}

/// The instruction set the kernels use on this CPU (`SPARSE_MLP_NO_SIMD`
/// forces the baseline).
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(detect)
}

fn detect() -> Level {
    if std::env::var_os("SPARSE_MLP_NO_SIMD").is_some() {
        return Level::Baseline;
    }
    // SPARSE_MLP_SIMD caps the level (for benchmarks of the narrower paths)
    let cap = std::env::var("SPARSE_MLP_SIMD").unwrap_or_default();
    if cap == "baseline" {
        return Level::Baseline;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if cap == "avx2" {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            return if avx2 { Level::Avx2 } else { Level::Baseline };
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            let bf16 = cap != "avx512"
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512bf16")
                // SAFETY: the CPU reported avx512f and avx512bf16.
                && unsafe { bf16_dot_is_pairwise_fma() };
            return if bf16 {
                Level::Avx512Bf16
            } else {
                Level::Avx512
            };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// Whether `vdpbf16ps` computes, lane by lane, `fma(x[2l], y[2l], fma(x[2l+1],
/// y[2l+1], acc))` on this CPU (the portable bfloat16 dot product's
/// arithmetic), on pseudo-random normal values. Detection only picks the
/// instruction when it does.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
fn bf16_dot_is_pairwise_fma() -> bool {
    use std::arch::x86_64::*;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // normal bfloat16 values of both signs, magnitudes 2^-32..2^31
    let mut value = || (0x2f80 + (next() % 0x1f00) as u16) | ((next() as u16) & 0x8000);
    let widen = |v: u16| f32::from_bits((v as u32) << 16);
    for _ in 0..256 {
        let x: [u16; 32] = std::array::from_fn(|_| value());
        let y: [u16; 32] = std::array::from_fn(|_| value());
        let init: [f32; 16] = std::array::from_fn(|l| widen(x[l]) * 3.0);
        let mut got = [0.0f32; 16];
        // SAFETY: each load reads 64 bytes of a 64-byte array, the store writes
        // 64 bytes of one; the features are enabled on this function.
        unsafe {
            let xv: __m512bh = std::mem::transmute(_mm512_loadu_si512(x.as_ptr().cast()));
            let yv: __m512bh = std::mem::transmute(_mm512_loadu_si512(y.as_ptr().cast()));
            let r = _mm512_dpbf16_ps(_mm512_loadu_ps(init.as_ptr()), xv, yv);
            _mm512_storeu_ps(got.as_mut_ptr(), r);
        }
        for l in 0..16 {
            let odd = widen(x[2 * l + 1]).mul_add(widen(y[2 * l + 1]), init[l]);
            let want = widen(x[2 * l]).mul_add(widen(y[2 * l]), odd);
            if want.to_bits() != got[l].to_bits() {
                return false;
            }
        }
    }
    true
}

/// What a [`multiversion!`] body may rely on in the variant being compiled.
pub trait Isa {
    /// 32 vector registers of 16 floats (AVX-512).
    const WIDE: bool;
    /// Fused multiply-add in hardware.
    const FMA: bool;
    /// AVX512-BF16's `vdpbf16ps`, checked to compute the portable arithmetic.
    const BF16: bool = false;
}

#[cfg(target_arch = "x86_64")]
pub struct Avx512Bf16Isa;
#[cfg(target_arch = "x86_64")]
pub struct Avx512Isa;
#[cfg(target_arch = "x86_64")]
pub struct Avx2Isa;
pub struct BaselineIsa;

#[cfg(target_arch = "x86_64")]
impl Isa for Avx512Bf16Isa {
    const WIDE: bool = true;
    const FMA: bool = true;
    const BF16: bool = true;
}
#[cfg(target_arch = "x86_64")]
impl Isa for Avx512Isa {
    const WIDE: bool = true;
    const FMA: bool = true;
}
#[cfg(target_arch = "x86_64")]
impl Isa for Avx2Isa {
    const WIDE: bool = false;
    const FMA: bool = true;
}
impl Isa for BaselineIsa {
    const WIDE: bool = false;
    const FMA: bool = false;
}

/// `a · b + c`, fused (one rounding) where the variant has FMA.
#[inline(always)]
pub(crate) fn madd<I: Isa>(a: f32, b: f32, c: f32) -> f32 {
    if I::FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Defines `pub fn $name(args)` that forwards to a body compiled once per
/// [`Level`] and picks the variant the CPU supports. The body is generic over
/// `I: Isa`, the variant's [`Isa`].
macro_rules! multiversion {
    ($(#[$meta:meta])* pub fn $name:ident $(<$g:ident : $bound:path>)? ($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        pub fn $name $(<$g: $bound>)? ($($arg: $ty),*) {
            // `I` names the variant; bodies that only need the compiler's
            // vectorization for the variant's features do not mention it
            #[inline(always)]
            #[allow(clippy::extra_unused_type_parameters)]
            fn generic<I: $crate::simd::Isa $(, $g: $bound)?>($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx2,fma,avx512bf16")]
            fn avx512bf16 $(<$g: $bound>)? ($($arg: $ty),*) { generic::<$crate::simd::Avx512Bf16Isa $(, $g)?>($($arg),*) }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            fn avx512 $(<$g: $bound>)? ($($arg: $ty),*) { generic::<$crate::simd::Avx512Isa $(, $g)?>($($arg),*) }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2 $(<$g: $bound>)? ($($arg: $ty),*) { generic::<$crate::simd::Avx2Isa $(, $g)?>($($arg),*) }

            match $crate::simd::level() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `level()` returned Avx512Bf16 only after the CPU reported
                // avx512f, avx512vl, avx512bw, avx2, fma and avx512bf16.
                $crate::simd::Level::Avx512Bf16 => unsafe { avx512bf16 $(::<$g>)? ($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `level()` returned Avx512 only after the CPU reported
                // avx512f, avx512vl, avx2 and fma.
                $crate::simd::Level::Avx512 => unsafe { avx512 $(::<$g>)? ($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `level()` returned Avx2 only after the CPU reported avx2 and fma.
                $crate::simd::Level::Avx2 => unsafe { avx2 $(::<$g>)? ($($arg),*) },
                _ => generic::<$crate::simd::BaselineIsa $(, $g)?>($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    /// CI runs the kernel tests under Miri twice, as compiled (baseline) and
    /// with `-C target-feature=+avx2,+fma`; this checks that the second run
    /// really takes the AVX2 variants (Miri has no AVX-512).
    #[test]
    fn under_miri_the_level_is_what_the_target_features_allow() {
        if cfg!(miri) && std::env::var_os("SPARSE_MLP_NO_SIMD").is_none() {
            let avx2 = cfg!(all(target_feature = "avx2", target_feature = "fma"));
            assert_eq!(level(), if avx2 { Level::Avx2 } else { Level::Baseline });
        }
    }
}
