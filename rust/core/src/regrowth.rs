//! RigL inside training. An update at step T opens a [`Window`] M
//! mini-batches before it; while open, every backward pass hands the window
//! each chosen layer's activations and output errors, and the window keeps
//! what the update needs about the missing connections' gradients: the
//! candidates' gradient sums (candidate mode, O(K) memory), or the batches'
//! activations and errors themselves (exact mode, for small layers). The
//! update then prunes as SET does and grows the best missing positions
//! ([`crate::rigl`]).
//!
//! Candidates and tie-breaks come from stateless keys (the run's seed, the
//! update's step, the layer), so every thread count, and every process that
//! opens the same window, agrees.

use std::borrow::Cow;

use crate::csc::SparseMatrix;
use crate::error::{invalid, Result};
use crate::layer::Layer;
use crate::precision::Stored;
use crate::rigl::{self, Batch, Scored};
use crate::rng::Rng;

/// How an update finds the missing connections' gradients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Search {
    /// Uniformly drawn missing positions, this many per connection to grow.
    Candidates(f64),
    /// Every missing position.
    Exact,
}

/// What a window keeps for one layer.
#[derive(Clone, Debug, PartialEq)]
pub enum Gathered {
    /// Candidate positions (sorted) and their gradients summed over the
    /// window's batches.
    Candidates { positions: Vec<u64>, sums: Vec<f32> },
    /// The window's batches side by side: activations n_in × `len`, errors
    /// n_out × `len`, feature-major.
    Exact {
        a: Vec<f32>,
        delta: Vec<f32>,
        len: usize,
    },
}

/// One layer's part of a window.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWindow {
    pub layer: usize,
    /// The layer's (n_in, n_out) when the window opened; a layer whose shape
    /// changes before the update (Importance Pruning) is left out of it.
    pub shape: (usize, usize),
    pub gathered: Gathered,
}

/// An open update window.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// The step of the update the window prepares and the seed: the keys of
    /// its draws and ties.
    pub step: u64,
    pub seed: u64,
    /// Mini-batches gathered so far.
    pub batches: u64,
    pub layers: Vec<LayerWindow>,
}

/// What an update did to one layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Update {
    pub layer: usize,
    pub removed_positive: usize,
    pub removed_negative: usize,
    /// The grown positions (`j·n_in + i`, sorted).
    pub grown: Vec<u64>,
    /// Candidates offered (exact mode: the missing positions).
    pub candidates: u64,
}

/// The keys of a layer's draws and ties in an update.
pub fn keys(seed: u64, step: u64, layer: usize) -> u64 {
    Rng::from_keys(&[seed, step, layer as u64, 0x8161]).next_u64()
}

/// Candidates to draw for a layer of `nnz` connections: `per_grown` per
/// connection a prune of `zeta` would take (from the topology alone, so
/// every process with the layer's topology draws the same ones).
fn candidate_count(nnz: usize, zeta: f64, per_grown: f64) -> usize {
    (per_grown * (zeta * nnz as f64).round()).ceil() as usize
}

impl Window {
    /// Opens the window of the update at `step` on `which` layers: their
    /// candidates are drawn now, from the layers as they are (so a
    /// connection the update prunes is not regrown by it).
    pub fn open(
        layers: &[Layer],
        which: &[usize],
        zeta: f64,
        search: Search,
        seed: u64,
        step: u64,
    ) -> Result<Window> {
        if !(0.0..=1.0).contains(&zeta) {
            invalid!("zeta must be in [0, 1], got {zeta}");
        }
        let mut seen = vec![false; layers.len()];
        let mut out = Vec::with_capacity(which.len());
        for &l in which {
            let Some(layer) = layers.get(l) else {
                invalid!(
                    "layer index {l} out of range for a network of {} layers",
                    layers.len()
                );
            };
            if std::mem::replace(&mut seen[l], true) {
                invalid!("layer {l} is listed twice");
            }
            let w = &layer.w;
            let gathered = match search {
                Search::Candidates(per_grown) => {
                    if !(per_grown.is_finite() && per_grown > 0.0) {
                        invalid!(
                            "candidates per grown connection must be positive, got {per_grown}"
                        );
                    }
                    let count = candidate_count(w.nnz(), zeta, per_grown);
                    let mut rng = Rng::new(keys(seed, step, l));
                    let positions = rigl::draw_candidates(w, count, &mut rng);
                    let sums = vec![0.0; positions.len()];
                    Gathered::Candidates { positions, sums }
                }
                Search::Exact => Gathered::Exact {
                    a: Vec::new(),
                    delta: Vec::new(),
                    len: 0,
                },
            };
            out.push(LayerWindow {
                layer: l,
                shape: (w.n_in(), w.n_out()),
                gathered,
            });
        }
        Ok(Window {
            step,
            seed,
            batches: 0,
            layers: out,
        })
    }

    /// Takes layer `l`'s part of a backward pass: its input activations `a`
    /// (n_in × b) and output errors `delta` (n_out × b), the errors already
    /// divided by the batch (so the sums are sums of mini-batch gradients).
    pub fn gather<T: Stored>(
        &mut self,
        l: usize,
        w: &SparseMatrix,
        a: &[T],
        delta: &[T],
        b: usize,
    ) {
        let Some(part) = self.layers.iter_mut().find(|p| p.layer == l) else {
            return;
        };
        if part.shape != (w.n_in(), w.n_out()) {
            return;
        }
        let (a, delta) = (wide(a), wide(delta));
        let batch = Batch {
            a: &a,
            delta: &delta,
            len: b,
            divisor: 1.0,
        };
        match &mut part.gathered {
            Gathered::Candidates { positions, sums } => {
                // (the shapes were checked above; the positions when drawn)
                let _ = rigl::accumulate_gradients(w, positions, &batch, sums);
            }
            Gathered::Exact { a, delta, len } => {
                *a = side_by_side(a, *len, batch.a, b);
                *delta = side_by_side(delta, *len, batch.delta, b);
                *len += b;
            }
        }
    }

    /// The candidates' sums of every layer, one after the other, set back
    /// to zero with the batch count (a WASAP worker sends them with its
    /// gradient). Empty for the exact search.
    pub fn take_sums(&mut self) -> Vec<f32> {
        self.batches = 0;
        let mut out = Vec::new();
        for part in &mut self.layers {
            if let Gathered::Candidates { sums, .. } = &mut part.gathered {
                out.extend_from_slice(sums);
                sums.fill(0.0);
            }
        }
        out
    }

    /// Adds sums taken by [`Self::take_sums`] from a window opened with the
    /// same keys on the same topology, gathered over `batches` mini-batches.
    pub fn add_sums(&mut self, given: &[f32], batches: u64) -> Result<()> {
        let mut expected = 0;
        for part in &self.layers {
            match &part.gathered {
                Gathered::Candidates { sums, .. } => expected += sums.len(),
                Gathered::Exact { .. } => invalid!("the exact search gathers batches, not sums"),
            }
        }
        if given.len() != expected {
            invalid!(
                "{} sums given for a window of {expected} candidates",
                given.len()
            );
        }
        let mut rest = given;
        for part in &mut self.layers {
            if let Gathered::Candidates { sums, .. } = &mut part.gathered {
                let (mine, after) = rest.split_at(sums.len());
                for (s, g) in sums.iter_mut().zip(mine) {
                    *s += g;
                }
                rest = after;
            }
        }
        self.batches += batches;
        Ok(())
    }

    /// The update the window prepared, on layer `part.layer`: prune as SET
    /// does (`protected` connections stay) and grow the missing positions
    /// with the largest mean gradient over the window's batches.
    pub(crate) fn update_layer(
        &self,
        part: &LayerWindow,
        layer: &mut Layer,
        zeta: f64,
        init: rigl::GrowInit,
        protected: Option<&[bool]>,
    ) -> Result<Update> {
        let mut done = Update {
            layer: part.layer,
            ..Update::default()
        };
        let w = &layer.w;
        if part.shape != (w.n_in(), w.n_out()) || self.batches == 0 {
            return Ok(done);
        }
        let k = rigl::planned_prune(w.values(), zeta, protected);
        let tie = keys(self.seed, self.step, part.layer);
        let mean = self.batches as f64;
        let ranked: Vec<Scored> = match &part.gathered {
            Gathered::Candidates { positions, sums } => {
                let n_in = w.n_in() as u64;
                let (kept, means): (Vec<u64>, Vec<f32>) = positions
                    .iter()
                    .zip(sums)
                    .filter(|(&p, _)| !w.contains((p % n_in) as usize, (p / n_in) as usize))
                    .map(|(&p, &s)| (p, (s as f64 / mean) as f32))
                    .unzip();
                done.candidates = kept.len() as u64;
                rigl::top_candidates(&kept, &means, k, tie)
            }
            Gathered::Exact { a, delta, len } => {
                done.candidates = w.capacity() - w.nnz() as u64;
                let batch = Batch {
                    a,
                    delta,
                    len: *len,
                    divisor: mean,
                };
                rigl::top_missing_exact(w, &batch, k, tie)?
            }
        };
        let (step, grown) = rigl::prune_and_grow(layer, zeta, &ranked, init, protected)?;
        done.removed_positive = step.removed_positive;
        done.removed_negative = step.removed_negative;
        done.grown = grown;
        Ok(done)
    }
}

/// The row-major float32 view of stored values (a copy for bfloat16).
fn wide<T: Stored>(v: &[T]) -> Cow<'_, [f32]> {
    match T::as_f32(v) {
        Some(v) => Cow::Borrowed(v),
        None => Cow::Owned(v.iter().map(|x| x.widen()).collect()),
    }
}

/// Rows of `old` (each `len` long) followed by the rows of `new` (each `b`).
fn side_by_side(old: &[f32], len: usize, new: &[f32], b: usize) -> Vec<f32> {
    let rows = new.len() / b;
    let mut out = Vec::with_capacity(rows * (len + b));
    for r in 0..rows {
        out.extend_from_slice(&old[r * len..(r + 1) * len]);
        out.extend_from_slice(&new[r * b..(r + 1) * b]);
    }
    out
}

/// Marks, by storage position, the connections of `w` at `positions`
/// (sorted linear positions; absent ones are ignored), or'd into `mask`.
pub fn mark_positions(w: &SparseMatrix, positions: &[u64], mask: &mut [bool]) {
    let n_in = w.n_in() as u64;
    for &p in positions {
        if p < w.capacity() {
            if let Some(k) = w.position((p % n_in) as usize, (p / n_in) as usize) {
                mask[k] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::tests::{cfg, data, spec};
    use crate::network::{Network, Targets};
    use crate::precision::Precision;
    use crate::rigl::GrowInit;
    use crate::topology::merge_grown;

    const ALL: Search = Search::Candidates(1e9);

    fn positions(w: &SparseMatrix) -> Vec<u64> {
        let n_in = w.n_in() as u64;
        (0..w.n_out())
            .flat_map(|j| {
                w.column(j)
                    .0
                    .iter()
                    .map(move |&i| j as u64 * n_in + i as u64)
            })
            .collect()
    }

    #[test]
    fn the_sums_are_the_gradients_the_missing_connections_would_have_at_zero() {
        let (x, y) = data(48, 12, 3, 1);
        let mut net = Network::new(spec(3, 0.0)).unwrap();
        let mut reference = net.clone();
        net.rigl_open(&[0, 1], 0.3, ALL, 7, None).unwrap();
        let win = net.rigl_window().unwrap().clone();
        // the same connections, present at zero: the forward pass is unchanged
        for part in &win.layers {
            let Gathered::Candidates { positions, .. } = &part.gathered else {
                panic!("candidate mode")
            };
            let layer = reference.layer_mut(part.layer).unwrap();
            let none = vec![false; layer.w.nnz()];
            merge_grown(layer, &none, positions, &vec![0.0; positions.len()]);
        }
        let mut want = vec![vec![0.0f64; 0]; 2];
        for (t, chunk) in [(0..16), (16..48)].into_iter().enumerate() {
            let (xs, ys) = (&x[chunk.start * 12..chunk.end * 12], &y[chunk.clone()]);
            net.compute_gradients(xs, &Targets::classes(ys), false)
                .unwrap();
            reference
                .compute_gradients(xs, &Targets::classes(ys), false)
                .unwrap();
            for (p, part) in win.layers.iter().enumerate() {
                let Gathered::Candidates { positions, .. } = &part.gathered else {
                    unreachable!()
                };
                let layer = &reference.layers()[part.layer];
                let n_in = layer.w.n_in() as u64;
                if t == 0 {
                    want[p] = vec![0.0; positions.len()];
                }
                for (c, &q) in positions.iter().enumerate() {
                    let k = layer
                        .w
                        .position((q % n_in) as usize, (q / n_in) as usize)
                        .unwrap();
                    want[p][c] += layer.grad()[k] as f64;
                }
            }
        }
        let got = net.rigl_window().unwrap();
        assert_eq!(got.batches, 2);
        for (p, part) in got.layers.iter().enumerate() {
            let Gathered::Candidates { positions, sums } = &part.gathered else {
                unreachable!()
            };
            let w = &net.layers()[part.layer].w;
            assert_eq!(positions.len() as u64, w.capacity() - w.nnz() as u64);
            for (s, r) in sums.iter().zip(&want[p]) {
                assert!(
                    (*s as f64 - r).abs() <= 1e-5 * (1.0 + r.abs()),
                    "{s} vs {r}"
                );
            }
        }
    }

    /// Trains `net` for an epoch with a window open on layers 0 and 1, then
    /// updates; returns what each layer did.
    fn window_epoch(net: &mut Network, search: Search, keep: &[Vec<u64>]) -> Vec<Update> {
        let (x, y) = data(64, 12, 3, 2);
        net.rigl_open(&[0, 1], 0.3, search, 11, None).unwrap();
        net.train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
            .unwrap();
        assert_eq!(net.rigl_window().unwrap().batches, 4);
        net.rigl_update(0.3, GrowInit::Gradient(0.05), keep)
            .unwrap()
    }

    #[test]
    fn exact_equals_candidates_covering_all_at_any_thread_count_and_keeps_nnz() {
        let base = Network::new(spec(5, 0.2)).unwrap();
        let nnz: Vec<usize> = base.layers().iter().map(|l| l.nnz()).collect();
        let mut results = Vec::new();
        for (search, threads) in [(Search::Exact, 1), (Search::Exact, 3), (ALL, 2)] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut net = base.clone();
            let done = pool.install(|| window_epoch(&mut net, search, &[]));
            for (u, l) in done.iter().zip(net.layers()) {
                l.w.check_invariants().unwrap();
                assert!(!u.grown.is_empty());
                assert_eq!(u.grown.len(), u.removed_positive + u.removed_negative);
                let now = positions(&l.w);
                assert!(u.grown.iter().all(|p| now.binary_search(p).is_ok()));
            }
            let now: Vec<usize> = net.layers().iter().map(|l| l.nnz()).collect();
            assert_eq!(now, nnz);
            assert!(net.rigl_window().is_none());
            let grown: Vec<Vec<u64>> = done.iter().map(|u| u.grown.clone()).collect();
            let layers: Vec<(Vec<u64>, Vec<f32>)> = net
                .layers()
                .iter()
                .map(|l| (positions(&l.w), l.w.values().to_vec()))
                .collect();
            results.push((grown, layers));
        }
        assert_eq!(results[0], results[1], "1 and 3 threads");
        // the same growth; a grown weight (−η·g) may differ in its last bit:
        // the exact search sums the window in one pass, candidates per batch
        let ((grown_exact, exact), (grown_all, all)) = (&results[0], &results[2]);
        assert_eq!(grown_exact, grown_all, "exact and every candidate");
        for ((p, v), (q, u)) in exact.iter().zip(all) {
            assert_eq!(p, q);
            assert!(v
                .iter()
                .zip(u)
                .all(|(a, b)| (a - b).abs() <= 1e-6 * a.abs().max(1e-3)));
        }
    }

    #[test]
    fn kept_connections_survive_the_next_prune_and_bfloat16_gathers() {
        let mut net = Network::new(spec(6, 0.0)).unwrap();
        let first = window_epoch(&mut net, Search::Candidates(2.0), &[]);
        let mut keep = vec![Vec::new(); 3];
        for u in &first {
            keep[u.layer] = u.grown.clone();
        }
        let second = window_epoch(&mut net, Search::Candidates(2.0), &keep);
        for u in &second {
            let now = positions(&net.layers()[u.layer].w);
            assert!(keep[u.layer].iter().all(|p| now.binary_search(p).is_ok()));
        }
        net.set_precision(Precision::Bfloat16);
        let before: Vec<usize> = net.layers().iter().map(|l| l.nnz()).collect();
        let third = window_epoch(&mut net, Search::Exact, &[]);
        assert!(third.iter().all(|u| !u.grown.is_empty()));
        let after: Vec<usize> = net.layers().iter().map(|l| l.nnz()).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn sums_taken_from_one_window_add_into_another_with_the_same_keys() {
        let (x, y) = data(32, 12, 3, 8);
        let mut worker = Network::new(spec(9, 0.0)).unwrap();
        let mut server = worker.clone();
        let mut alone = worker.clone();
        for net in [&mut worker, &mut server, &mut alone] {
            net.rigl_open(&[0, 1], 0.3, Search::Candidates(3.0), 40, None)
                .unwrap();
        }
        let mut sums = Vec::new();
        for half in [0..16, 16..32] {
            let (xs, ys) = (&x[half.start * 12..half.end * 12], &y[half]);
            worker
                .compute_gradients(xs, &Targets::classes(ys), false)
                .unwrap();
            alone
                .compute_gradients(xs, &Targets::classes(ys), false)
                .unwrap();
            let taken = worker.rigl_window_mut().unwrap().take_sums();
            server
                .rigl_window_mut()
                .unwrap()
                .add_sums(&taken, 1)
                .unwrap();
            sums.push(taken);
        }
        assert_eq!(worker.rigl_window().unwrap().batches, 0);
        assert_eq!(server.rigl_window(), alone.rigl_window());
        let server_window = server.rigl_window_mut().unwrap();
        assert!(server_window.add_sums(&sums[0][1..], 1).is_err());
    }

    #[test]
    fn bad_windows_are_refused() {
        let mut net = Network::new(spec(7, 0.0)).unwrap();
        assert!(
            net.rigl_update(0.3, GrowInit::Zero, &[]).is_err(),
            "none open"
        );
        assert!(net.rigl_open(&[3], 0.3, ALL, 1, None).is_err());
        assert!(net.rigl_open(&[0, 0], 0.3, ALL, 1, None).is_err());
        assert!(net.rigl_open(&[0], 1.5, ALL, 1, None).is_err());
        assert!(net
            .rigl_open(&[0], 0.3, Search::Candidates(0.0), 1, None)
            .is_err());
        net.rigl_open(&[1], 0.3, Search::Exact, 1, None).unwrap();
        let mut win = net.rigl_window().unwrap().clone();
        win.layers[0].shape = (20, 17);
        assert!(net.set_rigl_window(Some(win)).is_err());
        assert!(net.rigl_update(1.5, GrowInit::Zero, &[]).is_err());
        assert!(
            net.rigl_window().is_some(),
            "a refused update keeps the window"
        );
        // no batch gathered: nothing changes
        let before = net.layers()[1].w.values().to_vec();
        let done = net.rigl_update(0.3, GrowInit::Zero, &[]).unwrap();
        assert!(done[0].grown.is_empty());
        assert_eq!(net.layers()[1].w.values(), &before[..]);
    }
}
