//! Topology changes: SET prune-and-regrow, neuron importance and removal.
//! Everything here is O(nnz) in time and memory.

use std::cmp::Ordering;

use crate::csc::SparseMatrix;
use crate::error::{invalid, Result};
use crate::init::{PositionSet, WeightInit};
use crate::layer::{ColumnBuilder, Layer};
use crate::rng::Rng;

/// Counts of one SET step on one layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetStep {
    pub removed_positive: usize,
    pub removed_negative: usize,
}

impl SetStep {
    pub fn regrown(&self) -> usize {
        self.removed_positive + self.removed_negative
    }
}

/// SET (SPEC §3): removes exactly `round(ζ·P)` of the `P` non-negative weights
/// (the smallest) and `round(ζ·N)` of the `N` negative weights (the largest,
/// i.e. closest to zero), then regrows as many connections at uniformly random
/// empty positions (a position freed in this step may be drawn again). New
/// weights come from `init`, their momentum is zero, nnz is unchanged.
/// Ties are broken by storage position, so the result is deterministic.
/// `protected[k]`, when given, keeps connection `k` out of the prune (the
/// fractions then count the unprotected connections only).
pub fn set_prune_regrow(
    layer: &mut Layer,
    zeta: f64,
    init: WeightInit,
    rng: &mut Rng,
    protected: Option<&[bool]>,
) -> Result<SetStep> {
    if !(0.0..=1.0).contains(&zeta) {
        invalid!("zeta must be in [0, 1], got {zeta}");
    }
    let w = &layer.w;
    let vals = w.values();
    let nnz = w.nnz();
    let removed = closest_to_zero(vals, zeta, None, protected);
    let step = SetStep {
        removed_positive: removed.positive,
        removed_negative: removed.negative,
    };
    if step.regrown() == 0 {
        return Ok(step);
    }
    let removed = removed.mask;

    let new_positions = draw_empty_positions(w, &removed, step.regrown(), rng);
    let (n_in, n_out) = (w.n_in(), w.n_out());
    let new_values: Vec<f32> = new_positions
        .iter()
        .map(|_| init.sample(rng, n_in, n_out, nnz))
        .collect();
    merge_grown(layer, &removed, &new_positions, &new_values);
    Ok(step)
}

/// Replaces the connections flagged in `removed` by new ones at the sorted,
/// empty linear positions `positions` (`j·n_in + i`) with `values`; their
/// optimizer state starts at zero, the kept connections keep theirs.
pub(crate) fn merge_grown(
    layer: &mut Layer,
    removed: &[bool],
    positions: &[u64],
    values_new: &[f32],
) {
    let w = &layer.w;
    let vals = w.values();
    let (n_in, n_out) = (w.n_in(), w.n_out());
    let size = w.nnz() - removed.iter().filter(|&&r| r).count() + positions.len();
    let mut linear = Vec::with_capacity(size);
    let mut values = Vec::with_capacity(size);
    let mut momentum = Vec::with_capacity(size);
    let keeps_second = layer.has_second();
    let mut second = Vec::with_capacity(if keeps_second { size } else { 0 });
    let mut fresh = positions.iter().zip(values_new).peekable();
    for j in 0..n_out {
        for k in w.col_ptr()[j]..w.col_ptr()[j + 1] {
            if removed[k] {
                continue;
            }
            let lin = j as u64 * n_in as u64 + w.row_idx()[k] as u64;
            while let Some((&p, &v)) = fresh.next_if(|(&p, _)| p < lin) {
                linear.push(p);
                values.push(v);
                momentum.push(0.0);
                if keeps_second {
                    second.push(0.0);
                }
            }
            linear.push(lin);
            values.push(vals[k]);
            momentum.push(layer.momentum[k]);
            if keeps_second {
                second.push(layer.second[k]);
            }
        }
    }
    for (&p, &v) in fresh {
        linear.push(p);
        values.push(v);
        momentum.push(0.0);
        if keeps_second {
            second.push(0.0);
        }
    }
    debug_assert_eq!(linear.len(), size);
    let m = SparseMatrix::from_sorted_linear(n_in, n_out, &linear, values);
    layer.replace_weights(m, momentum, second);
}

/// Which connections a magnitude prune removes, per sign as SET does.
pub(crate) struct SignedPrune {
    /// `mask[k]`: connection `k` goes.
    pub mask: Vec<bool>,
    pub positive: usize,
    pub negative: usize,
}

/// Marks the connections closest to zero for removal, separately among the
/// `P` non-negative values (the smallest go) and the `N` negative ones (the
/// largest go). With `total: None`, `round(ζ·P)` and `round(ζ·N)` go (SET).
/// With `Some(r)`, `r` connections go in all, split between the signs in
/// proportion to `P` and `N` (rounded), so the sign balance is kept. Ties go
/// by storage position, so the choice is deterministic. Connections flagged in
/// `protected` are never chosen and count in neither `P` nor `N`.
pub(crate) fn closest_to_zero(
    vals: &[f32],
    zeta: f64,
    total: Option<usize>,
    protected: Option<&[bool]>,
) -> SignedPrune {
    let (mut pos, mut neg): (Vec<u32>, Vec<u32>) = (0..vals.len() as u32)
        .filter(|&k| protected.is_none_or(|p| !p[k as usize]))
        .partition(|&k| vals[k as usize] >= 0.0);
    let nnz = pos.len() + neg.len();
    let (k_pos, k_neg) = match total {
        None => (
            (zeta * pos.len() as f64).round() as usize,
            (zeta * neg.len() as f64).round() as usize,
        ),
        Some(r) => {
            let r = r.min(nnz);
            let k_pos = if nnz == 0 {
                0
            } else {
                ((r as f64 * pos.len() as f64 / nnz as f64).round() as usize).min(pos.len())
            };
            let k_pos = k_pos.max(r.saturating_sub(neg.len()));
            (k_pos, r - k_pos)
        }
    };
    let by_small = |a: &u32, b: &u32| {
        vals[*a as usize]
            .total_cmp(&vals[*b as usize])
            .then(a.cmp(b))
    };
    let by_large = |a: &u32, b: &u32| {
        vals[*b as usize]
            .total_cmp(&vals[*a as usize])
            .then(a.cmp(b))
    };
    let mut mask = vec![false; vals.len()];
    for (list, k, cmp) in [
        (
            &mut pos,
            k_pos,
            &by_small as &dyn Fn(&u32, &u32) -> Ordering,
        ),
        (&mut neg, k_neg, &by_large),
    ] {
        if k == 0 {
            continue;
        }
        if k < list.len() {
            list.select_nth_unstable_by(k - 1, cmp);
        }
        for &i in &list[..k] {
            mask[i as usize] = true;
        }
    }
    SignedPrune {
        mask,
        positive: k_pos,
        negative: k_neg,
    }
}

/// `count` distinct positions (linear `j·n_in + i`, sorted) that are empty once
/// the connections flagged in `removed` are gone.
pub(crate) fn draw_empty_positions(
    w: &SparseMatrix,
    removed: &[bool],
    count: usize,
    rng: &mut Rng,
) -> Vec<u64> {
    let n_in = w.n_in() as u64;
    let cap = w.capacity();
    let occupied_after = w.nnz() as u64;
    let mut out = Vec::with_capacity(count);
    if occupied_after * 2 <= cap {
        // Rejection sampling: each draw succeeds with probability >= 1/2.
        let mut drawn = PositionSet::with_capacity_and_hasher(count, Default::default());
        while out.len() < count {
            let lin = rng.below(cap);
            if drawn.contains(&lin) {
                continue;
            }
            let (i, j) = ((lin % n_in) as usize, (lin / n_in) as usize);
            if let Some(k) = w.position(i, j) {
                if !removed[k] {
                    continue;
                }
            }
            drawn.insert(lin);
            out.push(lin);
        }
    } else {
        // Dense layer: list every empty position (O(cap) = O(nnz) here) and
        // pick `count` of them by a partial Fisher–Yates shuffle.
        let mut empty = Vec::with_capacity((cap - occupied_after) as usize + count);
        for j in 0..w.n_out() {
            let (rows, _) = w.column(j);
            let base = w.col_ptr()[j];
            let mut t = 0;
            for i in 0..w.n_in() as u32 {
                while t < rows.len() && rows[t] < i {
                    t += 1;
                }
                let kept = t < rows.len() && rows[t] == i && !removed[base + t];
                if !kept {
                    empty.push(j as u64 * n_in + i as u64);
                }
            }
        }
        for t in 0..count {
            let s = t + rng.below((empty.len() - t) as u64) as usize;
            empty.swap(t, s);
        }
        out.extend_from_slice(&empty[..count]);
    }
    out.sort_unstable();
    out
}

/// Node strength of every output neuron: `s_j = Σ_i |W[i, j]|` (SPEC §5).
pub fn node_strength(w: &SparseMatrix) -> Vec<f64> {
    (0..w.n_out())
        .map(|j| w.column(j).1.iter().map(|v| v.abs() as f64).sum())
        .collect()
}

/// Keep-mask of `n` neurons without `ids`; rejects unknown or repeated ids
/// and the removal of every neuron.
fn keep_mask(n: usize, ids: &[u32]) -> Result<Vec<bool>> {
    let mut keep = vec![true; n];
    for &id in ids {
        let id = id as usize;
        if id >= n {
            invalid!("neuron {id} does not exist in a layer of {n} neurons");
        }
        if !keep[id] {
            invalid!("neuron {id} is listed twice");
        }
        keep[id] = false;
    }
    if ids.len() == n {
        invalid!("cannot remove all {n} neurons of a layer");
    }
    Ok(keep)
}

/// Drops the connections of the output neurons (columns) not kept. With
/// `compact`, the dropped columns disappear and the layer has fewer outputs;
/// otherwise they stay as empty columns.
fn drop_columns(layer: &mut Layer, keep: &[bool], compact: bool) {
    let mut out = ColumnBuilder::for_layer(layer, layer.nnz());
    for (j, &kept) in keep.iter().enumerate() {
        if kept {
            out.copy(layer, layer.w.col_ptr()[j]..layer.w.col_ptr()[j + 1]);
        }
        if kept || !compact {
            out.end_column();
        }
    }
    out.install(layer, layer.w.n_in());
}

/// Drops the connections of the input neurons (rows) not kept. With
/// `compact`, the remaining rows are renumbered and the layer has fewer inputs.
fn drop_rows(layer: &mut Layer, keep: &[bool], compact: bool) {
    let mut new_index = vec![u32::MAX; keep.len()];
    let mut next_id = 0u32;
    for (i, slot) in new_index.iter_mut().enumerate() {
        if keep[i] {
            *slot = if compact { next_id } else { i as u32 };
            next_id += 1;
        }
    }
    let w = &layer.w;
    let mut out = ColumnBuilder::for_layer(layer, w.nnz());
    for j in 0..w.n_out() {
        for k in w.col_ptr()[j]..w.col_ptr()[j + 1] {
            let r = new_index[w.row_idx()[k] as usize];
            if r != u32::MAX {
                out.push(r, w.values()[k], layer.state(k));
            }
        }
        out.end_column();
    }
    let n_in = if compact {
        next_id as usize
    } else {
        keep.len()
    };
    out.install(layer, n_in);
}

fn check_chain(into: &Layer, next: &Layer) -> Result<usize> {
    let n = into.w.n_out();
    if next.w.n_in() != n {
        return Err(crate::error::CoreError::Internal(format!(
            "layer widths disagree: {n} outputs feed {} inputs",
            next.w.n_in()
        )));
    }
    Ok(n)
}

/// Removes hidden neurons for real: their incoming connections (columns of
/// `into`), their outgoing connections (rows of `next`) and their biases go,
/// and both matrices are compacted so the layer really shrinks.
pub fn remove_neurons(into: &mut Layer, next: &mut Layer, ids: &[u32]) -> Result<()> {
    let keep = keep_mask(check_chain(into, next)?, ids)?;
    if ids.is_empty() {
        return Ok(());
    }
    drop_columns(into, &keep, true);
    let filter = |v: &[f32]| {
        v.iter()
            .zip(&keep)
            .filter(|(_, &k)| k)
            .map(|(&x, _)| x)
            .collect::<Vec<_>>()
    };
    into.bias = filter(&into.bias);
    into.bias_momentum = filter(&into.bias_momentum);
    if into.has_second() {
        into.bias_second = filter(&into.bias_second);
    }
    into.bias_grad = vec![0.0; into.bias.len()];
    drop_rows(next, &keep, true);
    Ok(())
}

/// Empties hidden neurons: their incoming and outgoing connections go and
/// their bias (and its momentum) becomes zero, but the layer keeps its width,
/// so the empty slots can be connected again by SET regrowth as new neurons.
pub fn clear_neurons(into: &mut Layer, next: &mut Layer, ids: &[u32]) -> Result<()> {
    let keep = keep_mask(check_chain(into, next)?, ids)?;
    if ids.is_empty() {
        return Ok(());
    }
    drop_columns(into, &keep, false);
    for &id in ids {
        into.bias[id as usize] = 0.0;
        into.reset_bias_state(id as usize);
    }
    drop_rows(next, &keep, false);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::init::random_sparse;

    /// A random layer with nonzero, identifiable momentum.
    pub(crate) fn layer(n_in: usize, n_out: usize, nnz: u64, seed: u64) -> Layer {
        let mut rng = Rng::new(seed);
        let mut l =
            Layer::new(random_sparse(n_in, n_out, nnz, WeightInit::HeUniform, &mut rng).unwrap());
        for (k, m) in l.momentum.iter_mut().enumerate() {
            *m = k as f32 + 1.0; // nonzero, identifiable momentum
        }
        l
    }

    fn entries(w: &SparseMatrix) -> Vec<(u32, u32, f32)> {
        (0..w.n_out())
            .flat_map(|j| {
                let (r, v) = w.column(j);
                r.iter()
                    .zip(v)
                    .map(move |(&i, &x)| (i, j as u32, x))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn set_keeps_nnz_removes_exact_counts_and_never_duplicates() {
        for &(n_in, n_out, nnz) in &[(100, 80, 800u64), (20, 10, 150), (30, 30, 900)] {
            let mut l = layer(n_in, n_out, nnz, nnz);
            let before = entries(&l.w);
            let old_momentum: Vec<f32> = l.momentum.clone();
            let n_pos = before.iter().filter(|e| e.2 >= 0.0).count();
            let mut rng = Rng::new(3);
            let step =
                set_prune_regrow(&mut l, 0.3, WeightInit::HeUniform, &mut rng, None).unwrap();
            assert_eq!(l.nnz() as u64, nnz);
            l.w.check_invariants().unwrap();
            assert_eq!(step.removed_positive, (0.3 * n_pos as f64).round() as usize);
            assert_eq!(
                step.removed_negative,
                (0.3 * (nnz as usize - n_pos) as f64).round() as usize
            );

            // the removed ones are exactly the per-sign ones closest to zero
            let mut pos: Vec<f32> = before.iter().map(|e| e.2).filter(|&v| v >= 0.0).collect();
            let mut neg: Vec<f32> = before.iter().map(|e| e.2).filter(|&v| v < 0.0).collect();
            pos.sort_by(f32::total_cmp);
            neg.sort_by(|a, b| b.total_cmp(a));
            let gone: Vec<&(u32, u32, f32)> = before
                .iter()
                .filter(|e| {
                    l.w.position(e.0 as usize, e.1 as usize)
                        .map(|p| l.w.values()[p])
                        != Some(e.2)
                })
                .collect();
            let pos_cut = if step.removed_positive > 0 {
                pos[step.removed_positive - 1]
            } else {
                -1.0
            };
            for e in &gone {
                if e.2 >= 0.0 {
                    assert!(e.2 <= pos_cut);
                } else {
                    assert!(e.2 >= neg[step.removed_negative - 1]);
                }
            }
            // surviving connections kept their momentum; new ones have zero
            for (k, &(i, j, v)) in before.iter().enumerate() {
                if let Some(p) = l.w.position(i as usize, j as usize) {
                    if l.w.values()[p] == v {
                        assert_eq!(l.momentum[p], old_momentum[k]);
                    }
                }
            }
            let zeros = l.momentum.iter().filter(|&&m| m == 0.0).count();
            assert_eq!(zeros, step.regrown());
            assert_eq!(gone.len(), step.regrown());
        }
    }

    #[test]
    fn set_on_a_full_layer_is_a_permutation_of_positions() {
        // dense 6x5: every removed position must be refilled
        let mut l = layer(6, 5, 30, 1);
        let mut rng = Rng::new(8);
        let step = set_prune_regrow(&mut l, 0.5, WeightInit::HeUniform, &mut rng, None).unwrap();
        assert!(step.regrown() > 0);
        assert_eq!(l.nnz(), 30);
        l.w.check_invariants().unwrap();
    }

    #[test]
    fn set_rejects_bad_zeta_and_zero_zeta_is_a_no_op() {
        let mut l = layer(10, 10, 30, 2);
        let mut rng = Rng::new(1);
        assert!(set_prune_regrow(&mut l, 1.5, WeightInit::HeUniform, &mut rng, None).is_err());
        let before = l.clone();
        set_prune_regrow(&mut l, 0.0, WeightInit::HeUniform, &mut rng, None).unwrap();
        assert_eq!(l, before);
    }

    #[test]
    fn removing_neurons_compacts_both_sides() {
        let mut a = layer(12, 10, 60, 4);
        let mut b = layer(10, 7, 40, 5);
        for (j, x) in a.bias.iter_mut().enumerate() {
            *x = j as f32;
        }
        let ea = entries(&a.w);
        let eb = entries(&b.w);
        remove_neurons(&mut a, &mut b, &[2, 7, 0]).unwrap();
        assert_eq!(a.w.n_out(), 7);
        assert_eq!(b.w.n_in(), 7);
        assert_eq!(a.bias, vec![1., 3., 4., 5., 6., 8., 9.]);
        let old_of_new = [1u32, 3, 4, 5, 6, 8, 9];
        let expect_a: Vec<(u32, u32, f32)> = ea
            .iter()
            .filter(|e| old_of_new.contains(&e.1))
            .map(|e| {
                (
                    e.0,
                    old_of_new.iter().position(|&o| o == e.1).unwrap() as u32,
                    e.2,
                )
            })
            .collect();
        let mut got_a = entries(&a.w);
        got_a.sort_by_key(|e| (e.1, e.0));
        assert_eq!(got_a, expect_a);
        let expect_b: usize = eb.iter().filter(|e| old_of_new.contains(&e.0)).count();
        assert_eq!(b.nnz(), expect_b);
        a.w.check_invariants().unwrap();
        b.w.check_invariants().unwrap();
        assert!(remove_neurons(&mut a, &mut b, &[0, 0]).is_err());
        assert!(remove_neurons(&mut a, &mut b, &[0, 1, 2, 3, 4, 5, 6]).is_err());
        assert!(remove_neurons(&mut a, &mut b, &[70]).is_err());
    }

    #[test]
    fn clearing_neurons_empties_them_and_keeps_the_width() {
        let mut a = layer(12, 10, 60, 4);
        let mut b = layer(10, 7, 40, 5);
        a.bias.iter_mut().for_each(|x| *x = 1.0);
        let (ea, eb) = (entries(&a.w), entries(&b.w));
        clear_neurons(&mut a, &mut b, &[2, 7]).unwrap();
        assert_eq!((a.w.n_out(), b.w.n_in()), (10, 10));
        let expect_a: Vec<_> = ea
            .iter()
            .filter(|e| e.1 != 2 && e.1 != 7)
            .cloned()
            .collect();
        let expect_b: Vec<_> = eb
            .iter()
            .filter(|e| e.0 != 2 && e.0 != 7)
            .cloned()
            .collect();
        assert_eq!(entries(&a.w), expect_a);
        assert_eq!(entries(&b.w), expect_b);
        assert_eq!(a.bias.iter().filter(|&&x| x == 0.0).count(), 2);
        a.w.check_invariants().unwrap();
        b.w.check_invariants().unwrap();
        // regrowth may reconnect the empty slots
        let mut rng = Rng::new(1);
        set_prune_regrow(&mut a, 0.9, WeightInit::HeUniform, &mut rng, None).unwrap();
        assert_eq!(a.nnz(), expect_a.len());
    }

    #[test]
    fn node_strength_sums_absolute_incoming_weights() {
        let w = SparseMatrix::from_csc(3, 2, vec![0, 2, 3], vec![0, 2, 1], vec![-1.5, 2.0, 0.25])
            .unwrap();
        assert_eq!(node_strength(&w), vec![3.5, 0.25]);
    }
}
