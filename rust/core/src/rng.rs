//! Random numbers: xoshiro256++ seeded through SplitMix64.
//!
//! The core owns its generator so that the state is a plain `[u64; 4]` that a
//! checkpoint can store, and so that independent streams can be derived from
//! keys (seed, step, layer, row): dropout masks are then the same whichever
//! thread draws them.

/// One SplitMix64 step: a good 64-bit mixing function for seeding.
#[inline]
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self::from_keys(&[seed])
    }

    /// A generator whose stream depends on every key and their order.
    pub fn from_keys(keys: &[u64]) -> Self {
        let mut h = 0x6A09_E667_F3BC_C909u64;
        for &k in keys {
            h ^= k;
            h = splitmix64(&mut h);
        }
        let mut s = [0u64; 4];
        for x in &mut s {
            *x = splitmix64(&mut h);
        }
        if s == [0; 4] {
            s[0] = 1; // the all-zero state is the one fixed point of xoshiro
        }
        Rng { s }
    }

    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// Restores a state saved by [`Rng::state`]; `None` for the invalid all-zero state.
    pub fn from_state(s: [u64; 4]) -> Option<Self> {
        (s != [0; 4]).then_some(Rng { s })
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n), unbiased (Lemire's multiply-and-reject). `n > 0`.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = (self.next_u64() as u128) * (n as u128);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = (self.next_u64() as u128) * (n as u128);
            }
        }
        (m >> 64) as u64
    }

    /// Standard normal deviate (Marsaglia's polar method, one value per call).
    pub fn normal(&mut self) -> f64 {
        loop {
            let u = 2.0 * self.next_f64() - 1.0;
            let v = 2.0 * self.next_f64() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return u * (-2.0 * s.ln() / s).sqrt();
            }
        }
    }

    /// Uniform in [lo, hi).
    #[inline]
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_key_dependent() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::from_keys(&[1, 2, 3]).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::from_keys(&[1, 2, 3]).next_u64(),
            Rng::from_keys(&[1, 3, 2]).next_u64()
        );
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut rng = Rng::new(7);
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[rng.below(7) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut rng = Rng::new(3);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
    }

    #[test]
    fn state_round_trips() {
        let mut a = Rng::new(11);
        a.next_u64();
        let mut b = Rng::from_state(a.state()).unwrap();
        assert_eq!(a.next_u64(), b.next_u64());
        assert!(Rng::from_state([0; 4]).is_none());
    }
}
