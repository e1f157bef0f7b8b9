//! The number format of the activations, their derivative factors and the
//! back-propagated errors: float32, or bfloat16 (half the bytes through the
//! caches and half the activation memory). Weights, optimizer state and every
//! accumulation stay float32 in both (mixed precision, as deep-learning
//! frameworks do it): a kernel reads bfloat16 values, widens them exactly to
//! float32, computes in float32 and rounds only what it stores.

use crate::error::{invalid, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    Float32,
    Bfloat16,
}

impl Precision {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "float32" => Ok(Precision::Float32),
            "bfloat16" => Ok(Precision::Bfloat16),
            other => invalid!("unknown precision '{other}' (expected 'float32' or 'bfloat16')"),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Bfloat16 => "bfloat16",
        }
    }

    /// Bytes of one stored activation, derivative factor or error.
    pub fn bytes(&self) -> usize {
        match self {
            Precision::Float32 => 4,
            Precision::Bfloat16 => 2,
        }
    }
}

/// A bfloat16 number, kept as its bits: the upper half of a float32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Bf16(pub u16);

impl Bf16 {
    /// Rounds to the nearest bfloat16, ties to even, as AVX512-BF16's
    /// `vcvtneps2bf16` does (so both give the same bits): NaN stays a (quiet)
    /// NaN, and float32 subnormals (below 1.2e-38) become a zero of their sign.
    #[inline(always)]
    pub fn from_f32(v: f32) -> Self {
        let x = v.to_bits();
        let exponent = x & 0x7f80_0000;
        let bits = if exponent == 0 {
            (x >> 16) & 0x8000
        } else if v.is_nan() {
            (x >> 16) | 0x0040
        } else {
            // infinities pass unchanged: their low half is zero
            (x + 0x7fff + ((x >> 16) & 1)) >> 16
        };
        Bf16(bits as u16)
    }

    /// The exact float32 value.
    #[inline(always)]
    pub fn to_f32(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}

/// What the kernels store activations and errors as: `f32` or [`Bf16`].
pub trait Stored: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    const PRECISION: Precision;
    fn widen(self) -> f32;
    fn narrow(v: f32) -> Self;
    /// The row as float32 when it is float32 (kernels then work in place).
    fn as_f32_mut(row: &mut [Self]) -> Option<&mut [f32]>;
    /// The row as float32 when it is float32.
    fn as_f32(row: &[Self]) -> Option<&[f32]>;
}

impl Stored for f32 {
    const PRECISION: Precision = Precision::Float32;
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
    #[inline(always)]
    fn narrow(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn as_f32_mut(row: &mut [Self]) -> Option<&mut [f32]> {
        Some(row)
    }
    #[inline(always)]
    fn as_f32(row: &[Self]) -> Option<&[f32]> {
        Some(row)
    }
}

impl Stored for Bf16 {
    const PRECISION: Precision = Precision::Bfloat16;
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn narrow(v: f32) -> Self {
        Bf16::from_f32(v)
    }
    #[inline(always)]
    fn as_f32_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
    #[inline(always)]
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
}

/// `dst[k] = narrow(src[k])`.
pub fn narrow_row<T: Stored>(dst: &mut [T], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = T::narrow(s);
    }
}

/// `dst[k] = widen(src[k])`.
pub fn widen_row<T: Stored>(dst: &mut [f32], src: &[T]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s.widen();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Round to nearest even by exact arithmetic in f64, the definition.
    fn reference(v: f32) -> u16 {
        if v.is_nan() {
            return ((v.to_bits() >> 16) | 0x40) as u16;
        }
        if v.is_infinite() || v.abs() < f32::MIN_POSITIVE {
            return ((v.to_bits() >> 16) & if v.is_infinite() { 0xffff } else { 0x8000 }) as u16;
        }
        let lo = f32::from_bits(v.to_bits() & 0xffff_0000);
        let hi = f32::from_bits((v.to_bits() & 0xffff_0000) + 0x1_0000);
        // past the largest bfloat16 the next step up is 2^128 (rounding to it gives infinity)
        let hi64 = if hi.is_infinite() {
            hi.signum() as f64 * 2f64.powi(128)
        } else {
            hi as f64
        };
        let (dl, dh) = ((v as f64 - lo as f64).abs(), (hi64 - v as f64).abs());
        let pick = if dl < dh || (dl == dh && (lo.to_bits() >> 16) & 1 == 0) {
            lo
        } else {
            hi
        };
        (pick.to_bits() >> 16) as u16
    }

    #[test]
    fn rounding_is_to_nearest_even_and_widening_exact() {
        let mut rng = crate::rng::Rng::new(1);
        let special = [
            0.0f32,
            -0.0,
            1.0,
            -1.5,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-39,
            -1e-40,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x3f80_8000), // a tie, rounds to even (down)
            f32::from_bits(0x3f81_8000), // a tie, rounds up to even
            f32::from_bits(0x7f7f_ffff), // rounds to infinity
        ];
        let n = if cfg!(miri) { 200 } else { 200_000 };
        let randoms = (0..n).map(|_| f32::from_bits(rng.next_u64() as u32));
        for v in special.into_iter().chain(randoms) {
            let b = Bf16::from_f32(v);
            assert_eq!(b.0, reference(v), "{v:e} ({:#x})", v.to_bits());
            if !v.is_nan() {
                assert_eq!(
                    Bf16::from_f32(b.to_f32()),
                    b,
                    "a bfloat16 is its own rounding"
                );
            }
        }
    }

    #[test]
    fn precision_names_round_trip() {
        for p in [Precision::Float32, Precision::Bfloat16] {
            assert_eq!(Precision::parse(p.name()).unwrap(), p);
        }
        assert!(Precision::parse("float16").is_err());
    }
}
