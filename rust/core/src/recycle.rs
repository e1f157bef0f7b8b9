//! Neuron recycling (SPEC §7): neuron scores, selection, reinitialization,
//! gradual interpolation, activity tracking and the midpoint loss.
//!
//! Hidden neuron `j` owns column `j` of the layer feeding it (`into`) and row
//! `j` of the layer it feeds (`next`). Everything here is O(nnz) per call;
//! nothing runs unless a recycling strategy asks for it.

use rayon::prelude::*;

use crate::csc::SparseMatrix;
use crate::error::{invalid, Result};
use crate::init::{sample_distinct_sorted, WeightInit};
use crate::layer::{ColumnBuilder, Layer};
use crate::rng::Rng;

/// Where a recycled neuron's new weights come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reinit {
    /// The network's initial distribution (`WeightInit`) for that layer.
    Initial,
    /// Normal with the mean and standard deviation of the whole matrix.
    MatrixNormal,
    /// A random kept neuron's connections plus noise of 0.05 · std of the matrix.
    Copy,
    Zero,
}

/// What happens to a recycled neuron's outgoing connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// New positions and values, like the incoming side.
    Reinit,
    /// New positions with zero weights (ReDo, Continual Backprop): the neuron
    /// starts without effect on the output and learns its way in.
    Zero,
    /// Left as they are.
    Keep,
}

/// The names [`Reinit::parse`], [`Outgoing::parse`] and [`Midpoint::new`] take.
pub const REINIT_NAMES: [&str; 4] = ["initial", "matrix_normal", "copy", "zero"];
pub const OUTGOING_NAMES: [&str; 3] = ["reinit", "zero", "keep"];
pub const MIDPOINT_NAMES: [&str; 2] = ["mean", "median"];
pub const DISTANCE_NAMES: [&str; 2] = ["l1", "l2"];

impl Reinit {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "initial" => Reinit::Initial,
            "matrix_normal" => Reinit::MatrixNormal,
            "copy" => Reinit::Copy,
            "zero" => Reinit::Zero,
            _ => invalid!("reinit must be one of {REINIT_NAMES:?}, got {name:?}"),
        })
    }
}

impl Outgoing {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "reinit" => Outgoing::Reinit,
            "zero" => Outgoing::Zero,
            "keep" => Outgoing::Keep,
            _ => invalid!("outgoing must be one of {OUTGOING_NAMES:?}, got {name:?}"),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecycleOptions {
    pub reinit: Reinit,
    pub outgoing: Outgoing,
    /// With `T > 0` the neuron keeps its positions and its weights move from
    /// the old to the new values over the next `T` training steps.
    pub interpolate_steps: u32,
}

/// Connections a recycling event touched (their momentum is now zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecycleReport {
    pub incoming: usize,
    pub outgoing: usize,
}

/// How many neurons to pick and by which rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Selection {
    /// The `k` eligible neurons with the smallest scores.
    Smallest(usize),
    /// The `k` eligible neurons with the largest scores (a control).
    Largest(usize),
    /// `k` eligible neurons uniformly at random (a control).
    Random(usize),
    /// Every eligible neuron whose score is at most the threshold (ReDo).
    AtMost(f64),
}

/// Picks neurons among those flagged `eligible`; ties go to the lower index.
/// Returns sorted ids.
pub fn select_neurons(
    scores: &[f64],
    eligible: &[bool],
    rule: Selection,
    rng: &mut Rng,
) -> Result<Vec<u32>> {
    if scores.len() != eligible.len() {
        invalid!(
            "{} scores for {} eligibility flags",
            scores.len(),
            eligible.len()
        );
    }
    if let Some(j) = scores.iter().position(|s| s.is_nan()) {
        invalid!("the score of neuron {j} is NaN");
    }
    let mut pool: Vec<u32> = (0..scores.len() as u32)
        .filter(|&j| eligible[j as usize])
        .collect();
    let by = |a: &u32, b: &u32| {
        scores[*a as usize]
            .total_cmp(&scores[*b as usize])
            .then(a.cmp(b))
    };
    let mut picked = match rule {
        Selection::AtMost(t) => pool
            .into_iter()
            .filter(|&j| scores[j as usize] <= t)
            .collect(),
        Selection::Smallest(k) | Selection::Largest(k) => {
            let k = k.min(pool.len());
            if k > 0 && k < pool.len() {
                if matches!(rule, Selection::Smallest(_)) {
                    pool.select_nth_unstable_by(k - 1, by);
                } else {
                    pool.select_nth_unstable_by(k - 1, |a, b| {
                        scores[*b as usize]
                            .total_cmp(&scores[*a as usize])
                            .then(a.cmp(b))
                    });
                }
            }
            pool.truncate(k);
            pool
        }
        Selection::Random(k) => {
            let k = k.min(pool.len());
            sample_distinct_sorted(pool.len() as u64, k as u64, rng)
                .into_iter()
                .map(|t| pool[t as usize])
                .collect()
        }
    };
    picked.sort_unstable();
    Ok(picked)
}

/// Σ v² of each column (incoming side of each output neuron).
fn column_sq(w: &SparseMatrix) -> Vec<f64> {
    (0..w.n_out())
        .into_par_iter()
        .map(|j| w.column(j).1.iter().map(|&v| (v as f64) * (v as f64)).sum())
        .collect()
}

/// `Σ f(v)` over each input row (outgoing side of each input neuron), in the
/// fixed order of the transposed view.
fn row_sums(w: &SparseMatrix, f: impl Fn(f32) -> f64 + Sync) -> Vec<f64> {
    let (ptr, pos, vals) = (w.row_ptr(), w.t_pos(), w.values());
    (0..w.n_in())
        .into_par_iter()
        .map(|i| {
            pos[ptr[i]..ptr[i + 1]]
                .iter()
                .map(|&k| f(vals[k as usize]))
                .sum()
        })
        .collect()
}

/// Σ |outgoing weights| of each input neuron of `next`.
pub fn outgoing_abs_sums(next: &SparseMatrix) -> Vec<f64> {
    row_sums(next, |v| v.abs() as f64)
}

/// `‖incoming_j‖₂ · ‖outgoing_j‖₂` over existing connections (SPEC §7).
pub fn neuron_magnitudes(into: &SparseMatrix, next: &SparseMatrix) -> Vec<f64> {
    let (norm_in, norm_out) = norms(into, next);
    norm_in.iter().zip(&norm_out).map(|(a, b)| a * b).collect()
}

fn norms(into: &SparseMatrix, next: &SparseMatrix) -> (Vec<f64>, Vec<f64>) {
    let sqrt = |v: Vec<f64>| v.into_iter().map(f64::sqrt).collect::<Vec<_>>();
    (
        sqrt(column_sq(into)),
        sqrt(row_sums(next, |v| (v as f64) * (v as f64))),
    )
}

/// Mean and standard deviation of a matrix's values (0, 0 when empty).
fn moments(values: &[f32]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// Draws new weights for one layer.
struct Draw {
    reinit: Reinit,
    init: WeightInit,
    n_in: usize,
    n_out: usize,
    nnz: usize,
    mean: f64,
    std: f64,
}

impl Draw {
    fn new(reinit: Reinit, init: WeightInit, w: &SparseMatrix) -> Self {
        let (mean, std) = moments(w.values());
        Draw {
            reinit,
            init,
            n_in: w.n_in(),
            n_out: w.n_out(),
            nnz: w.nnz(),
            mean,
            std,
        }
    }

    fn value(&self, rng: &mut Rng) -> f32 {
        match self.reinit {
            Reinit::Initial => self.init.sample(rng, self.n_in, self.n_out, self.nnz),
            Reinit::MatrixNormal => (self.mean + self.std * rng.normal()) as f32,
            Reinit::Zero => 0.0,
            Reinit::Copy => self.noise(rng),
        }
    }

    fn noise(&self, rng: &mut Rng) -> f32 {
        (0.05 * self.std * rng.normal()) as f32
    }
}

/// A neuron's connections on one side: sorted positions (row or column index)
/// with values.
type Side = Vec<(u32, f32)>;

/// `count` connections among `pool` positions. Without a donor: random
/// positions, values from `draw`. With a donor's connections: a random subset
/// of them (all when `count` exceeds their number, the rest at random other
/// positions with noise only), each with the donor's value plus noise.
fn fresh_side(count: usize, pool: usize, donor: Option<&Side>, draw: &Draw, rng: &mut Rng) -> Side {
    let Some(donor) = donor else {
        let at = sample_distinct_sorted(pool as u64, count as u64, rng);
        return at
            .into_iter()
            .map(|p| (p as u32, draw.value(rng)))
            .collect();
    };
    let taken = count.min(donor.len());
    let mut side: Side = sample_distinct_sorted(donor.len() as u64, taken as u64, rng)
        .into_iter()
        .map(|t| {
            let (p, v) = donor[t as usize];
            (p, v + draw.noise(rng))
        })
        .collect();
    // Extra positions: the t-th free position (not a donor position) for each draw.
    let extra = sample_distinct_sorted((pool - donor.len()) as u64, (count - taken) as u64, rng);
    let mut d = 0;
    for t in extra {
        let mut p = t as usize + d;
        while d < donor.len() && donor[d].0 as usize <= p {
            d += 1;
            p = t as usize + d;
        }
        side.push((p as u32, draw.noise(rng)));
    }
    side.sort_unstable_by_key(|&(p, _)| p);
    side
}

/// The connections of row `i` of `w` as (column, value).
fn row_of(w: &SparseMatrix, i: usize) -> Side {
    let (ptr, cols, pos) = (w.row_ptr(), w.t_col(), w.t_pos());
    (ptr[i]..ptr[i + 1])
        .map(|t| (cols[t], w.values()[pos[t] as usize]))
        .collect()
}

/// Replaces whole columns of `layer`: `fresh[t]` becomes column `ids[t]`,
/// with zero momentum. Other columns keep values and momentum.
fn replace_columns(layer: &mut Layer, ids: &[u32], fresh: &[Side]) {
    let mut out = ColumnBuilder::for_layer(layer, layer.nnz());
    let mut next = ids.iter().zip(fresh).peekable();
    for j in 0..layer.w.n_out() {
        if let Some((_, side)) = next.next_if(|(&id, _)| id as usize == j) {
            for &(i, v) in side {
                out.push(i, v, (0.0, 0.0));
            }
        } else {
            out.copy(layer, layer.w.col_ptr()[j]..layer.w.col_ptr()[j + 1]);
        }
        out.end_column();
    }
    out.install(layer, layer.w.n_in());
}

/// Replaces whole rows of `layer`: `fresh[t]` (columns with values) becomes
/// row `ids[t]`, with zero momentum. Other rows keep values and momentum.
fn replace_rows(layer: &mut Layer, ids: &[u32], fresh: &[Side]) {
    let w = &layer.w;
    let mut recycled = vec![false; w.n_in()];
    for &i in ids {
        recycled[i as usize] = true;
    }
    // New entries as (column, row, value), in CSC order.
    let mut new: Vec<(u32, u32, f32)> = ids
        .iter()
        .zip(fresh)
        .flat_map(|(&i, side)| side.iter().map(move |&(j, v)| (j, i, v)))
        .collect();
    new.sort_unstable_by_key(|&(j, i, _)| (j, i));
    let nnz = w.nnz() - ids.iter().map(|&i| w.fan_out_of(i as usize)).sum::<usize>() + new.len();
    let mut out = ColumnBuilder::for_layer(layer, nnz);
    let mut incoming = new.into_iter().peekable();
    for j in 0..w.n_out() {
        for k in w.col_ptr()[j]..w.col_ptr()[j + 1] {
            let i = w.row_idx()[k];
            if recycled[i as usize] {
                continue;
            }
            while let Some((_, r, v)) = incoming.next_if(|&(c, r, _)| c as usize == j && r < i) {
                out.push(r, v, (0.0, 0.0));
            }
            out.push(i, w.values()[k], layer.state(k));
        }
        while let Some((_, r, v)) = incoming.next_if(|&(c, _, _)| c as usize == j) {
            out.push(r, v, (0.0, 0.0));
        }
        out.end_column();
    }
    out.install(layer, w.n_in());
}

/// One weight moving from its old to its new value, a fixed `delta` per step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BlendEntry {
    pub layer: usize,
    pub row: u32,
    pub col: u32,
    /// Storage index in the layer at `Blend::version`.
    pub k: usize,
    pub delta: f32,
}

/// The pending interpolation of one recycling event (SPEC §7): the effective
/// weights are `(1−α)·old + α·new` plus what training adds, α going from 0 to
/// 1 in equal steps. The old part is frozen (it only shrinks by the schedule)
/// and the gradient updates land on the new part, so each step adds
/// `(new − old)/T` to the stored weight after the SGD update.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Blend {
    pub steps_left: u32,
    /// Network topology version the storage indices belong to.
    pub version: u64,
    pub weights: Vec<BlendEntry>,
    /// (layer, neuron, delta) of the biases.
    pub biases: Vec<(usize, u32, f32)>,
}

impl Blend {
    /// Re-finds each entry's storage index after a topology change; entries
    /// whose connection no longer exists are dropped.
    pub fn relocate(&mut self, layers: &[Layer], version: u64) {
        if self.version == version {
            return;
        }
        self.weights.retain_mut(|e| {
            match layers[e.layer].w.position(e.row as usize, e.col as usize) {
                Some(k) => {
                    e.k = k;
                    true
                }
                None => false,
            }
        });
        self.version = version;
    }

    /// Adds `times` steps of the schedule.
    pub fn advance(&mut self, layers: &mut [Layer], times: u32) {
        let times = times.min(self.steps_left);
        for e in &self.weights {
            layers[e.layer].w.values_mut()[e.k] += e.delta * times as f32;
        }
        for &(l, j, d) in &self.biases {
            layers[l].bias[j as usize] += d * times as f32;
        }
        self.steps_left -= times;
    }

    /// Forgets the entries of hidden neurons `ids` of layer `h` (their
    /// column in layer `h`, their row in layer `h + 1`, their bias).
    pub fn forget(&mut self, h: usize, recycled: &[bool]) {
        self.weights.retain(|e| {
            !((e.layer == h && recycled[e.col as usize])
                || (e.layer == h + 1 && recycled[e.row as usize]))
        });
        self.biases
            .retain(|&(l, j, _)| !(l == h && recycled[j as usize]));
    }
}

/// A pending interpolation as a checkpoint holds it: connections named by
/// position in the matrix rather than by storage index.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedBlend {
    pub steps_left: u32,
    /// (layer, row, column, change per step) of the weights.
    pub weights: Vec<(usize, u32, u32, f32)>,
    /// (hidden layer, neuron, change per step) of the biases.
    pub biases: Vec<(usize, u32, f32)>,
}

impl Blend {
    pub fn saved(&self) -> SavedBlend {
        SavedBlend {
            steps_left: self.steps_left,
            weights: self
                .weights
                .iter()
                .map(|e| (e.layer, e.row, e.col, e.delta))
                .collect(),
            biases: self.biases.clone(),
        }
    }

    /// The blend of a checkpoint, whose entries were checked against the
    /// layers; the storage indices are found at the first use.
    pub fn from_saved(s: &SavedBlend) -> Blend {
        Blend {
            steps_left: s.steps_left,
            version: STALE,
            weights: s
                .weights
                .iter()
                .map(|&(layer, row, col, delta)| BlendEntry {
                    layer,
                    row,
                    col,
                    k: 0,
                    delta,
                })
                .collect(),
            biases: s.biases.clone(),
        }
    }
}

/// A topology version no network reaches: a blend marked with it relocates.
const STALE: u64 = u64::MAX;

/// What neuron recycling keeps inside a network between training steps, so
/// that a checkpoint can hold it: the neurons SET must spare, the pending
/// interpolations and the activity statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecyclingState {
    /// Per hidden layer, the protected neurons (sorted).
    pub protected: Vec<Vec<u32>>,
    pub blends: Vec<SavedBlend>,
    pub activity: Option<Activity>,
}

/// Flags of `ids` among `n` neurons; rejects unknown or repeated ids.
pub(crate) fn flags(n: usize, ids: &[u32]) -> Result<Vec<bool>> {
    let mut f = vec![false; n];
    for &id in ids {
        if id as usize >= n {
            invalid!("neuron {id} does not exist in a layer of {n} neurons");
        }
        if f[id as usize] {
            invalid!("neuron {id} is listed twice");
        }
        f[id as usize] = true;
    }
    Ok(f)
}

/// Recycles hidden neurons `ids` (sorted, distinct, checked by the caller):
/// new incoming weights, outgoing per `opts.outgoing`, zero bias, zero
/// momentum on every touched connection. Each neuron keeps its fan-in and
/// fan-out counts. Without interpolation the positions are redrawn (a
/// neuron's whole column and row are free, so any position may come back);
/// with it they stay, and the returned blend moves the values.
pub(crate) fn recycle(
    into: &mut Layer,
    next: &mut Layer,
    h: usize,
    ids: &[u32],
    opts: RecycleOptions,
    init: WeightInit,
    rng: &mut Rng,
) -> Result<(RecycleReport, Option<Blend>)> {
    let n = into.w.n_out();
    let recycled = flags(n, ids)?;
    if opts.reinit == Reinit::Copy && opts.interpolate_steps > 0 {
        invalid!("reinit='copy' places the donor's connections and cannot be interpolated; use interpolate_steps=0");
    }
    if opts.reinit == Reinit::Copy && ids.len() == n && !ids.is_empty() {
        invalid!("reinit='copy' needs a neuron that is not recycled to copy from");
    }
    let draw_in = Draw::new(opts.reinit, init, &into.w);
    let out_reinit = match opts.outgoing {
        Outgoing::Zero => Reinit::Zero,
        _ => opts.reinit,
    };
    let draw_out = Draw::new(out_reinit, init, &next.w);
    let report = RecycleReport {
        incoming: ids.iter().map(|&j| into.w.column(j as usize).0.len()).sum(),
        outgoing: match opts.outgoing {
            Outgoing::Keep => 0,
            _ => ids.iter().map(|&j| next.w.fan_out_of(j as usize)).sum(),
        },
    };
    for &j in ids {
        into.reset_bias_state(j as usize);
    }
    if opts.interpolate_steps > 0 {
        let blend = blend_in_place(into, next, h, ids, &draw_in, &draw_out, opts, rng);
        return Ok((report, Some(blend)));
    }
    for &j in ids {
        into.bias[j as usize] = 0.0;
    }
    let kept: Vec<u32> = (0..n as u32).filter(|&j| !recycled[j as usize]).collect();
    let mut donors = Vec::with_capacity(ids.len());
    let incoming: Vec<Side> = ids
        .iter()
        .map(|&j| {
            let count = into.w.column(j as usize).0.len();
            let donor =
                (opts.reinit == Reinit::Copy).then(|| kept[rng.below(kept.len() as u64) as usize]);
            donors.push(donor);
            let donor_side = donor.map(|d| {
                let (rows, vals) = into.w.column(d as usize);
                rows.iter()
                    .copied()
                    .zip(vals.iter().copied())
                    .collect::<Side>()
            });
            fresh_side(count, into.w.n_in(), donor_side.as_ref(), &draw_in, rng)
        })
        .collect();
    replace_columns(into, ids, &incoming);
    if opts.outgoing != Outgoing::Keep {
        let copy_out = opts.outgoing == Outgoing::Reinit && opts.reinit == Reinit::Copy;
        let outgoing: Vec<Side> = ids
            .iter()
            .zip(&donors)
            .map(|(&j, donor)| {
                let count = next.w.fan_out_of(j as usize);
                let donor_side = donor
                    .filter(|_| copy_out)
                    .map(|d| row_of(&next.w, d as usize));
                fresh_side(count, next.w.n_out(), donor_side.as_ref(), &draw_out, rng)
            })
            .collect();
        replace_rows(next, ids, &outgoing);
    }
    Ok((report, None))
}

/// Interpolated recycling: positions stay, momentum of touched connections
/// is zeroed, and the blend will move each value to a fresh draw.
#[allow(clippy::too_many_arguments)]
fn blend_in_place(
    into: &mut Layer,
    next: &mut Layer,
    h: usize,
    ids: &[u32],
    draw_in: &Draw,
    draw_out: &Draw,
    opts: RecycleOptions,
    rng: &mut Rng,
) -> Blend {
    let t = opts.interpolate_steps as f32;
    let mut weights = Vec::new();
    let mut biases = Vec::new();
    for &j in ids {
        let j = j as usize;
        for k in into.w.col_ptr()[j]..into.w.col_ptr()[j + 1] {
            let old = into.w.values()[k];
            into.reset_state(k);
            weights.push(BlendEntry {
                layer: h,
                row: into.w.row_idx()[k],
                col: j as u32,
                k,
                delta: (draw_in.value(rng) - old) / t,
            });
        }
        biases.push((h, j as u32, -into.bias[j] / t));
        if opts.outgoing == Outgoing::Keep {
            continue;
        }
        for s in next.w.row_ptr()[j]..next.w.row_ptr()[j + 1] {
            let (k, col) = (next.w.t_pos()[s] as usize, next.w.t_col()[s]);
            next.reset_state(k);
            weights.push(BlendEntry {
                layer: h + 1,
                row: j as u32,
                col,
                k,
                delta: (draw_out.value(rng) - next.w.values()[k]) / t,
            });
        }
    }
    Blend {
        steps_left: opts.interpolate_steps,
        version: 0,
        weights,
        biases,
    }
}

/// Mean absolute activation of each hidden neuron over the training samples
/// seen since the last reset, and (when a decay is set) Continual Backprop's
/// contribution utility, a running average of `mean_batch |a_j| · Σ|outgoing_j|`.
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    pub samples: u64,
    pub sum_abs: Vec<Vec<f64>>,
    pub decay: Option<f64>,
    pub utility: Vec<Vec<f64>>,
}

impl Activity {
    pub fn new(widths: &[usize], decay: Option<f64>) -> Self {
        Activity {
            samples: 0,
            sum_abs: widths.iter().map(|&n| vec![0.0; n]).collect(),
            decay,
            utility: widths.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// Adds one batch: `acts[h]` is hidden layer `h`'s feature-major block of
    /// `b` samples (after dropout, whose inverted scaling keeps the mean).
    pub fn record(&mut self, acts: &[&[f32]], next: &[&SparseMatrix], b: usize) {
        for (h, block) in acts.iter().enumerate() {
            let sums: Vec<f64> = block
                .par_chunks(b)
                .map(|row| row.iter().map(|v| v.abs() as f64).sum())
                .collect();
            for (acc, s) in self.sum_abs[h].iter_mut().zip(&sums) {
                *acc += s;
            }
            if let Some(d) = self.decay {
                let out = outgoing_abs_sums(next[h]);
                for ((u, s), o) in self.utility[h].iter_mut().zip(&sums).zip(&out) {
                    *u = d * *u + (1.0 - d) * (s / b as f64) * o;
                }
            }
        }
        self.samples += b as u64;
    }

    pub fn mean_abs(&self, h: usize) -> Vec<f64> {
        let n = self.samples.max(1) as f64;
        self.sum_abs[h].iter().map(|s| s / n).collect()
    }

    /// Checks statistics read from a checkpoint against the hidden layers'
    /// widths: one finite, non-negative entry per neuron and a valid decay.
    pub fn check(&self, widths: &[usize]) -> Result<()> {
        if let Some(d) = self.decay {
            if !(0.0..1.0).contains(&d) {
                invalid!("utility decay must be in [0, 1), got {d}");
            }
        }
        for (name, v) in [
            ("mean activation sums", &self.sum_abs),
            ("utilities", &self.utility),
        ] {
            let got: Vec<usize> = v.iter().map(Vec::len).collect();
            if got != widths {
                invalid!("{name} have layer widths {got:?}; the hidden layers have {widths:?}");
            }
            if v.iter().flatten().any(|x| !x.is_finite() || *x < 0.0) {
                invalid!("{name} must be finite and non-negative");
            }
        }
        Ok(())
    }

    /// Forgets the history of the given neurons of layer `h` (they are new).
    pub fn restart(&mut self, h: usize, recycled: &[bool]) {
        for (j, &r) in recycled.iter().enumerate() {
            if r {
                self.sum_abs[h][j] = 0.0;
                self.utility[h][j] = 0.0;
            }
        }
    }

    /// Keeps only the neurons flagged in `keep` (after a layer shrank).
    pub fn compact(&mut self, h: usize, keep: &[bool]) {
        for v in [&mut self.sum_abs[h], &mut self.utility[h]] {
            let mut it = keep.iter();
            v.retain(|_| *it.next().unwrap_or(&true));
        }
    }
}

/// The midpoint loss `λ·Σ_n dist(M_n, stopgrad(m))` over each hidden layer's
/// neuron magnitudes `M_n = ‖in_n‖·‖out_n‖`, with `m` their mean or median.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Midpoint {
    pub weight: f32,
    pub median: bool,
    pub l2: bool,
}

impl Midpoint {
    pub fn new(weight: f64, midpoint: &str, distance: &str) -> Result<Self> {
        if !(weight.is_finite() && weight >= 0.0) {
            invalid!("the midpoint loss weight must be a finite number >= 0, got {weight}");
        }
        let median = match midpoint {
            "mean" => false,
            "median" => true,
            _ => invalid!("midpoint must be one of {MIDPOINT_NAMES:?}, got {midpoint:?}"),
        };
        let l2 = match distance {
            "l1" => false,
            "l2" => true,
            _ => invalid!("distance must be one of {DISTANCE_NAMES:?}, got {distance:?}"),
        };
        Ok(Midpoint {
            weight: weight as f32,
            median,
            l2,
        })
    }

    /// The loss value (for tests and reports).
    pub fn loss(&self, layers: &[Layer]) -> f64 {
        (0..layers.len() - 1)
            .map(|h| {
                let m = neuron_magnitudes(&layers[h].w, &layers[h + 1].w);
                let mid = self.centre(&m);
                m.iter()
                    .map(|&x| {
                        if self.l2 {
                            (x - mid).powi(2)
                        } else {
                            (x - mid).abs()
                        }
                    })
                    .sum::<f64>()
            })
            .sum::<f64>()
            * self.weight as f64
    }

    fn centre(&self, m: &[f64]) -> f64 {
        if m.is_empty() {
            return 0.0;
        }
        if self.median {
            let mut s = m.to_vec();
            s.sort_unstable_by(f64::total_cmp);
            let n = s.len();
            if n % 2 == 1 {
                s[n / 2]
            } else {
                0.5 * (s[n / 2 - 1] + s[n / 2])
            }
        } else {
            m.iter().sum::<f64>() / m.len() as f64
        }
    }

    /// One plain gradient step of size `lr` on the loss, after the main
    /// update (no momentum, like decoupled weight decay). With `c_n =
    /// dist'(M_n − m)`, a weight on the incoming side of neuron `n` has
    /// gradient `λ·c_n·‖out_n‖/‖in_n‖·w`, on the outgoing side
    /// `λ·c_n·‖in_n‖/‖out_n‖·w`; a zero norm gives a zero (sub)gradient.
    pub fn step(&self, layers: &mut [Layer], lr: f64) {
        let hidden = layers.len() - 1;
        let mut col_factor: Vec<Vec<f64>> = Vec::with_capacity(hidden);
        let mut row_factor: Vec<Vec<f64>> = Vec::with_capacity(hidden);
        for h in 0..hidden {
            let (norm_in, norm_out) = norms(&layers[h].w, &layers[h + 1].w);
            let m: Vec<f64> = norm_in.iter().zip(&norm_out).map(|(a, b)| a * b).collect();
            let mid = self.centre(&m);
            let c: Vec<f64> = m
                .iter()
                .map(|&x| match (self.l2, x - mid) {
                    (true, d) => 2.0 * d,
                    (false, d) if d > 0.0 => 1.0,
                    (false, d) if d < 0.0 => -1.0,
                    _ => 0.0,
                })
                .collect();
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
            col_factor.push(
                (0..m.len())
                    .map(|n| c[n] * ratio(norm_out[n], norm_in[n]))
                    .collect(),
            );
            row_factor.push(
                (0..m.len())
                    .map(|n| c[n] * ratio(norm_in[n], norm_out[n]))
                    .collect(),
            );
        }
        let scale = lr * self.weight as f64;
        for (l, layer) in layers.iter_mut().enumerate() {
            let cols = (l < hidden).then(|| &col_factor[l]);
            let rows = (l > 0).then(|| &row_factor[l - 1]);
            let (col_ptr, row_idx, vals) = layer.w.parts_mut();
            for j in 0..col_ptr.len() - 1 {
                let cj = cols.map_or(0.0, |c| c[j]);
                for k in col_ptr[j]..col_ptr[j + 1] {
                    let ri = rows.map_or(0.0, |r| r[row_idx[k] as usize]);
                    vals[k] -= (scale * (cj + ri)) as f32 * vals[k];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::random_sparse;

    fn layer(n_in: usize, n_out: usize, nnz: u64, seed: u64) -> Layer {
        let mut rng = Rng::new(seed);
        let w = random_sparse(n_in, n_out, nnz, WeightInit::HeUniform, &mut rng).unwrap();
        let mut l = Layer::new(w);
        for (k, m) in l.momentum.iter_mut().enumerate() {
            *m = k as f32 + 1.0;
        }
        for (j, b) in l.bias.iter_mut().enumerate() {
            *b = 0.1 * (j as f32 + 1.0);
        }
        l
    }

    /// (row, col) -> (value, momentum) of every connection.
    fn entries(l: &Layer) -> Vec<(u32, u32, f32, f32)> {
        let w = &l.w;
        (0..w.n_out())
            .flat_map(|j| {
                (w.col_ptr()[j]..w.col_ptr()[j + 1])
                    .map(move |k| (w.row_idx()[k], j as u32, w.values()[k], l.momentum[k]))
            })
            .collect()
    }

    fn pair() -> (Layer, Layer) {
        (layer(30, 20, 180, 1), layer(20, 12, 90, 2))
    }

    fn opts(reinit: Reinit, outgoing: Outgoing) -> RecycleOptions {
        RecycleOptions {
            reinit,
            outgoing,
            interpolate_steps: 0,
        }
    }

    #[test]
    fn selection_rules_pick_among_eligible_with_ties_to_the_lower_index() {
        let scores = [3.0, 1.0, 1.0, 5.0, 0.5, 9.0];
        let eligible = [true, true, true, true, false, true];
        let mut rng = Rng::new(0);
        let mut pick = |r| select_neurons(&scores, &eligible, r, &mut rng).unwrap();
        assert_eq!(pick(Selection::Smallest(2)), vec![1, 2]);
        assert_eq!(pick(Selection::Smallest(3)), vec![0, 1, 2]);
        assert_eq!(pick(Selection::Largest(2)), vec![3, 5]);
        assert_eq!(pick(Selection::AtMost(1.0)), vec![1, 2]);
        assert_eq!(pick(Selection::Smallest(99)), vec![0, 1, 2, 3, 5]);
        let r = pick(Selection::Random(3));
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|&j| eligible[j as usize]));
        let mut rng = Rng::new(0);
        assert!(select_neurons(&[f64::NAN], &[true], Selection::Smallest(1), &mut rng).is_err());
        assert!(select_neurons(&[1.0], &[true, false], Selection::Smallest(1), &mut rng).is_err());
    }

    #[test]
    fn recycling_changes_only_the_chosen_neurons_and_keeps_their_counts() {
        let ids = [3u32, 7, 15];
        for reinit in [
            Reinit::Initial,
            Reinit::MatrixNormal,
            Reinit::Copy,
            Reinit::Zero,
        ] {
            for outgoing in [Outgoing::Reinit, Outgoing::Zero, Outgoing::Keep] {
                let (mut a, mut b) = pair();
                let (a0, b0) = (a.clone(), b.clone());
                let mut rng = Rng::new(5);
                let (rep, blend) = recycle(
                    &mut a,
                    &mut b,
                    0,
                    &ids,
                    opts(reinit, outgoing),
                    WeightInit::HeUniform,
                    &mut rng,
                )
                .unwrap();
                assert!(blend.is_none());
                a.w.check_invariants().unwrap();
                b.w.check_invariants().unwrap();
                assert_eq!((a.nnz(), b.nnz()), (a0.nnz(), b0.nnz()));
                assert_eq!(a.w.fan_in(), a0.w.fan_in());
                assert_eq!(b.w.fan_out(), b0.w.fan_out());
                let mine = |j: u32| ids.contains(&j);
                let kept = |l: &Layer, into: bool| -> Vec<(u32, u32, f32, f32)> {
                    entries(l)
                        .into_iter()
                        .filter(|e| !mine(if into { e.1 } else { e.0 }))
                        .collect()
                };
                assert_eq!(kept(&a, true), kept(&a0, true));
                assert_eq!(kept(&b, false), kept(&b0, false));
                for e in entries(&a).iter().filter(|e| mine(e.1)) {
                    assert_eq!(e.3, 0.0, "momentum of a new incoming connection");
                    if reinit == Reinit::Zero {
                        assert_eq!(e.2, 0.0);
                    }
                }
                for e in entries(&b).iter().filter(|e| mine(e.0)) {
                    match outgoing {
                        Outgoing::Keep => {}
                        Outgoing::Zero => assert_eq!((e.2, e.3), (0.0, 0.0)),
                        Outgoing::Reinit => assert_eq!(e.3, 0.0),
                    }
                }
                if outgoing == Outgoing::Keep {
                    assert_eq!(entries(&b), entries(&b0));
                }
                for j in 0..20 {
                    let want = if mine(j as u32) { 0.0 } else { a0.bias[j] };
                    assert_eq!(a.bias[j], want);
                }
                assert_eq!(b.bias, b0.bias);
                let in_count: usize = ids.iter().map(|&j| a0.w.column(j as usize).0.len()).sum();
                assert_eq!(rep.incoming, in_count);
            }
        }
    }

    #[test]
    fn copy_takes_a_kept_neurons_connections_plus_small_noise() {
        let (mut a, mut b) = pair();
        let a0 = a.clone();
        let std = moments(a0.w.values()).1 as f32;
        let mut rng = Rng::new(9);
        recycle(
            &mut a,
            &mut b,
            0,
            &[4],
            opts(Reinit::Copy, Outgoing::Reinit),
            WeightInit::HeUniform,
            &mut rng,
        )
        .unwrap();
        let (rows, vals) = a.w.column(4);
        // Every new connection sits on a donor's position with the donor's
        // value within 6 sigma of noise, or is noise only.
        let matches_a_donor = (0..20).filter(|&d| d != 4).any(|d| {
            let (dr, dv) = a0.w.column(d);
            rows.iter()
                .zip(vals)
                .all(|(r, v)| match dr.binary_search(r) {
                    Ok(p) => (dv[p] - v).abs() <= 6.0 * 0.05 * std,
                    Err(_) => v.abs() <= 6.0 * 0.05 * std,
                })
        });
        assert!(matches_a_donor);
        let mut rng = Rng::new(9);
        let all: Vec<u32> = (0..20).collect();
        let err = recycle(
            &mut a,
            &mut b,
            0,
            &all,
            opts(Reinit::Copy, Outgoing::Reinit),
            WeightInit::HeUniform,
            &mut rng,
        );
        assert!(err.is_err());
    }

    #[test]
    fn interpolation_keeps_positions_and_reaches_the_new_values() {
        let (mut a, mut b) = pair();
        let (a0, b0) = (a.clone(), b.clone());
        let mut rng = Rng::new(5);
        let o = RecycleOptions {
            interpolate_steps: 8,
            ..opts(Reinit::Initial, Outgoing::Reinit)
        };
        let (_, blend) = recycle(
            &mut a,
            &mut b,
            0,
            &[2, 9],
            o,
            WeightInit::HeUniform,
            &mut rng,
        )
        .unwrap();
        let mut blend = blend.unwrap();
        // α = 0: same weights and positions, momentum of touched connections zero.
        assert_eq!(a.w, a0.w);
        assert_eq!(b.w, b0.w);
        for e in entries(&a).iter().filter(|e| e.1 == 2 || e.1 == 9) {
            assert_eq!(e.3, 0.0);
        }
        let mut layers = vec![a, b];
        let start = layers.clone();
        blend.advance(&mut layers, 1);
        let one = layers.clone();
        blend.advance(&mut layers, 100);
        assert_eq!(blend.steps_left, 0);
        let bound = (6.0f32 / 30.0).sqrt();
        for e in &blend.weights {
            let k = e.k;
            let (w0, w1, wt) = (
                start[e.layer].w.values()[k],
                one[e.layer].w.values()[k],
                layers[e.layer].w.values()[k],
            );
            // linear: after T steps the value is old + T·(one step)
            assert!((wt - (w0 + 8.0 * (w1 - w0))).abs() < 1e-5);
            if e.layer == 0 {
                assert!(wt.abs() <= bound + 1e-5, "He-uniform target {wt}");
            }
        }
        assert!(layers[0].bias[2].abs() < 1e-6 && layers[0].bias[9].abs() < 1e-6);
        let a0 = &start[0];
        for j in (0..20).filter(|&j| j != 2 && j != 9) {
            assert_eq!(layers[0].w.column(j), a0.w.column(j));
            assert_eq!(layers[0].bias[j], a0.bias[j]);
        }
    }

    #[test]
    fn midpoint_step_follows_the_gradient_of_its_loss() {
        for (median, l2) in [(false, true), (true, false), (false, false)] {
            let layers = vec![layer(10, 8, 40, 1), layer(8, 6, 30, 2), layer(6, 3, 18, 3)];
            let mp = Midpoint {
                weight: 1.0,
                median,
                l2,
            };
            let lr = 1e-3;
            let mut stepped = layers.clone();
            mp.step(&mut stepped, lr);
            // finite differences of the loss with the midpoint held fixed
            let mids: Vec<f64> = (0..2)
                .map(|h| mp.centre(&neuron_magnitudes(&layers[h].w, &layers[h + 1].w)))
                .collect();
            let loss = |ls: &[Layer]| -> f64 {
                (0..2)
                    .map(|h| {
                        neuron_magnitudes(&ls[h].w, &ls[h + 1].w)
                            .iter()
                            .map(|&x| {
                                if l2 {
                                    (x - mids[h]).powi(2)
                                } else {
                                    (x - mids[h]).abs()
                                }
                            })
                            .sum::<f64>()
                    })
                    .sum()
            };
            for l in 0..3 {
                for k in (0..layers[l].nnz()).step_by(7) {
                    let eps = 1e-3f32;
                    let mut plus = layers.clone();
                    plus[l].w.values_mut()[k] += eps;
                    let mut minus = layers.clone();
                    minus[l].w.values_mut()[k] -= eps;
                    let g = (loss(&plus) - loss(&minus)) / (2.0 * eps as f64);
                    let moved = (layers[l].w.values()[k] - stepped[l].w.values()[k]) as f64 / lr;
                    assert!(
                        (moved - g).abs() < 2e-2 * (1.0 + g.abs()),
                        "layer {l} k {k}: {moved} vs {g}"
                    );
                }
            }
        }
    }

    #[test]
    fn activity_records_mean_absolute_activation_and_utility() {
        let next = random_sparse(3, 2, 4, WeightInit::HeUniform, &mut Rng::new(1)).unwrap();
        let mut act = Activity::new(&[3], Some(0.5));
        let block = [1.0f32, -3.0, 0.0, 0.0, 2.0, 2.0]; // 3 neurons x 2 samples
        act.record(&[&block], &[&next], 2);
        act.record(&[&block], &[&next], 2);
        assert_eq!(act.mean_abs(0), vec![2.0, 0.0, 2.0]);
        let out = outgoing_abs_sums(&next);
        for (j, m) in [2.0, 0.0, 2.0].iter().enumerate() {
            let u = 0.5 * (0.5 * m * out[j]) + 0.5 * m * out[j];
            assert!((act.utility[0][j] - u).abs() < 1e-12);
        }
        act.restart(0, &[true, false, false]);
        assert_eq!(act.mean_abs(0)[0], 0.0);
        act.compact(0, &[true, false, true]);
        assert_eq!(act.sum_abs[0].len(), 2);
    }
}
