//! RigL's gradient-guided regrowth (Evci et al. 2020) without a dense
//! gradient. With feature-major activations `a` (n_in rows of B samples) and
//! output errors `δ` (n_out rows of B), the gradient of a missing connection
//! (i, j) over the batch is ⟨a_i, δ_j⟩ / B: two contiguous rows the backward
//! pass already holds. Nothing here allocates an n_in × n_out array.
//!
//! - [`top_missing_exact`]: the k missing positions with the largest |g|,
//!   exactly, streaming over columns; the bound |g_ij| ≤ ‖a_i‖·‖δ_j‖ / B
//!   (Cauchy–Schwarz) skips rows and columns that cannot enter the top k
//!   (visited in descending norm order).
//! - [`draw_candidates`], [`accumulate_gradients`], [`top_candidates`]: the
//!   candidate mode, O(nnz + K) memory: K missing positions drawn uniformly,
//!   their gradients summed over some mini-batches, the top k kept.
//! - [`prune_and_grow`]: SET's prune (per sign, exact counts), then the
//!   chosen positions grow, at zero or at −η·g, with zero optimizer state.
//!
//! Ranking: larger |g| first; ties by a stateless hash of (seed, position),
//! so every thread count, and every process given the same seed, agrees.

use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::csc::SparseMatrix;
use crate::error::{invalid, Result};
use crate::layer::Layer;
use crate::rng::Rng;
use crate::topology::{closest_to_zero, draw_empty_positions, merge_grown, SetStep};

/// A missing position and its gradient, ranked for growing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    /// Linear position `j · n_in + i`.
    pub position: u64,
    pub grad: f32,
    tie: u64,
}

impl Scored {
    pub fn new(position: u64, grad: f32, seed: u64) -> Self {
        Scored {
            position,
            grad,
            tie: tie_key(seed, position),
        }
    }

    /// `Less` when `self` ranks before (grows first): larger |g|, then the
    /// smaller tie key, then the smaller position.
    fn rank(&self, other: &Self) -> Ordering {
        other
            .grad
            .abs()
            .total_cmp(&self.grad.abs())
            .then(self.tie.cmp(&other.tie))
            .then(self.position.cmp(&other.position))
    }
}

/// A stateless hash of a position (splitmix64's finaliser).
fn tie_key(seed: u64, position: u64) -> u64 {
    let mut z = seed ^ position.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Heap entry whose maximum is the worst kept entry.
struct Worst(Scored);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.rank(&other.0)
    }
}

/// The best `k` entries offered, in a bounded heap.
struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// |g| below which nothing can enter any more (0 while not full).
    fn threshold(&self) -> f32 {
        match self.heap.peek() {
            Some(w) if self.heap.len() == self.k => w.0.grad.abs(),
            _ => 0.0,
        }
    }

    fn offer(&mut self, s: Scored) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Worst(s));
        } else if s.rank(&self.heap.peek().expect("full").0) == Ordering::Less {
            self.heap.pop();
            self.heap.push(Worst(s));
        }
    }
}

/// The best `k` of several partial results, best first.
fn merge(parts: impl IntoIterator<Item = TopK>, k: usize) -> Vec<Scored> {
    let mut all: Vec<Scored> = parts
        .into_iter()
        .flat_map(|t| t.heap.into_iter().map(|w| w.0))
        .collect();
    all.sort_unstable_by(Scored::rank);
    all.truncate(k);
    all
}

/// A batch's feature-major activations `a` (n_in × `len`) and output
/// errors `delta` (n_out × `len`); a missing connection's gradient is
/// ⟨a_i, δ_j⟩ / `divisor`: `len` for per-sample errors, 1 for errors that
/// already carry the loss's 1/B (the training loop's).
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    pub a: &'a [f32],
    pub delta: &'a [f32],
    pub len: usize,
    pub divisor: f64,
}

impl<'a> Batch<'a> {
    /// Per-sample errors: gradients are means over the batch.
    pub fn per_sample(a: &'a [f32], delta: &'a [f32], len: usize) -> Self {
        Batch {
            a,
            delta,
            len,
            divisor: len as f64,
        }
    }

    fn check(&self, w: &SparseMatrix) -> Result<()> {
        let batch = self.len;
        if batch == 0 {
            invalid!("the batch must hold at least one sample");
        }
        if self.a.len() != w.n_in() * batch || self.delta.len() != w.n_out() * batch {
            invalid!(
                "activations must be {} x {batch} and errors {} x {batch} (feature-major), got {} and {} values",
                w.n_in(),
                w.n_out(),
                self.a.len(),
                self.delta.len()
            );
        }
        if self.divisor.is_nan() || self.divisor <= 0.0 {
            invalid!(
                "the gradients' divisor must be positive, got {}",
                self.divisor
            );
        }
        Ok(())
    }

    /// ⟨a_i, δ_j⟩ / divisor, summed in float64 in sample order (the same
    /// bits wherever it is computed).
    fn gradient(&self, i: usize, j: usize) -> f32 {
        let b = self.len;
        let (x, d) = (&self.a[i * b..(i + 1) * b], &self.delta[j * b..(j + 1) * b]);
        let s: f64 = x.iter().zip(d).map(|(&p, &q)| p as f64 * q as f64).sum();
        (s / self.divisor) as f32
    }
}

fn norms(m: &[f32], rows: usize, batch: usize) -> Vec<f64> {
    (0..rows)
        .map(|r| {
            m[r * batch..(r + 1) * batch]
                .iter()
                .map(|&v| v as f64 * v as f64)
                .sum::<f64>()
                .sqrt()
        })
        .collect()
}

/// Descending order of `norms` (ties by index).
fn by_norm(norms: &[f64]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..norms.len() as u32).collect();
    order.sort_unstable_by(|&x, &y| {
        norms[y as usize]
            .total_cmp(&norms[x as usize])
            .then(x.cmp(&y))
    });
    order
}

/// Columns per task of the exact search (fixed, so the work split does not
/// depend on the thread count; the result never does).
const EXACT_CHUNK: usize = 64;
/// Head-room on the Cauchy–Schwarz bound for rounding in the sums.
const BOUND_SLACK: f64 = 1.0 + 1e-4;

/// The `k` missing positions of `w` with the largest gradient
/// |⟨a_i, δ_j⟩| / divisor over `batch`, best first (fewer when fewer are
/// missing).
pub fn top_missing_exact(
    w: &SparseMatrix,
    batch: &Batch,
    k: usize,
    seed: u64,
) -> Result<Vec<Scored>> {
    batch.check(w)?;
    let (n_in, n_out) = (w.n_in(), w.n_out());
    let (a_norm, d_norm) = (
        norms(batch.a, n_in, batch.len),
        norms(batch.delta, n_out, batch.len),
    );
    let (rows, cols) = (by_norm(&a_norm), by_norm(&d_norm));
    let a_max = rows.first().map_or(0.0, |&i| a_norm[i as usize]);
    let parts: Vec<TopK> = cols
        .par_chunks(EXACT_CHUNK)
        .map(|chunk| {
            let mut top = TopK::new(k);
            let mut stamp = vec![u32::MAX; n_in];
            for &j in chunk {
                let j = j as usize;
                let col_bound = d_norm[j] / batch.divisor * BOUND_SLACK;
                let threshold = top.threshold() as f64;
                if top.heap.len() == k && a_max * col_bound < threshold {
                    break; // the chunk's later columns have smaller ‖δ_j‖
                }
                for &i in w.column(j).0 {
                    stamp[i as usize] = j as u32;
                }
                for &i in &rows {
                    let i = i as usize;
                    if top.heap.len() == k && a_norm[i] * col_bound < top.threshold() as f64 {
                        break;
                    }
                    if stamp[i] == j as u32 {
                        continue;
                    }
                    let position = j as u64 * n_in as u64 + i as u64;
                    top.offer(Scored::new(position, batch.gradient(i, j), seed));
                }
            }
            top
        })
        .collect();
    Ok(merge(parts, k))
}

/// `count` distinct missing positions of `w` drawn uniformly (all of them
/// when fewer are missing), sorted.
pub fn draw_candidates(w: &SparseMatrix, count: usize, rng: &mut Rng) -> Vec<u64> {
    let missing = w.capacity() - w.nnz() as u64;
    let count = (count as u64).min(missing) as usize;
    draw_empty_positions(w, &vec![false; w.nnz()], count, rng)
}

/// Adds each candidate's gradient over `batch` to `sums`.
pub fn accumulate_gradients(
    w: &SparseMatrix,
    candidates: &[u64],
    batch: &Batch,
    sums: &mut [f32],
) -> Result<()> {
    batch.check(w)?;
    if sums.len() != candidates.len() {
        invalid!("{} sums for {} candidates", sums.len(), candidates.len());
    }
    let n_in = w.n_in() as u64;
    if let Some(&p) = candidates.iter().find(|&&p| p >= w.capacity()) {
        invalid!(
            "candidate position {p} is outside the {} x {} layer",
            w.n_in(),
            w.n_out()
        );
    }
    sums.par_iter_mut()
        .zip(candidates.par_iter())
        .with_min_len(1024)
        .for_each(|(s, &p)| {
            *s += batch.gradient((p % n_in) as usize, (p / n_in) as usize);
        });
    Ok(())
}

/// The `k` candidates with the largest |sum|, best first.
pub fn top_candidates(candidates: &[u64], sums: &[f32], k: usize, seed: u64) -> Vec<Scored> {
    let mut top = TopK::new(k);
    for (&p, &g) in candidates.iter().zip(sums) {
        top.offer(Scored::new(p, g, seed));
    }
    merge([top], k)
}

/// How many connections a prune of `zeta` takes (SET's per-sign counts;
/// `protected` connections count in neither sign).
pub(crate) fn planned_prune(values: &[f32], zeta: f64, protected: Option<&[bool]>) -> usize {
    let p = closest_to_zero(values, zeta, None, protected);
    p.positive + p.negative
}

/// How a grown connection starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GrowInit {
    Zero,
    /// At −η·g: one SGD step of its gradient.
    Gradient(f32),
}

/// Prunes as SET does (per sign, closest to zero, `round(ζ·P)` and
/// `round(ζ·N)`; `protected` connections stay) and grows the best of
/// `ranked` (missing positions of the layer before the prune, best first) in
/// their place, so nnz is unchanged: when fewer positions are offered than
/// the prune would remove, fewer are pruned. Returns the counts and the grown
/// positions (sorted).
pub fn prune_and_grow(
    layer: &mut Layer,
    zeta: f64,
    ranked: &[Scored],
    init: GrowInit,
    protected: Option<&[bool]>,
) -> Result<(SetStep, Vec<u64>)> {
    if !(0.0..=1.0).contains(&zeta) {
        invalid!("zeta must be in [0, 1], got {zeta}");
    }
    let w = &layer.w;
    let planned = closest_to_zero(w.values(), zeta, None, protected);
    let total = (planned.positive + planned.negative).min(ranked.len());
    let removed = if total == planned.positive + planned.negative {
        planned
    } else {
        closest_to_zero(w.values(), zeta, Some(total), protected)
    };
    let step = SetStep {
        removed_positive: removed.positive,
        removed_negative: removed.negative,
    };
    let mut grown: Vec<Scored> = ranked[..step.regrown()].to_vec();
    grown.sort_unstable_by_key(|s| s.position);
    for pair in grown.windows(2) {
        if pair[0].position == pair[1].position {
            invalid!("position {} is offered twice", pair[0].position);
        }
    }
    let (n_in, capacity) = (w.n_in(), w.capacity());
    for s in &grown {
        let (i, j) = (
            (s.position % n_in as u64) as usize,
            (s.position / n_in as u64) as usize,
        );
        if s.position >= capacity || w.contains(i, j) {
            invalid!(
                "position {} is not a missing connection of the layer",
                s.position
            );
        }
    }
    let positions: Vec<u64> = grown.iter().map(|s| s.position).collect();
    let values: Vec<f32> = grown
        .iter()
        .map(|s| match init {
            GrowInit::Zero => 0.0,
            GrowInit::Gradient(lr) => -lr * s.grad,
        })
        .collect();
    merge_grown(layer, &removed.mask, &positions, &values);
    Ok((step, positions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::tests::layer;

    /// Activations and errors; some rows repeated, so gradients tie.
    fn batch_of(n_in: usize, n_out: usize, batch: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = Rng::new(seed);
        let mut a: Vec<f32> = (0..n_in * batch)
            .map(|_| rng.next_f64() as f32 - 0.3)
            .collect();
        let d: Vec<f32> = (0..n_out * batch)
            .map(|_| rng.next_f64() as f32 - 0.5)
            .collect();
        for b in 0..batch {
            a[3 * batch + b] = a[b]; // rows 0 and 3 equal: their gradients tie
        }
        (a, d)
    }

    /// Every missing position's gradient, ranked: the dense reference.
    fn brute_force(w: &SparseMatrix, a: &[f32], d: &[f32], batch: usize, seed: u64) -> Vec<Scored> {
        let mut all = Vec::new();
        for j in 0..w.n_out() {
            for i in 0..w.n_in() {
                if !w.contains(i, j) {
                    let p = (j * w.n_in() + i) as u64;
                    all.push(Scored::new(
                        p,
                        Batch::per_sample(a, d, batch).gradient(i, j),
                        seed,
                    ));
                }
            }
        }
        all.sort_unstable_by(Scored::rank);
        all
    }

    #[test]
    fn exact_search_equals_the_dense_reference_at_any_thread_count() {
        for &(n_in, n_out, nnz, batch, k) in &[
            (40usize, 300usize, 900u64, 7usize, 25usize),
            (9, 5, 40, 3, 10),
            (12, 10, 20, 1, 500),
        ] {
            let l = layer(n_in, n_out, nnz, 1);
            let (a, d) = batch_of(n_in, n_out, batch, 2);
            let want: Vec<Scored> = brute_force(&l.w, &a, &d, batch, 9)
                .into_iter()
                .take(k)
                .collect();
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool.install(|| {
                    top_missing_exact(&l.w, &Batch::per_sample(&a, &d, batch), k, 9).unwrap()
                });
                assert_eq!(got, want, "{n_in}x{n_out}, {threads} threads");
            }
        }
    }

    #[test]
    fn candidates_covering_every_missing_position_equal_the_exact_search() {
        let l = layer(30, 40, 300, 4);
        let mut rng = Rng::new(5);
        let candidates = draw_candidates(&l.w, 10_000, &mut rng);
        assert_eq!(
            candidates.len(),
            30 * 40 - 300,
            "all missing positions, once each"
        );
        assert!(candidates.windows(2).all(|p| p[0] < p[1]));
        let mut sums = vec![0.0; candidates.len()];
        let (a, d) = batch_of(30, 40, 6, 6);
        accumulate_gradients(&l.w, &candidates, &Batch::per_sample(&a, &d, 6), &mut sums).unwrap();
        let top = top_candidates(&candidates, &sums, 50, 3);
        assert_eq!(
            top,
            top_missing_exact(&l.w, &Batch::per_sample(&a, &d, 6), 50, 3).unwrap()
        );
        // a second batch adds its gradients
        let (a2, d2) = batch_of(30, 40, 6, 7);
        let mut twice = sums.clone();
        accumulate_gradients(
            &l.w,
            &candidates,
            &Batch::per_sample(&a2, &d2, 6),
            &mut twice,
        )
        .unwrap();
        let p = candidates[17];
        let (i, j) = ((p % 30) as usize, (p / 30) as usize);
        assert_eq!(
            twice[17],
            sums[17] + Batch::per_sample(&a2, &d2, 6).gradient(i, j)
        );
    }

    #[test]
    fn prune_and_grow_keeps_nnz_grows_the_best_and_resets_their_state() {
        let mut l = layer(50, 60, 600, 8);
        let (a, d) = batch_of(50, 60, 5, 9);
        let ranked = top_missing_exact(&l.w, &Batch::per_sample(&a, &d, 5), 1000, 1).unwrap();
        let (step, grown) =
            prune_and_grow(&mut l, 0.3, &ranked, GrowInit::Gradient(0.5), None).unwrap();
        assert_eq!(l.nnz(), 600);
        l.w.check_invariants().unwrap();
        assert_eq!(grown.len(), step.regrown());
        let mut best: Vec<u64> = ranked[..grown.len()].iter().map(|s| s.position).collect();
        best.sort_unstable();
        assert_eq!(grown, best);
        for s in &ranked[..grown.len()] {
            let (i, j) = ((s.position % 50) as usize, (s.position / 50) as usize);
            let k = l.w.position(i, j).expect("grown");
            assert_eq!(l.w.values()[k], -0.5 * s.grad);
            assert_eq!(l.momentum[k], 0.0);
        }
        // too few offered: fewer pruned, nnz still kept
        let mut l = layer(50, 60, 600, 8);
        let (step, grown) =
            prune_and_grow(&mut l, 0.3, &ranked[..7], GrowInit::Zero, None).unwrap();
        assert_eq!((step.regrown(), grown.len(), l.nnz()), (7, 7, 600));
    }

    #[test]
    fn bad_arguments_are_refused() {
        let mut l = layer(10, 8, 20, 1);
        let (a, d) = batch_of(10, 8, 4, 2);
        assert!(top_missing_exact(&l.w, &Batch::per_sample(&a[1..], &d, 4), 3, 0).is_err());
        assert!(top_missing_exact(&l.w, &Batch::per_sample(&a, &d, 0), 3, 0).is_err());
        assert!(
            accumulate_gradients(&l.w, &[0, 1], &Batch::per_sample(&a, &d, 4), &mut [0.0]).is_err()
        );
        assert!(
            accumulate_gradients(&l.w, &[80], &Batch::per_sample(&a, &d, 4), &mut [0.0]).is_err()
        );
        let existing = l.w.col_ptr()[0]; // the first stored connection's column 0 row
        let p = l.w.row_idx()[existing] as u64;
        let taken = [Scored::new(p, 1.0, 0)];
        if l.w.nnz() > 0 && l.w.col_ptr()[1] > 0 {
            assert!(prune_and_grow(&mut l, 0.5, &taken, GrowInit::Zero, None).is_err());
        }
        assert!(prune_and_grow(&mut l, 1.5, &[], GrowInit::Zero, None).is_err());
    }
}
