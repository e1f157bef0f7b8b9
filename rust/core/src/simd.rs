//! Run-time choice of the instruction set for the hot loops.
//!
//! Wheels are built for baseline x86-64; the inner loops are written so the
//! compiler vectorizes them, and each is compiled three times (AVX-512,
//! AVX2+FMA, baseline) by [`multiversion!`]. The first call detects what the
//! CPU offers. The loops never reassociate sums, and the AVX-512 and AVX2
//! variants both fuse multiply-adds, so they compute bit-identical results;
//! the baseline variant rounds products separately (baseline x86-64 has no
//! FMA, and emulating it costs 30×), so its results differ in the last bits.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Avx512,
    Avx2,
    Baseline,
}

impl Level {
    pub fn name(&self) -> &'static str {
        match self {
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
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// What a [`multiversion!`] body may rely on in the variant being compiled.
pub trait Isa {
    /// 32 vector registers of 16 floats (AVX-512).
    const WIDE: bool;
    /// Fused multiply-add in hardware.
    const FMA: bool;
}

#[cfg(target_arch = "x86_64")]
pub struct Avx512Isa;
#[cfg(target_arch = "x86_64")]
pub struct Avx2Isa;
pub struct BaselineIsa;

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
            #[inline(always)]
            fn generic<I: $crate::simd::Isa $(, $g: $bound)?>($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            fn avx512 $(<$g: $bound>)? ($($arg: $ty),*) { generic::<$crate::simd::Avx512Isa $(, $g)?>($($arg),*) }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2 $(<$g: $bound>)? ($($arg: $ty),*) { generic::<$crate::simd::Avx2Isa $(, $g)?>($($arg),*) }

            match $crate::simd::level() {
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
