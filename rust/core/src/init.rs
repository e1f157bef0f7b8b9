//! Sparse initialization: Erdős–Rényi connection counts, uniformly random
//! positions without duplicates in O(nnz), and the value distributions.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use crate::csc::{SparseMatrix, MAX_INDEX};
use crate::error::{invalid, Result};
use crate::rng::Rng;

/// Distribution of new weights, at initialization and at SET regrowth.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightInit {
    /// U(±√(6/n_in)).
    HeUniform,
    /// U(±√(6/(n_in+n_out))).
    Xavier,
    /// N(0, std²); the papers use std = 0.1.
    Normal { std: f32 },
    /// U(±√(6/f_in)) with the fan-in a neuron really has in a sparse layer,
    /// `f_in = nnz/n_out` (at ε 20, 784-1000: 36 instead of 784).
    HeUniformSparse,
    /// U(±√(6/(f_in+f_out))) with the real fan-in and fan-out,
    /// `nnz/n_out` and `nnz/n_in`.
    XavierSparse,
}

/// Every init name, in the order the documentation lists them.
pub const INIT_NAMES: [&str; 5] = [
    "he_uniform",
    "xavier",
    "normal",
    "he_uniform_sparse",
    "xavier_sparse",
];

impl WeightInit {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "he_uniform" => WeightInit::HeUniform,
            "xavier" => WeightInit::Xavier,
            "normal" => WeightInit::Normal { std: 0.1 },
            "he_uniform_sparse" => WeightInit::HeUniformSparse,
            "xavier_sparse" => WeightInit::XavierSparse,
            other => {
                invalid!("init must be one of {INIT_NAMES:?}, got '{other}'")
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            WeightInit::HeUniform => "he_uniform",
            WeightInit::Xavier => "xavier",
            WeightInit::Normal { .. } => "normal",
            WeightInit::HeUniformSparse => "he_uniform_sparse",
            WeightInit::XavierSparse => "xavier_sparse",
        }
    }

    /// One weight for a layer of `n_in × n_out` with `nnz` connections (the
    /// sparse variants scale by the connections a neuron has on average).
    pub fn sample(&self, rng: &mut Rng, n_in: usize, n_out: usize, nnz: usize) -> f32 {
        let limit = match *self {
            WeightInit::Normal { std } => return (rng.normal() * std as f64) as f32,
            WeightInit::HeUniform => (6.0 / n_in as f64).sqrt(),
            WeightInit::Xavier => (6.0 / (n_in + n_out) as f64).sqrt(),
            WeightInit::HeUniformSparse => (6.0 / fan(nnz, n_out)).sqrt(),
            WeightInit::XavierSparse => (6.0 / (fan(nnz, n_out) + fan(nnz, n_in))).sqrt(),
        };
        rng.uniform(-limit, limit) as f32
    }
}

/// Mean connections per neuron on one side of a layer (at least 1).
fn fan(nnz: usize, neurons: usize) -> f64 {
    (nnz as f64 / neurons.max(1) as f64).max(1.0)
}

/// Erdős–Rényi density `min(1, ε(n_in+n_out)/(n_in·n_out))`.
pub fn er_density(epsilon: f64, n_in: usize, n_out: usize) -> f64 {
    (epsilon * (n_in + n_out) as f64 / (n_in as f64 * n_out as f64)).min(1.0)
}

/// Number of connections of an Erdős–Rényi layer: `round(d · n_in · n_out)`.
pub fn er_nnz(epsilon: f64, n_in: usize, n_out: usize) -> u64 {
    let cap = n_in as u64 * n_out as u64;
    let d = er_density(epsilon, n_in, n_out);
    ((d * cap as f64).round() as u64).min(cap)
}

/// Multiplicative hasher for u64 keys that are already well spread (positions).
#[derive(Default)]
pub(crate) struct PositionHasher(u64);

impl Hasher for PositionHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        self.0 ^= self.0 >> 32;
    }
}

pub(crate) type PositionSet = HashSet<u64, BuildHasherDefault<PositionHasher>>;

/// `count` distinct positions drawn uniformly from `0..total`, sorted.
///
/// Sparse case: Floyd's algorithm, O(count) time and memory. When more than
/// half of all positions are wanted, selection sampling over `0..total`,
/// which is O(total) = O(count) there.
pub fn sample_distinct_sorted(total: u64, count: u64, rng: &mut Rng) -> Vec<u64> {
    assert!(
        count <= total,
        "cannot draw {count} distinct positions out of {total}"
    );
    if count == total {
        return (0..total).collect();
    }
    if count * 2 > total {
        let mut out = Vec::with_capacity(count as usize);
        let mut needed = count;
        for t in 0..total {
            if rng.below(total - t) < needed {
                out.push(t);
                needed -= 1;
                if needed == 0 {
                    break;
                }
            }
        }
        return out;
    }
    let mut set = PositionSet::with_capacity_and_hasher(count as usize, Default::default());
    let mut out = Vec::with_capacity(count as usize);
    for j in (total - count)..total {
        let t = rng.below(j + 1);
        let pick = if set.contains(&t) { j } else { t };
        set.insert(pick);
        out.push(pick);
    }
    drop(set);
    out.sort_unstable();
    out
}

/// A random sparse matrix with exactly `nnz` connections at uniformly random
/// distinct positions and values from `init`.
pub fn random_sparse(
    n_in: usize,
    n_out: usize,
    nnz: u64,
    init: WeightInit,
    rng: &mut Rng,
) -> Result<SparseMatrix> {
    if n_in == 0 || n_out == 0 {
        invalid!("layer sizes must be at least 1, got {n_in} x {n_out}");
    }
    if n_in > MAX_INDEX || n_out > MAX_INDEX {
        invalid!("layer {n_in} x {n_out} exceeds the 32-bit index limit");
    }
    let cap = n_in as u64 * n_out as u64;
    if nnz > cap {
        invalid!(
            "{nnz} connections requested but a {n_in} x {n_out} layer has only {cap} positions"
        );
    }
    if nnz > MAX_INDEX as u64 {
        invalid!("{nnz} connections in one layer exceed the 32-bit limit");
    }
    let positions = sample_distinct_sorted(cap, nnz, rng);
    let values = (0..positions.len())
        .map(|_| init.sample(rng, n_in, n_out, positions.len()))
        .collect();
    Ok(SparseMatrix::from_sorted_linear(
        n_in, n_out, &positions, values,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn er_counts_follow_the_formula() {
        // 784-1000 at eps 20: 20 * 1784 = 35680 connections.
        assert_eq!(er_nnz(20.0, 784, 1000), 35_680);
        // Output layers whose formula exceeds 1 are dense.
        assert_eq!(er_nnz(20.0, 1000, 10), 10_000);
        assert_eq!(er_density(10.0, 400, 2), 1.0);
    }

    #[test]
    fn sampling_is_exact_distinct_and_sorted() {
        let mut rng = Rng::new(1);
        for &(total, count) in &[
            (1000u64, 10u64),
            (1000, 600),
            (1000, 1000),
            (7, 0),
            (1 << 40, 5000),
        ] {
            let s = sample_distinct_sorted(total, count, &mut rng);
            assert_eq!(s.len() as u64, count);
            assert!(s.windows(2).all(|w| w[0] < w[1]));
            assert!(s.iter().all(|&x| x < total));
        }
    }

    #[test]
    fn sampling_is_uniform_over_positions() {
        let mut rng = Rng::new(5);
        let mut hits = [0usize; 20];
        for _ in 0..20_000 {
            for p in sample_distinct_sorted(20, 3, &mut rng) {
                hits[p as usize] += 1;
            }
        }
        // each position expected 3000 times
        for h in hits {
            assert!((2700..3300).contains(&h), "{hits:?}");
        }
    }

    #[test]
    fn random_sparse_has_requested_count_and_valid_structure() {
        let mut rng = Rng::new(2);
        let m = random_sparse(
            500,
            400,
            er_nnz(10.0, 500, 400),
            WeightInit::Normal { std: 0.1 },
            &mut rng,
        )
        .unwrap();
        assert_eq!(m.nnz(), 9000);
        m.check_invariants().unwrap();
        let limit = (6.0f64 / 30.0).sqrt() as f32;
        let he = random_sparse(30, 20, 100, WeightInit::HeUniform, &mut rng).unwrap();
        assert!(he.values().iter().all(|v| v.abs() <= limit));
        assert!(random_sparse(3, 3, 10, WeightInit::HeUniform, &mut rng).is_err());
    }

    #[test]
    fn sparse_inits_scale_by_the_connections_a_neuron_has() {
        let mut rng = Rng::new(3);
        // 784 x 1000 at eps 20: 35,680 connections, 35.68 per output neuron
        let m = random_sparse(784, 1000, 35_680, WeightInit::HeUniformSparse, &mut rng).unwrap();
        let limit = (6.0f64 / 35.68).sqrt() as f32;
        let largest = m.values().iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(
            largest <= limit && largest > 0.99 * limit,
            "{largest} vs {limit}"
        );
        let x = random_sparse(784, 1000, 35_680, WeightInit::XavierSparse, &mut rng).unwrap();
        let limit = (6.0f64 / (35.68 + 35_680.0 / 784.0)).sqrt() as f32;
        assert!(x.values().iter().all(|v| v.abs() <= limit));
        for name in INIT_NAMES {
            assert_eq!(WeightInit::parse(name).unwrap().name(), name);
        }
        assert!(WeightInit::parse("he_normal").is_err());
    }
}
