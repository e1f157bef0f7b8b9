//! A sparse MLP: its layers, hidden activations, loss and random state, and
//! the whole epoch loop over mini-batches.

use rayon::prelude::*;

use crate::activation::Activation;
use crate::csc::{SparseMatrix, MAX_INDEX};
use crate::error::{invalid, CoreError, Result};
use crate::init::{random_sparse, WeightInit};
use crate::kernels;
use crate::layer::Layer;
use crate::loss::{BatchLoss, BatchTarget, Loss};
use crate::optim::{Optimizer, OPTIMIZER_NAMES};
use crate::precision::{widen_row, Bf16, Precision, Stored};
use crate::profile::{Laps, Profile};
use crate::recycle::{
    self, Activity, Blend, Midpoint, RecycleOptions, RecycleReport, RecyclingState, SavedBlend,
    Selection,
};
use crate::regrowth::{self, Search, Update, Window};
use crate::rigl;
use crate::rng::Rng;
use crate::simd::multiversion;
use crate::topology::{self, SetStep};

/// What a new network looks like. `nnz[l]` is the connection count of layer
/// `l` (the caller turns ε or a density into counts, see [`crate::init::er_nnz`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSpec {
    pub sizes: Vec<usize>,
    pub nnz: Vec<u64>,
    /// One activation per hidden layer.
    pub hidden: Vec<Activation>,
    pub loss: Loss,
    /// Dropout probability of hidden units during training.
    pub dropout: f32,
    pub init: WeightInit,
    pub seed: u64,
}

/// The random and bookkeeping state that, with the layers, makes a training
/// run resumable exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunState {
    pub seed: u64,
    pub rng: [u64; 4],
    /// Mini-batches trained so far (keys the dropout masks).
    pub step: u64,
    /// Bumped by every topology change.
    pub topology_version: u64,
    /// The optimizer whose moments the layers hold ("sgd", "adam", "adamw").
    pub optimizer: &'static str,
    /// Steps that optimizer has taken (Adam's `t`).
    pub optimizer_steps: u64,
}

/// The canonical name of optimizer `name`, if the core knows it.
pub fn optimizer_name(name: &str) -> Result<&'static str> {
    match OPTIMIZER_NAMES.iter().find(|&&n| n == name) {
        Some(n) => Ok(n),
        None => invalid!(
            "unknown optimizer {name:?}; known: {}",
            OPTIMIZER_NAMES.join(", ")
        ),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub optimizer: Optimizer,
    pub shuffle: bool,
    /// A plain gradient step on the midpoint loss after each update (SPEC §7).
    pub midpoint: Option<Midpoint>,
    /// The learning rate of each mini-batch of the call, in order (a
    /// schedule's); empty: the optimizer's rate for all.
    pub rates: Vec<f32>,
}

impl TrainConfig {
    pub fn new(batch_size: usize, optimizer: Optimizer) -> Self {
        TrainConfig {
            batch_size,
            optimizer,
            shuffle: true,
            midpoint: None,
            rates: Vec::new(),
        }
    }

    fn rate(&self, batch: usize) -> f32 {
        self.rates
            .get(batch)
            .copied()
            .unwrap_or(self.optimizer.learning_rate)
    }

    fn check_rates(&self, batches: usize) -> Result<()> {
        if !self.rates.is_empty() && self.rates.len() < batches {
            invalid!(
                "{} learning rates given for {batches} mini-batches",
                self.rates.len()
            );
        }
        if let Some(p) = self.rates.iter().position(|r| !(r.is_finite() && *r > 0.0)) {
            invalid!(
                "the learning rate of mini-batch {p} is {}; rates must be positive and finite",
                self.rates[p]
            );
        }
        Ok(())
    }
}

/// What the outputs are trained toward.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// One class index per sample.
    Classes(&'a [u32]),
    /// `n × c` values, sample-major (regression).
    Values(&'a [f32]),
}

/// The targets of a set of samples, with optional per-sample weights (the
/// loss of sample `s` counts `weights[s]` times).
#[derive(Clone, Copy, Debug)]
pub struct Targets<'a> {
    pub target: Target<'a>,
    pub weights: Option<&'a [f32]>,
}

impl<'a> Targets<'a> {
    pub fn classes(labels: &'a [u32]) -> Self {
        Targets {
            target: Target::Classes(labels),
            weights: None,
        }
    }
    pub fn values(values: &'a [f32]) -> Self {
        Targets {
            target: Target::Values(values),
            weights: None,
        }
    }
    pub fn weighted(self, weights: Option<&'a [f32]>) -> Self {
        Targets { weights, ..self }
    }
}

/// Running means over the mini-batches of one epoch (training mode, so with
/// dropout), like Keras reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EpochStats {
    pub loss: f64,
    pub accuracy: f64,
    pub samples: usize,
    pub batches: usize,
    /// The stop callback asked to end the epoch early.
    pub interrupted: bool,
}

/// The training buffers stored in the network's precision.
#[derive(Clone, Debug, Default)]
struct Buffers<T> {
    /// Feature-major inputs of every layer: `acts[0]` is the input batch,
    /// `acts[l]` hidden layer `l`'s output.
    acts: Vec<Vec<T>>,
    /// `f'(z) · dropout mask / (1-p)` per hidden layer.
    dfac: Vec<Vec<T>>,
    delta: [Vec<T>; 2],
}

impl<T: Stored> Buffers<T> {
    fn new(sizes: &[usize], batch: usize) -> Self {
        let max = *sizes.iter().max().unwrap_or(&0);
        let zeros = |n: usize| vec![T::default(); n * batch];
        Buffers {
            acts: sizes[..sizes.len() - 1].iter().map(|&n| zeros(n)).collect(),
            dfac: sizes[1..sizes.len() - 1]
                .iter()
                .map(|&n| zeros(n))
                .collect(),
            delta: [zeros(max), zeros(max)],
        }
    }

    fn len(&self) -> usize {
        self.acts
            .iter()
            .chain(&self.dfac)
            .chain(&self.delta)
            .map(Vec::len)
            .sum()
    }
}

/// The float32 buffers of a batch, whatever the precision.
#[derive(Clone, Debug, Default)]
struct BatchIo {
    /// The output layer's outputs (`c × b`).
    logits: Vec<f32>,
    /// The loss's error at the outputs before it is rounded to bfloat16
    /// (empty in float32, where the loss writes the first error block).
    out_delta: Vec<f32>,
    labels: Vec<u32>,
    /// Regression targets of the batch, feature-major (`c × b`).
    values: Vec<f32>,
    weights: Vec<f32>,
}

#[derive(Clone, Debug, Default)]
struct Workspace {
    /// Samples per batch the buffers hold.
    batch: usize,
    sizes: Vec<usize>,
    precision: Precision,
    f32: Buffers<f32>,
    bf16: Buffers<Bf16>,
    io: BatchIo,
}

/// The stored types a network trains in, with their buffers in a workspace.
trait Precise: kernels::Element {
    fn parts(ws: &mut Workspace) -> (&mut Buffers<Self>, &mut BatchIo);
}

impl Precise for f32 {
    fn parts(ws: &mut Workspace) -> (&mut Buffers<f32>, &mut BatchIo) {
        (&mut ws.f32, &mut ws.io)
    }
}

impl Precise for Bf16 {
    fn parts(ws: &mut Workspace) -> (&mut Buffers<Bf16>, &mut BatchIo) {
        (&mut ws.bf16, &mut ws.io)
    }
}

/// `$body` with `$t` the stored type of `$precision` (a generic call made concrete).
macro_rules! with_precision {
    ($precision:expr, $t:ident => $body:expr) => {
        match $precision {
            Precision::Float32 => {
                type $t = f32;
                $body
            }
            Precision::Bfloat16 => {
                type $t = Bf16;
                $body
            }
        }
    };
}

/// Which of the workspace's target buffers the batch filled.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Filled {
    Classes,
    Values,
}

impl Workspace {
    /// Whether the buffers are those of this network and precision for at
    /// least `batch` samples.
    fn holds(&self, sizes: &[usize], precision: Precision, batch: usize) -> bool {
        self.sizes == sizes && self.precision == precision && self.batch >= batch
    }

    fn fit(&mut self, sizes: &[usize], precision: Precision, batch: usize) {
        if self.holds(sizes, precision, batch) {
            return;
        }
        let batch = if self.sizes == sizes && self.precision == precision {
            batch.max(self.batch)
        } else {
            batch
        };
        let c = sizes[sizes.len() - 1];
        (self.f32, self.bf16) = match precision {
            Precision::Float32 => (Buffers::new(sizes, batch), Buffers::default()),
            Precision::Bfloat16 => (Buffers::default(), Buffers::new(sizes, batch)),
        };
        self.io = BatchIo {
            logits: vec![0.0; c * batch],
            out_delta: match precision {
                Precision::Float32 => Vec::new(),
                Precision::Bfloat16 => vec![0.0; c * batch],
            },
            labels: vec![0; batch],
            values: Vec::new(),
            weights: Vec::new(),
        };
        self.sizes = sizes.to_vec();
        self.precision = precision;
        self.batch = batch;
    }

    /// Bytes of every buffer.
    fn bytes(&self) -> usize {
        let io = &self.io;
        let exact = [&io.logits, &io.out_delta, &io.values, &io.weights].map(|v| v.len());
        4 * (self.f32.len() + io.labels.len() + exact.iter().sum::<usize>()) + 2 * self.bf16.len()
    }
}

/// Bytes of buffers inference may use by default (see [`Network::inference_batch`]).
pub const INFERENCE_BUDGET: u64 = 256 << 20;

#[derive(Clone, Debug)]
pub struct Network {
    layers: Vec<Layer>,
    hidden: Vec<Activation>,
    loss: Loss,
    dropout: f32,
    init: WeightInit,
    seed: u64,
    rng: Rng,
    step: u64,
    topology_version: u64,
    optimizer: &'static str,
    optimizer_steps: u64,
    ws: Workspace,
    /// Pending interpolations of recycled neurons.
    blends: Vec<Blend>,
    /// Activation statistics, gathered only while a strategy asks for them.
    activity: Option<Activity>,
    /// Per hidden layer, neurons whose connections SET must not prune
    /// (empty: none).
    protected: Vec<Vec<bool>>,
    /// Seconds per part of training, while profiling is on.
    profile: Option<Profile>,
    /// What activations, their derivative factors and errors are stored as.
    precision: Precision,
    /// RigL's open update window: backward passes feed it.
    rigl: Option<Window>,
}

/// Converts integer class labels to the core's u32 labels, checking that each
/// is in `0..n_classes`.
pub fn labels_from_i64(labels: &[i64], n_classes: usize) -> Result<Vec<u32>> {
    if let Some(p) = labels
        .iter()
        .position(|&y| y < 0 || y as u64 >= n_classes as u64)
    {
        invalid!(
            "label {} at sample {p} is out of range: labels must be integers in 0..{} for {n_classes} classes",
            labels[p],
            n_classes.saturating_sub(1)
        );
    }
    Ok(labels.iter().map(|&y| y as u32).collect())
}

fn check_config(sizes: &[usize], hidden: &[Activation], loss: Loss, dropout: f32) -> Result<()> {
    if sizes.len() < 2 {
        invalid!("a network needs at least an input and an output layer, got sizes {sizes:?}");
    }
    if let Some(p) = sizes.iter().position(|&n| n == 0 || n > MAX_INDEX) {
        invalid!(
            "layer {p} has {} neurons; sizes must be between 1 and {MAX_INDEX}",
            sizes[p]
        );
    }
    if hidden.len() != sizes.len() - 2 {
        invalid!(
            "{} activations given for {} hidden layers",
            hidden.len(),
            sizes.len() - 2
        );
    }
    if loss == Loss::CrossEntropy && sizes[sizes.len() - 1] < 2 {
        invalid!(
            "cross-entropy needs at least 2 output classes, got {}",
            sizes[sizes.len() - 1]
        );
    }
    if !(0.0..1.0).contains(&dropout) {
        invalid!("dropout must be in [0, 1), got {dropout}");
    }
    Ok(())
}

impl Network {
    pub fn new(spec: NetworkSpec) -> Result<Self> {
        check_config(&spec.sizes, &spec.hidden, spec.loss, spec.dropout)?;
        if spec.nnz.len() != spec.sizes.len() - 1 {
            invalid!(
                "{} connection counts given for {} layers",
                spec.nnz.len(),
                spec.sizes.len() - 1
            );
        }
        let mut rng = Rng::new(spec.seed);
        let mut layers = Vec::with_capacity(spec.nnz.len());
        for (l, &nnz) in spec.nnz.iter().enumerate() {
            let (n_in, n_out) = (spec.sizes[l], spec.sizes[l + 1]);
            let w = random_sparse(n_in, n_out, nnz, spec.init, &mut rng)
                .map_err(|e| CoreError::InvalidInput(format!("layer {l}: {e}")))?;
            layers.push(Layer::new(w));
        }
        Ok(Network {
            layers,
            hidden: spec.hidden,
            loss: spec.loss,
            dropout: spec.dropout,
            init: spec.init,
            seed: spec.seed,
            rng,
            step: 0,
            topology_version: 0,
            optimizer: "sgd",
            optimizer_steps: 0,
            ws: Workspace::default(),
            blends: Vec::new(),
            activity: None,
            protected: Vec::new(),
            rigl: None,
            profile: None,
            precision: Precision::Float32,
        })
    }

    /// Reassembles a network from saved layers and state, checking that the
    /// layers chain (outputs of one = inputs of the next).
    pub fn from_layers(
        layers: Vec<Layer>,
        hidden: Vec<Activation>,
        loss: Loss,
        dropout: f32,
        init: WeightInit,
        state: RunState,
    ) -> Result<Self> {
        if layers.is_empty() {
            invalid!("a network needs at least one layer");
        }
        for (l, pair) in layers.windows(2).enumerate() {
            if pair[0].w.n_out() != pair[1].w.n_in() {
                invalid!(
                    "layer {l} has {} outputs but layer {} has {} inputs",
                    pair[0].w.n_out(),
                    l + 1,
                    pair[1].w.n_in()
                );
            }
        }
        let mut sizes = vec![layers[0].w.n_in()];
        sizes.extend(layers.iter().map(|l| l.w.n_out()));
        check_config(&sizes, &hidden, loss, dropout)?;
        let Some(rng) = Rng::from_state(state.rng) else {
            invalid!("the random generator state is all zeros");
        };
        let adam = optimizer_name(state.optimizer)? != "sgd";
        if let Some(l) = layers.iter().position(|l| l.has_second() != adam) {
            invalid!(
                "layer {l} {} second moments, but the saved optimizer is {}",
                if adam { "has no" } else { "has" },
                state.optimizer
            );
        }
        Ok(Network {
            layers,
            hidden,
            loss,
            dropout,
            init,
            seed: state.seed,
            rng,
            step: state.step,
            topology_version: state.topology_version,
            optimizer: state.optimizer,
            optimizer_steps: state.optimizer_steps,
            ws: Workspace::default(),
            blends: Vec::new(),
            activity: None,
            protected: Vec::new(),
            rigl: None,
            profile: None,
            precision: Precision::Float32,
        })
    }

    pub fn sizes(&self) -> Vec<usize> {
        let mut s = vec![self.layers[0].w.n_in()];
        s.extend(self.layers.iter().map(|l| l.w.n_out()));
        s
    }
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    pub fn layer_mut(&mut self, l: usize) -> Result<&mut Layer> {
        let n = self.layers.len();
        match self.layers.get_mut(l) {
            Some(layer) => Ok(layer),
            None => invalid!("layer index {l} out of range for a network of {n} layers"),
        }
    }
    pub fn hidden_activations(&self) -> &[Activation] {
        &self.hidden
    }
    pub fn loss(&self) -> Loss {
        self.loss
    }
    pub fn dropout(&self) -> f32 {
        self.dropout
    }
    pub fn weight_init(&self) -> WeightInit {
        self.init
    }
    pub fn n_features(&self) -> usize {
        self.layers[0].w.n_in()
    }
    pub fn n_outputs(&self) -> usize {
        self.layers[self.layers.len() - 1].w.n_out()
    }
    pub fn n_connections(&self) -> usize {
        self.layers.iter().map(|l| l.nnz()).sum()
    }
    pub fn run_state(&self) -> RunState {
        RunState {
            seed: self.seed,
            rng: self.rng.state(),
            step: self.step,
            topology_version: self.topology_version,
            optimizer: self.optimizer,
            optimizer_steps: self.optimizer_steps,
        }
    }
    /// Bytes of parameters, optimizer state and work buffers.
    pub fn memory_bytes(&self) -> usize {
        self.parameter_bytes() + self.ws.bytes()
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Stores activations, derivative factors and errors in `precision` from
    /// now on, in training and inference (the buffers of the other are freed).
    pub fn set_precision(&mut self, precision: Precision) {
        if precision != self.precision {
            self.precision = precision;
            self.ws = Workspace::default();
        }
    }

    /// Checks the targets (every label names an output class, values are
    /// finite and `c` per sample, weights finite, not negative, one per
    /// sample) and that `x` holds as many rows of `n_features` floats.
    /// Returns the number of samples.
    pub fn check_targets(&self, x: &[f32], targets: &Targets) -> Result<usize> {
        let c = self.n_outputs();
        let n = match targets.target {
            Target::Classes(labels) => {
                if let Some(p) = labels.iter().position(|&y| y as usize >= c) {
                    invalid!(
                        "label {} at sample {p} is out of range for {c} classes (labels must be 0..{})",
                        labels[p],
                        c - 1
                    );
                }
                labels.len()
            }
            Target::Values(v) => {
                if v.len() % c != 0 {
                    invalid!("{} target values do not make rows of {c} outputs", v.len());
                }
                if let Some(p) = v.iter().position(|t| !t.is_finite()) {
                    invalid!(
                        "target value {} at sample {}, output {}",
                        v[p],
                        p / c,
                        p % c
                    );
                }
                v.len() / c
            }
        };
        if let Some(w) = targets.weights {
            if w.len() != n {
                invalid!("{} sample weights given for {n} samples", w.len());
            }
            if let Some(p) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
                invalid!(
                    "sample weight {} at sample {p}: weights must be finite and not negative",
                    w[p]
                );
            }
        }
        self.check_inputs(x, n)?;
        Ok(n)
    }

    /// Copies the targets (and weights) of samples `idx(0..b)` into the
    /// workspace's batch buffers.
    fn gather_targets(
        &mut self,
        targets: &Targets,
        idx: impl Fn(usize) -> usize,
        b: usize,
    ) -> Filled {
        let c = *self.ws.sizes.last().unwrap_or(&0);
        let batch = self.ws.batch;
        let ws = &mut self.ws.io;
        match targets.weights {
            Some(w) => {
                ws.weights.resize(batch, 0.0);
                for s in 0..b {
                    ws.weights[s] = w[idx(s)];
                }
            }
            None => ws.weights.clear(),
        }
        match targets.target {
            Target::Classes(labels) => {
                for s in 0..b {
                    ws.labels[s] = labels[idx(s)];
                }
                Filled::Classes
            }
            Target::Values(v) => {
                ws.values.resize(c * batch, 0.0);
                for s in 0..b {
                    let row = &v[idx(s) * c..(idx(s) + 1) * c];
                    for (k, &t) in row.iter().enumerate() {
                        ws.values[k * b + s] = t;
                    }
                }
                Filled::Values
            }
        }
    }

    /// Makes the layers hold `opt`'s moments: a different optimizer than
    /// the one that trained them starts from zero moments (SGD's velocity is
    /// not Adam's mean gradient) and its own step count.
    fn use_optimizer(&mut self, opt: &Optimizer) {
        let name = opt.method.name();
        if name == self.optimizer {
            return;
        }
        for l in &mut self.layers {
            l.momentum.iter_mut().for_each(|m| *m = 0.0);
            l.bias_momentum.iter_mut().for_each(|m| *m = 0.0);
            l.keep_second(false);
            l.keep_second(opt.method.has_second_moment());
        }
        self.optimizer = name;
        self.optimizer_steps = 0;
    }

    /// The optimizer whose moments the layers hold.
    /// Starts (`true`, from zero) or stops timing the parts of training
    /// (see [`Profile`]).
    pub fn set_profiling(&mut self, enabled: bool) {
        self.profile = enabled.then(|| Profile::new(self.layers.len()));
    }

    /// The seconds per part of training since profiling started, if it is on.
    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_ref()
    }

    pub fn optimizer(&self) -> &'static str {
        self.optimizer
    }

    fn check_inputs(&self, x: &[f32], n: usize) -> Result<()> {
        let f = self.n_features();
        if x.len() != n * f {
            invalid!(
                "X has {} values, expected {n} samples x {f} features",
                x.len()
            );
        }
        Ok(())
    }

    /// Trains one epoch: shuffles the sample order (when asked), then for each
    /// mini-batch runs forward, loss, backward and the SGD update. Calls
    /// `stop(batches_done)` before each batch; when it returns true the epoch
    /// ends there, with the model consistent.
    pub fn train_epoch(
        &mut self,
        x: &[f32],
        targets: &Targets,
        cfg: &TrainConfig,
        stop: &mut dyn FnMut(usize) -> bool,
    ) -> Result<EpochStats> {
        let n = self.check_targets(x, targets)?;
        let order = self.epoch_order(n, cfg.shuffle)?;
        self.train_order(x, targets, &order, cfg, stop)
    }

    /// The sample order of an epoch: `0..n`, shuffled with the network's
    /// random stream when asked (exactly what [`Self::train_epoch`] draws).
    pub fn epoch_order(&mut self, n: usize, shuffle: bool) -> Result<Vec<u32>> {
        if n > MAX_INDEX {
            invalid!("{n} samples exceed the 32-bit limit of one training set");
        }
        let mut order: Vec<u32> = (0..n as u32).collect();
        if shuffle {
            self.rng.shuffle(&mut order);
        }
        Ok(order)
    }

    /// Trains on the samples `order` lists, in mini-batches of
    /// `cfg.batch_size` in that order (`cfg.shuffle` is not used). A caller
    /// that splits an epoch's order at batch boundaries gets the same result
    /// as one call with the whole order.
    pub fn train_order(
        &mut self,
        x: &[f32],
        targets: &Targets,
        order: &[u32],
        cfg: &TrainConfig,
        stop: &mut dyn FnMut(usize) -> bool,
    ) -> Result<EpochStats> {
        let n = self.check_targets(x, targets)?;
        if n == 0 || order.is_empty() {
            invalid!("no training samples");
        }
        if cfg.batch_size == 0 {
            invalid!("batch_size must be at least 1");
        }
        if let Some(p) = order.iter().position(|&s| s as usize >= n) {
            invalid!(
                "sample order entry {p} is {}, beyond the {n} samples",
                order[p]
            );
        }
        let bs = cfg.batch_size.min(order.len());
        cfg.check_rates(order.len().div_ceil(bs))?;
        self.use_optimizer(&cfg.optimizer);
        self.ws.fit(&self.sizes(), self.precision, bs);
        let n_layers = self.layers.len();
        let mut profile = self.profile.take().map(|p| match p.forward.len() {
            n if n == n_layers => p,
            _ => Profile::new(n_layers),
        });
        let result = self.train_batches(x, targets, order, bs, cfg, stop, profile.as_mut());
        self.profile = profile;
        result
    }

    /// The mini-batches of [`Self::train_order`], checked, timed into
    /// `profile` when there is one.
    #[allow(clippy::too_many_arguments)]
    fn train_batches(
        &mut self,
        x: &[f32],
        targets: &Targets,
        order: &[u32],
        bs: usize,
        cfg: &TrainConfig,
        stop: &mut dyn FnMut(usize) -> bool,
        profile: Option<&mut Profile>,
    ) -> Result<EpochStats> {
        let mut laps = Laps::new(profile);
        let mut stats = EpochStats::default();
        let mut loss_sum = 0.0f64;
        let mut correct = 0usize;
        for (bi, chunk) in order.chunks(bs).enumerate() {
            if stop(bi) {
                stats.interrupted = true;
                break;
            }
            let b = chunk.len();
            let f = self.n_features();
            laps.lap(|p| &mut p.other);
            self.gather_inputs(x, f, &|s| chunk[s] as usize, b);
            let filled = self.gather_targets(targets, |s| chunk[s] as usize, b);
            laps.lap(|p| &mut p.gather);
            let r = self.forward_backward(b, true, filled, &mut laps);
            if !r.loss_sum.is_finite() {
                return Err(CoreError::Diverged {
                    batch: bi,
                    loss: r.loss_sum / b as f64,
                });
            }
            self.record_activity(b);
            laps.lap(|p| &mut p.other);
            let lr = cfg.rate(bi);
            self.apply_gradients(&cfg.optimizer, lr);
            laps.lap(|p| &mut p.step);
            self.advance_blends();
            if let Some(mp) = &cfg.midpoint {
                mp.step(&mut self.layers, lr as f64);
            }
            laps.lap(|p| &mut p.other);
            laps.batch();
            self.step += 1;
            loss_sum += r.loss_sum;
            correct += r.correct;
            stats.samples += b;
            stats.batches += 1;
        }
        if stats.samples > 0 {
            stats.loss = loss_sum / stats.samples as f64;
            stats.accuracy = correct as f64 / stats.samples as f64;
        }
        Ok(stats)
    }

    /// Gradients of the mean loss over the given samples taken as one batch,
    /// left in each layer's `grad` and `bias_grad`. With `dropout`, the masks
    /// of the current step are used. Returns the batch loss sums.
    pub fn compute_gradients(
        &mut self,
        x: &[f32],
        targets: &Targets,
        dropout: bool,
    ) -> Result<BatchLoss> {
        let b = self.check_targets(x, targets)?;
        if b == 0 {
            invalid!("no samples to compute gradients on");
        }
        self.ws.fit(&self.sizes(), self.precision, b);
        self.gather_inputs(x, self.n_features(), &|s| s, b);
        let filled = self.gather_targets(targets, |s| s, b);
        Ok(self.forward_backward(b, dropout, filled, &mut Laps::new(None)))
    }

    /// One optimizer step at learning rate `lr` from the gradients in the layers.
    pub fn apply_gradients(&mut self, opt: &Optimizer, lr: f32) {
        self.use_optimizer(opt);
        self.optimizer_steps += 1;
        let t = self.optimizer_steps;
        for layer in &mut self.layers {
            let (w, m, v) = (layer.w.values_mut(), &mut layer.momentum, &mut layer.second);
            opt.step(lr, t, w, m, v, &layer.grad);
            let (b, m, v) = (
                &mut layer.bias,
                &mut layer.bias_momentum,
                &mut layer.bias_second,
            );
            opt.step_bias(lr, t, b, m, v, &layer.bias_grad);
        }
    }

    /// Gradients of one training mini-batch (dropout on, with this step's
    /// masks), left in the layers; then advances the step, so the next batch
    /// draws new masks. What a data-parallel worker does instead of a step.
    pub fn gradient_step(&mut self, x: &[f32], targets: &Targets) -> Result<BatchLoss> {
        let r = self.compute_gradients(x, targets, true)?;
        self.step += 1;
        Ok(r)
    }

    /// Floats in the packed layout of the parameters: per layer its connection
    /// values (CSC order), then its bias. Gradients pack the same way.
    pub fn packed_len(&self) -> usize {
        self.layers.iter().map(|l| l.nnz() + l.bias.len()).sum()
    }

    fn check_packed(&self, len: usize, what: &str) -> Result<()> {
        let want = self.packed_len();
        if len != want {
            invalid!("{what} holds {len} floats; this network packs {want} (values and biases)");
        }
        Ok(())
    }

    /// Copies the connection values and biases into `out` (packed layout).
    pub fn pack_params(&self, out: &mut [f32]) -> Result<()> {
        self.check_packed(out.len(), "the parameter buffer")?;
        let mut rest = out;
        for l in &self.layers {
            for src in [l.w.values(), &l.bias[..]] {
                let (head, tail) = rest.split_at_mut(src.len());
                head.copy_from_slice(src);
                rest = tail;
            }
        }
        Ok(())
    }

    /// Replaces the connection values and biases from `src` (packed layout);
    /// the topology, momentum and random state stay.
    pub fn unpack_params(&mut self, src: &[f32]) -> Result<()> {
        self.check_packed(src.len(), "the parameter buffer")?;
        let mut rest = src;
        for l in &mut self.layers {
            let (w, tail) = rest.split_at(l.nnz());
            l.w.values_mut().copy_from_slice(w);
            let (b, tail) = tail.split_at(l.bias.len());
            l.bias.copy_from_slice(b);
            rest = tail;
        }
        Ok(())
    }

    /// Copies the gradients left by the last backward pass into `out` (packed layout).
    pub fn pack_gradients(&self, out: &mut [f32]) -> Result<()> {
        self.check_packed(out.len(), "the gradient buffer")?;
        let mut rest = out;
        for l in &self.layers {
            for src in [&l.grad[..], &l.bias_grad[..]] {
                let (head, tail) = rest.split_at_mut(src.len());
                head.copy_from_slice(src);
                rest = tail;
            }
        }
        Ok(())
    }

    /// One optimizer step at learning rate `lr`, in place, from a packed
    /// gradient computed elsewhere (a worker's). A gradient holding NaN or
    /// inf is refused before anything changes.
    pub fn apply_packed_gradient(&mut self, g: &[f32], opt: &Optimizer, lr: f32) -> Result<()> {
        self.check_packed(g.len(), "the gradient")?;
        if let Some(k) = g.iter().position(|v| !v.is_finite()) {
            invalid!("the gradient holds {} at packed position {k}", g[k]);
        }
        if !(lr.is_finite() && lr > 0.0) {
            invalid!("the learning rate must be positive and finite, got {lr}");
        }
        self.use_optimizer(opt);
        self.optimizer_steps += 1;
        let t = self.optimizer_steps;
        let mut rest = g;
        for l in &mut self.layers {
            let (gw, tail) = rest.split_at(l.nnz());
            opt.step(lr, t, l.w.values_mut(), &mut l.momentum, &mut l.second, gw);
            let (gb, tail) = tail.split_at(l.bias.len());
            opt.step_bias(
                lr,
                t,
                &mut l.bias,
                &mut l.bias_momentum,
                &mut l.bias_second,
                gb,
            );
            rest = tail;
        }
        Ok(())
    }

    /// Restarts the random streams (shuffling, SET, dropout masks) from
    /// `seed`, e.g. so data-parallel replicas of one model draw differently.
    pub fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        self.rng = Rng::new(seed);
    }

    /// Copies samples `idx(0..b)` of the row-major `x` (`n × f`) into the
    /// input block of the training buffers.
    fn gather_inputs(
        &mut self,
        x: &[f32],
        f: usize,
        idx: &(dyn Fn(usize) -> usize + Sync),
        b: usize,
    ) {
        with_precision!(self.precision, T => gather(x, f, idx, b, &mut T::parts(&mut self.ws).0.acts[0]))
    }

    fn forward_backward(
        &mut self,
        b: usize,
        train_dropout: bool,
        filled: Filled,
        laps: &mut Laps<'_>,
    ) -> BatchLoss {
        with_precision!(self.precision, T => self.forward_backward_in::<T>(b, train_dropout, filled, laps))
    }

    fn forward_backward_in<T: Precise>(
        &mut self,
        b: usize,
        train_dropout: bool,
        filled: Filled,
        laps: &mut Laps<'_>,
    ) -> BatchLoss {
        let p = if train_dropout { self.dropout } else { 0.0 };
        let keys = DropoutKeys {
            seed: self.seed,
            step: self.step,
            p,
        };
        let l_out = self.layers.len();
        let c = self.n_outputs();
        let (bufs, io) = T::parts(&mut self.ws);
        forward_all(
            &self.layers,
            &self.hidden,
            bufs,
            &mut io.logits,
            b,
            keys,
            laps,
        );
        let BatchIo {
            logits,
            out_delta,
            labels,
            values,
            weights,
        } = io;
        let [d0, d1] = &mut bufs.delta;
        let target = match filled {
            Filled::Classes => BatchTarget::Classes(&labels[..b]),
            Filled::Values => BatchTarget::Values(&values[..c * b]),
        };
        let weights = (!weights.is_empty()).then(|| &weights[..b]);
        let logits = &mut logits[..c * b];
        // the loss writes its error in float32: into the first error block
        // when that is float32, else into `out_delta`, then rounded into it
        let mut r = BatchLoss::default();
        kernels::in_f32(&mut d0[..c * b], out_delta, |d| {
            r = self.loss.output(logits, c, b, target, weights, Some(d));
        });
        laps.lap(|p| &mut p.loss);
        let (mut cur, mut next) = (d0, d1);
        for l in (0..l_out).rev() {
            let layer = &mut self.layers[l];
            let (n_in, n_out) = (layer.w.n_in(), layer.w.n_out());
            let input = &bufs.acts[l][..n_in * b];
            let delta_out = &cur[..n_out * b];
            kernels::bias_grad(delta_out, b, &mut layer.bias_grad);
            laps.lap(|p| &mut p.bias[l]);
            let delta_in = (l > 0).then(|| (&mut next[..n_in * b], &bufs.dfac[l - 1][..n_in * b]));
            kernels::backward(&layer.w, input, delta_out, b, &mut layer.grad, delta_in);
            if let Some(window) = &mut self.rigl {
                window.gather(l, &layer.w, input, delta_out, b);
            }
            laps.lap(|p| &mut p.backward[l]);
            if l > 0 {
                std::mem::swap(&mut cur, &mut next);
            }
        }
        if let Some(window) = &mut self.rigl {
            window.batches += 1;
        }
        r
    }

    /// Mean loss and accuracy on a data set, in inference mode (no dropout),
    /// in chunks of `batch` samples.
    /// With weights, the loss is `Σ wₛ lₛ / n` and accuracy counts samples unweighted.
    pub fn evaluate(&mut self, x: &[f32], targets: &Targets, batch: usize) -> Result<(f64, f64)> {
        let n = self.check_targets(x, targets)?;
        if n == 0 {
            invalid!("no samples to evaluate");
        }
        let mut total = BatchLoss::default();
        let loss = self.loss;
        let mut block_values = Vec::new();
        self.infer(x, n, batch, |block, c, b, start| {
            let target = match targets.target {
                Target::Classes(labels) => BatchTarget::Classes(&labels[start..start + b]),
                Target::Values(v) => {
                    block_values.resize(c * b, 0.0);
                    for s in 0..b {
                        for k in 0..c {
                            block_values[k * b + s] = v[(start + s) * c + k];
                        }
                    }
                    BatchTarget::Values(&block_values)
                }
            };
            let weights = targets.weights.map(|w| &w[start..start + b]);
            let r = loss.output(block, c, b, target, weights, None);
            total.loss_sum += r.loss_sum;
            total.correct += r.correct;
        })?;
        Ok((total.loss_sum / n as f64, total.correct as f64 / n as f64))
    }

    /// Output probabilities (softmax, sigmoid or identity outputs), `n × C`
    /// sample-major.
    pub fn predict_proba(&mut self, x: &[f32], n: usize, batch: usize) -> Result<Vec<f32>> {
        self.check_inputs(x, n)?;
        let c = self.n_outputs();
        let mut out = vec![0.0f32; n * c];
        let loss = self.loss;
        self.infer(x, n, batch, |block, c, b, start| {
            loss.output(block, c, b, BatchTarget::None, None, None);
            for s in 0..b {
                for k in 0..c {
                    out[(start + s) * c + k] = block[k * b + s];
                }
            }
        })?;
        Ok(out)
    }

    /// Runs the inference forward pass chunk by chunk and hands each finished
    /// output block (class-major, `C × b`) to `sink(block, C, b, first_sample)`.
    /// Inference keeps only the input block and two layer outputs, used in
    /// turn, not every layer's activations: its memory does not grow with
    /// depth. When training buffers for at least `batch` samples exist, it
    /// runs in them (their input block and error blocks, scratch between
    /// steps) and needs no memory at all; otherwise it allocates
    /// [`Self::inference_bytes`].
    fn infer(
        &mut self,
        x: &[f32],
        n: usize,
        batch: usize,
        mut sink: impl FnMut(&mut [f32], usize, usize, usize),
    ) -> Result<()> {
        with_precision!(self.precision, T => self.infer_in::<T>(x, n, batch, &mut sink))
    }

    fn infer_in<T: Precise>(
        &mut self,
        x: &[f32],
        n: usize,
        batch: usize,
        sink: &mut impl FnMut(&mut [f32], usize, usize, usize),
    ) -> Result<()> {
        if batch == 0 {
            invalid!("batch size must be at least 1");
        }
        let bs = batch.min(n.max(1));
        let (f, c) = (self.n_features(), self.n_outputs());
        let sizes = self.sizes();
        let widest = sizes[1..sizes.len() - 1].iter().copied().max().unwrap_or(0);
        let reuse = self.ws.holds(&sizes, self.precision, bs);
        let (mut own_input, mut own_bufs, mut own_out) = if reuse {
            (Vec::new(), [Vec::new(), Vec::new()], Vec::new())
        } else {
            let zeros = |n: usize| vec![T::default(); n * bs];
            (
                zeros(f),
                [zeros(widest), zeros(widest)],
                vec![0.0f32; c * bs],
            )
        };
        let (input, bufs, out) = if reuse {
            let (bufs, io) = T::parts(&mut self.ws);
            (&mut bufs.acts[0], &mut bufs.delta, &mut io.logits)
        } else {
            (&mut own_input, &mut own_bufs, &mut own_out)
        };
        let n_layers = self.layers.len();
        let mut start = 0;
        while start < n {
            let b = bs.min(n - start);
            gather(x, f, &|s| start + s, b, input);
            for (l, layer) in self.layers.iter().enumerate() {
                let [even, odd] = &mut *bufs;
                let (src, dst): (&[T], &mut [T]) = match l {
                    0 => (input, even),
                    _ if l % 2 == 1 => (even, odd),
                    _ => (odd, even),
                };
                let src = &src[..layer.w.n_in() * b];
                if l + 1 == n_layers {
                    kernels::forward(
                        &layer.w,
                        &layer.bias,
                        src,
                        b,
                        &mut out[..],
                        None,
                        |_, _, _| {},
                    );
                } else {
                    let act = self.hidden[l];
                    kernels::forward(&layer.w, &layer.bias, src, b, dst, None, |_, z, _| {
                        activate(act, z)
                    });
                }
            }
            sink(&mut out[..c * b], c, b, start);
            start += b;
        }
        Ok(())
    }

    /// Bytes of the buffers training with mini-batches of `batch` samples
    /// allocates, whether or not they exist yet: in the network's precision
    /// the inputs of every layer, derivative factors of the hidden layers and
    /// two error blocks; in float32 the outputs, a label per sample and, in
    /// bfloat16, the loss's error before rounding.
    pub fn training_bytes(&self, batch: usize) -> u64 {
        let sizes = self.sizes();
        let c = sizes[sizes.len() - 1] as u64;
        let inputs: u64 = sizes[..sizes.len() - 1].iter().map(|&n| n as u64).sum();
        let hidden: u64 = sizes[1..sizes.len() - 1].iter().map(|&n| n as u64).sum();
        let widest = sizes.iter().copied().max().unwrap_or(0) as u64;
        let narrow = self.precision.bytes() as u64;
        let exact = match self.precision {
            Precision::Float32 => c + 1,
            Precision::Bfloat16 => 2 * c + 1,
        };
        (batch as u64).saturating_mul(
            narrow
                .saturating_mul(inputs + hidden + 2 * widest)
                .saturating_add(4 * exact),
        )
    }

    /// Bytes of the buffers inference with chunks of `batch` samples uses:
    /// the input block and two blocks of the widest hidden layer in the
    /// network's precision, the outputs in float32.
    pub fn inference_bytes(&self, batch: usize) -> u64 {
        let sizes = self.sizes();
        let widest = sizes[1..sizes.len() - 1].iter().copied().max().unwrap_or(0) as u64;
        let narrow = self.precision.bytes() as u64;
        let c = sizes[sizes.len() - 1] as u64;
        (batch as u64).saturating_mul(
            narrow
                .saturating_mul(sizes[0] as u64 + 2 * widest)
                .saturating_add(4 * c),
        )
    }

    /// The default inference chunk: as many samples as fit in
    /// [`INFERENCE_BUDGET`] bytes of buffers, between 32 (fewer would waste
    /// the vector units) and 1024; or the training buffers' batch when they
    /// exist and hold at least that many, since inference then costs no
    /// memory. Small models get 1024; the paper's extreme models train with
    /// a few dozen samples per batch and infer in their buffers.
    pub fn inference_batch(&self) -> usize {
        let per_sample = self.inference_bytes(1).max(1);
        let budget = (INFERENCE_BUDGET / per_sample).clamp(32, 1024) as usize;
        if self.ws.holds(&self.sizes(), self.precision, budget) {
            self.ws.batch
        } else {
            budget
        }
    }

    /// Bytes of the connections, their momentum and gradients, both index
    /// views and the biases: what the model itself occupies.
    pub fn parameter_bytes(&self) -> usize {
        self.layer_bytes().iter().sum()
    }

    /// [`Self::parameter_bytes`] per layer. A topology change (SET, neuron
    /// removal, recycling) rebuilds one layer at a time, so it needs at most
    /// the largest of these on top.
    pub fn layer_bytes(&self) -> Vec<usize> {
        self.layers.iter().map(Layer::memory_bytes).collect()
    }

    /// One SET step on every layer that is not dense. Returns per-layer counts.
    /// Connections of protected neurons (see [`Self::protect_neurons`]) are
    /// not pruned.
    pub fn evolve_set(&mut self, zeta: f64) -> Result<Vec<SetStep>> {
        self.evolve_set_layers(zeta, None)
    }

    /// SET on the sparse layers among `only` (every layer when None).
    pub fn evolve_set_layers(&mut self, zeta: f64, only: Option<&[usize]>) -> Result<Vec<SetStep>> {
        if !(0.0..=1.0).contains(&zeta) {
            invalid!("zeta must be in [0, 1], got {zeta}");
        }
        if let Some(&bad) = only.and_then(|o| o.iter().find(|&&l| l >= self.layers.len())) {
            invalid!(
                "SET layer {bad} does not exist: the network has {} layers (0..{})",
                self.layers.len(),
                self.layers.len() - 1
            );
        }
        let mut steps = Vec::with_capacity(self.layers.len());
        for l in 0..self.layers.len() {
            if self.layers[l].w.is_dense() || only.is_some_and(|o| !o.contains(&l)) {
                steps.push(SetStep::default());
                continue;
            }
            let mask = self.protected_connections(l);
            steps.push(topology::set_prune_regrow(
                &mut self.layers[l],
                zeta,
                self.init,
                &mut self.rng,
                mask.as_deref(),
            )?);
        }
        if steps.iter().any(|s| s.regrown() > 0) {
            self.topology_version += 1;
        }
        Ok(steps)
    }

    /// RigL's prune and grow on layer `l` ([`rigl::prune_and_grow`]): SET's
    /// prune (connections protected by neuron recycling stay), then the best
    /// of `ranked` grow in the pruned connections' place.
    pub fn rigl_prune_grow(
        &mut self,
        l: usize,
        zeta: f64,
        ranked: &[rigl::Scored],
        init: rigl::GrowInit,
    ) -> Result<(SetStep, Vec<u64>)> {
        self.layer_mut(l)?;
        let mask = self.protected_connections(l);
        let done = rigl::prune_and_grow(&mut self.layers[l], zeta, ranked, init, mask.as_deref())?;
        if done.0.regrown() > 0 {
            self.topology_version += 1;
        }
        Ok(done)
    }

    /// Opens RigL's window for the update at `step` on layers `which`
    /// ([`Window::open`]): from now on every backward pass (training or
    /// [`Self::compute_gradients`]) feeds it, until [`Self::rigl_update`].
    /// An open window is replaced.
    /// Draws and ties use `seed` (default: the network's).
    pub fn rigl_open(
        &mut self,
        which: &[usize],
        zeta: f64,
        search: Search,
        step: u64,
        seed: Option<u64>,
    ) -> Result<()> {
        let seed = seed.unwrap_or(self.seed);
        self.rigl = Some(Window::open(&self.layers, which, zeta, search, seed, step)?);
        Ok(())
    }

    /// The open RigL window, to take or add candidate sums (WASAP).
    pub fn rigl_window_mut(&mut self) -> Result<&mut Window> {
        match self.rigl.as_mut() {
            Some(w) => Ok(w),
            None => invalid!("no RigL window is open"),
        }
    }

    /// The open RigL window, if any (to save it).
    pub fn rigl_window(&self) -> Option<&Window> {
        self.rigl.as_ref()
    }

    /// Puts back a saved RigL window (None closes it), checked against the
    /// layers.
    pub fn set_rigl_window(&mut self, window: Option<Window>) -> Result<()> {
        if let Some(win) = &window {
            for part in &win.layers {
                let Some(layer) = self.layers.get(part.layer) else {
                    invalid!(
                        "the RigL window names layer {} of {}",
                        part.layer,
                        self.layers.len()
                    );
                };
                let (n_in, n_out) = part.shape;
                let ok = match &part.gathered {
                    regrowth::Gathered::Candidates { positions, sums } => {
                        positions.len() == sums.len()
                            && positions.iter().all(|&p| p < n_in as u64 * n_out as u64)
                    }
                    regrowth::Gathered::Exact { a, delta, len } => {
                        a.len() == n_in * len && delta.len() == n_out * len
                    }
                };
                if !ok || (layer.w.n_in(), layer.w.n_out()) != part.shape {
                    invalid!(
                        "the RigL window of layer {} does not fit the layer",
                        part.layer
                    );
                }
            }
        }
        self.rigl = window;
        Ok(())
    }

    /// RigL's update: closes the window and, on each of its layers, prunes
    /// as SET does and grows the missing positions with the largest mean
    /// gradient over the window's batches, at zero or at −η·g
    /// (`init`). Connections at `keep[l]` (sorted linear positions, such as
    /// the previous update's growth) and those of neurons that recycling
    /// protects are not pruned.
    pub fn rigl_update(
        &mut self,
        zeta: f64,
        init: rigl::GrowInit,
        keep: &[Vec<u64>],
    ) -> Result<Vec<Update>> {
        if !(0.0..=1.0).contains(&zeta) {
            invalid!("zeta must be in [0, 1], got {zeta}");
        }
        let Some(window) = self.rigl.take() else {
            invalid!("no RigL window is open");
        };
        let mut done = Vec::with_capacity(window.layers.len());
        for part in &window.layers {
            let l = part.layer;
            let nnz = self.layers[l].w.nnz();
            let mut mask = self
                .protected_connections(l)
                .unwrap_or_else(|| vec![false; nnz]);
            if let Some(positions) = keep.get(l) {
                regrowth::mark_positions(&self.layers[l].w, positions, &mut mask);
            }
            let mask = mask.iter().any(|&m| m).then_some(mask);
            let update =
                window.update_layer(part, &mut self.layers[l], zeta, init, mask.as_deref())?;
            done.push(update);
        }
        if done.iter().any(|u| !u.grown.is_empty()) {
            self.topology_version += 1;
        }
        Ok(done)
    }

    /// Node strength (sum of absolute incoming weights) of every neuron of
    /// hidden layer `h` (0-based: the outputs of layer `h`).
    pub fn neuron_importance(&self, h: usize) -> Result<Vec<f64>> {
        self.check_hidden(h)?;
        Ok(topology::node_strength(&self.layers[h].w))
    }

    /// Removes neurons `ids` of hidden layer `h` with all their connections
    /// and their bias. With `shrink` the layer is compacted; otherwise the
    /// neurons stay as empty slots that SET regrowth may connect again.
    pub fn remove_neurons(&mut self, h: usize, ids: &[u32], shrink: bool) -> Result<()> {
        self.check_hidden(h)?;
        let gone = recycle::flags(self.layers[h].w.n_out(), ids)?;
        if shrink && !ids.is_empty() && ids.len() == gone.len() {
            invalid!("cannot remove all {} neurons of a layer", ids.len());
        }
        self.finish_blends_near(h);
        if shrink {
            let keep: Vec<bool> = gone.iter().map(|g| !g).collect();
            if let Some(mask) = self.protected.get_mut(h).filter(|m| !m.is_empty()) {
                let mut it = keep.iter();
                mask.retain(|_| *it.next().unwrap_or(&true));
            }
            if let Some(act) = &mut self.activity {
                act.compact(h, &keep);
            }
        } else if let Some(act) = &mut self.activity {
            act.restart(h, &gone);
        }
        let (left, right) = self.layers.split_at_mut(h + 1);
        if shrink {
            topology::remove_neurons(&mut left[h], &mut right[0], ids)?;
        } else {
            topology::clear_neurons(&mut left[h], &mut right[0], ids)?;
        }
        if !ids.is_empty() {
            self.topology_version += 1;
        }
        Ok(())
    }

    /// Connections of neurons [`Self::protect_neurons`] protects, flagged by
    /// storage position in layer `l` (None when nothing there is protected).
    fn protected_connections(&self, l: usize) -> Option<Vec<bool>> {
        let as_output = self.protected.get(l).filter(|m| !m.is_empty());
        let as_input = l
            .checked_sub(1)
            .and_then(|h| self.protected.get(h))
            .filter(|m| !m.is_empty());
        if as_output.is_none_or(|m| !m.contains(&true))
            && as_input.is_none_or(|m| !m.contains(&true))
        {
            return None;
        }
        let w = &self.layers[l].w;
        let mut mask = vec![false; w.nnz()];
        for j in 0..w.n_out() {
            let col_protected = as_output.is_some_and(|m| m[j]);
            for k in w.col_ptr()[j]..w.col_ptr()[j + 1] {
                mask[k] = col_protected || as_input.is_some_and(|m| m[w.row_idx()[k] as usize]);
            }
        }
        Some(mask)
    }

    /// Protects the connections of neurons `ids` of hidden layer `h` from
    /// SET's prune until the next call for that layer (an empty list lifts
    /// the protection).
    pub fn protect_neurons(&mut self, h: usize, ids: &[u32]) -> Result<()> {
        self.check_hidden(h)?;
        let mask = recycle::flags(self.layers[h].w.n_out(), ids)?;
        if self.protected.len() < self.layers.len() - 1 {
            self.protected.resize(self.layers.len() - 1, Vec::new());
        }
        self.protected[h] = if ids.is_empty() { Vec::new() } else { mask };
        Ok(())
    }

    /// `‖incoming_j‖₂ · ‖outgoing_j‖₂` of each neuron of hidden layer `h`.
    pub fn neuron_magnitudes(&self, h: usize) -> Result<Vec<f64>> {
        self.check_hidden(h)?;
        Ok(recycle::neuron_magnitudes(
            &self.layers[h].w,
            &self.layers[h + 1].w,
        ))
    }

    /// Picks neurons by `rule` among the `eligible` ones (random picks use
    /// the network's random stream).
    pub fn select_neurons(
        &mut self,
        scores: &[f64],
        eligible: &[bool],
        rule: Selection,
    ) -> Result<Vec<u32>> {
        recycle::select_neurons(scores, eligible, rule, &mut self.rng)
    }

    /// Recycles neurons `ids` of hidden layer `h` (SPEC §7): see
    /// [`recycle::RecycleOptions`]. Their activity history restarts; a
    /// pending interpolation of the same neurons is dropped (their current
    /// weights are the old ones of the new event).
    pub fn recycle_neurons(
        &mut self,
        h: usize,
        ids: &[u32],
        opts: RecycleOptions,
    ) -> Result<RecycleReport> {
        self.check_hidden(h)?;
        let n = self.layers[h].w.n_out();
        let recycled = recycle::flags(n, ids)?;
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        let (left, right) = self.layers.split_at_mut(h + 1);
        let (report, blend) = recycle::recycle(
            &mut left[h],
            &mut right[0],
            h,
            &ids,
            opts,
            self.init,
            &mut self.rng,
        )?;
        if ids.is_empty() {
            return Ok(report);
        }
        for b in &mut self.blends {
            b.forget(h, &recycled);
        }
        if let Some(act) = &mut self.activity {
            act.restart(h, &recycled);
        }
        match blend {
            Some(mut b) => {
                b.version = self.topology_version;
                self.blends.push(b);
            }
            None => self.topology_version += 1,
        }
        Ok(report)
    }

    /// Interpolations still in progress.
    pub fn pending_blends(&self) -> usize {
        self.blends.len()
    }

    /// The recycling state held between training steps (see
    /// [`RecyclingState`]), for checkpoints.
    pub fn recycling_state(&self) -> RecyclingState {
        let hidden = self.layers.len() - 1;
        let protected = (0..hidden)
            .map(|h| match self.protected.get(h) {
                Some(mask) => (0..mask.len() as u32)
                    .filter(|&j| mask[j as usize])
                    .collect(),
                None => Vec::new(),
            })
            .collect();
        RecyclingState {
            protected,
            blends: self.blends.iter().map(Blend::saved).collect(),
            activity: self.activity.clone(),
        }
    }

    /// Restores a state from [`Self::recycling_state`] of this network (a
    /// checkpoint). Everything is checked before anything changes: unknown
    /// layers, neurons or connections, repeated ids, non-finite numbers and
    /// statistics of the wrong width are refused.
    pub fn set_recycling_state(&mut self, state: RecyclingState) -> Result<()> {
        let sizes = self.sizes();
        let hidden = &sizes[1..sizes.len() - 1];
        if state.protected.len() != hidden.len() {
            invalid!(
                "protected neurons are given for {} hidden layers; the network has {}",
                state.protected.len(),
                hidden.len()
            );
        }
        let mut masks = Vec::with_capacity(hidden.len());
        for (h, ids) in state.protected.iter().enumerate() {
            let mask = recycle::flags(hidden[h], ids)?;
            masks.push(if ids.is_empty() { Vec::new() } else { mask });
        }
        for (i, b) in state.blends.iter().enumerate() {
            self.check_saved_blend(b)
                .map_err(|e| CoreError::InvalidInput(format!("interpolation {i}: {e}")))?;
        }
        if let Some(act) = &state.activity {
            act.check(hidden)?;
        }
        self.protected = masks;
        self.blends = state.blends.iter().map(Blend::from_saved).collect();
        self.activity = state.activity;
        Ok(())
    }

    fn check_saved_blend(&self, b: &SavedBlend) -> Result<()> {
        if b.steps_left == 0 {
            invalid!("no steps left");
        }
        for &(l, row, col, delta) in &b.weights {
            let Some(layer) = self.layers.get(l) else {
                invalid!("layer {l} does not exist");
            };
            let w = &layer.w;
            if row as usize >= w.n_in() || col as usize >= w.n_out() {
                invalid!(
                    "connection ({row}, {col}) is outside layer {l} ({} x {})",
                    w.n_in(),
                    w.n_out()
                );
            }
            if !delta.is_finite() {
                invalid!("a weight change is {delta}");
            }
        }
        for &(h, j, delta) in &b.biases {
            if h + 1 >= self.layers.len() || j as usize >= self.layers[h].w.n_out() {
                invalid!("bias of neuron {j} of hidden layer {h} does not exist");
            }
            if !delta.is_finite() {
                invalid!("a bias change is {delta}");
            }
        }
        Ok(())
    }

    fn advance_blends(&mut self) {
        if self.blends.is_empty() {
            return;
        }
        for b in &mut self.blends {
            b.relocate(&self.layers, self.topology_version);
            b.advance(&mut self.layers, 1);
        }
        self.blends.retain(|b| b.steps_left > 0);
    }

    /// Completes at once the interpolations that touch layers `h` or `h + 1`
    /// (their positions are about to change meaning).
    fn finish_blends_near(&mut self, h: usize) {
        for b in &mut self.blends {
            if b.weights.iter().any(|e| e.layer == h || e.layer == h + 1)
                || b.biases.iter().any(|&(l, _, _)| l == h)
            {
                b.relocate(&self.layers, self.topology_version);
                b.advance(&mut self.layers, u32::MAX);
            }
        }
        self.blends.retain(|b| b.steps_left > 0);
    }

    /// Starts (or, with `enabled = false`, stops) gathering activation
    /// statistics during training; `utility_decay` adds Continual Backprop's
    /// running utility. Starting clears previous statistics.
    pub fn track_activity(&mut self, enabled: bool, utility_decay: Option<f64>) -> Result<()> {
        if let Some(d) = utility_decay {
            if !(0.0..1.0).contains(&d) {
                invalid!("utility decay must be in [0, 1), got {d}");
            }
        }
        self.activity = enabled.then(|| {
            let sizes = self.sizes();
            Activity::new(&sizes[1..sizes.len() - 1], utility_decay)
        });
        Ok(())
    }

    /// (mean |activation|, utility) of each neuron of hidden layer `h` over
    /// the training samples since tracking started or was reset, and the
    /// number of those samples.
    pub fn activity(&self, h: usize) -> Result<(Vec<f64>, Vec<f64>, u64)> {
        self.check_hidden(h)?;
        let Some(act) = &self.activity else {
            invalid!("activity tracking is off; start it with track_activity");
        };
        Ok((act.mean_abs(h), act.utility[h].clone(), act.samples))
    }

    /// Clears the mean-activation sums (the utilities keep running).
    pub fn reset_activity(&mut self) {
        if let Some(act) = &mut self.activity {
            act.samples = 0;
            for v in &mut act.sum_abs {
                v.iter_mut().for_each(|s| *s = 0.0);
            }
        }
    }

    fn record_activity(&mut self, b: usize) {
        let Some(act) = &mut self.activity else {
            return;
        };
        let hidden = self.layers.len() - 1;
        let rows = |h: usize| self.layers[h].w.n_out() * b;
        let widened: Vec<Vec<f32>>;
        let acts: Vec<&[f32]> = match self.precision {
            Precision::Float32 => (0..hidden)
                .map(|h| &self.ws.f32.acts[h + 1][..rows(h)])
                .collect(),
            Precision::Bfloat16 => {
                widened = (0..hidden)
                    .map(|h| {
                        let mut v = vec![0.0; rows(h)];
                        widen_row(&mut v, &self.ws.bf16.acts[h + 1][..rows(h)]);
                        v
                    })
                    .collect();
                widened.iter().map(Vec::as_slice).collect()
            }
        };
        let next: Vec<&SparseMatrix> = self.layers[1..].iter().map(|l| &l.w).collect();
        act.record(&acts, &next, b);
    }

    fn check_hidden(&self, h: usize) -> Result<()> {
        if h + 1 >= self.layers.len() {
            invalid!(
                "hidden layer {h} does not exist: the network has {} hidden layers",
                self.layers.len() - 1
            );
        }
        Ok(())
    }
}

/// Copies samples `idx(0..b)` of the row-major `x` (`n × f`) into the
/// feature-major block `dst` (`f × b`).
fn gather<T: Stored>(
    x: &[f32],
    f: usize,
    idx: &(dyn Fn(usize) -> usize + Sync),
    b: usize,
    dst: &mut [T],
) {
    // where each sample's row starts, once per batch rather than per value
    let starts: Vec<usize> = (0..b).map(|s| idx(s) * f).collect();
    dst[..f * b]
        .par_chunks_mut(b)
        .enumerate()
        .with_min_len((4096 / b).max(1))
        .for_each(|(feat, row)| {
            for (v, &start) in row.iter_mut().zip(&starts) {
                *v = T::narrow(x[start + feat]);
            }
        });
}

/// Keys of the dropout masks of one step: neuron `j` of hidden layer `l` draws
/// its mask from the stream `(seed, step, l, j)`, whichever thread computes it.
#[derive(Clone, Copy)]
struct DropoutKeys {
    seed: u64,
    step: u64,
    p: f32,
}

/// Inverted dropout on one neuron's row: each unit is zeroed with probability
/// `p` (16-bit resolution), survivors and their derivative factors are scaled
/// by `1/(1-p)`. Unit `t` uses bits `16·(t mod 4)..` of the `t/4`-th draw.
fn dropout_row(a: &mut [f32], dfac: &mut [f32], rng: &mut Rng, p: f32) {
    const CHUNK: usize = 256;
    let threshold = (p as f64 * 65536.0).round() as u32;
    let scale = 1.0 / (1.0 - p);
    let mut r = [0u16; CHUNK];
    for (a, d) in a.chunks_mut(CHUNK).zip(dfac.chunks_mut(CHUNK)) {
        for four in r[..a.len().div_ceil(4) * 4].chunks_exact_mut(4) {
            let bits = rng.next_u64();
            for (k, v) in four.iter_mut().enumerate() {
                *v = (bits >> (16 * k)) as u16;
            }
        }
        mask_scale(a, d, &r[..a.len()], threshold, scale);
    }
}

multiversion! {
    /// [`Activation::apply`], compiled for the CPU's vector width.
    pub fn activate(act: Activation, z: &mut [f32]) {
        act.apply(z);
    }
}

multiversion! {
    /// [`Activation::apply_with_derivative`], compiled for the CPU's vector width.
    pub fn activate_with_derivative(act: Activation, z: &mut [f32], d: &mut [f32]) {
        act.apply_with_derivative(z, d);
    }
}

multiversion! {
    /// `a[t], d[t] *= (r[t] < threshold ? 0 : scale)`.
    pub fn mask_scale(a: &mut [f32], d: &mut [f32], r: &[u16], threshold: u32, scale: f32) {
        for ((x, g), &r) in a.iter_mut().zip(d.iter_mut()).zip(r) {
            let m = if (r as u32) < threshold { 0.0 } else { scale };
            *x *= m;
            *g *= m;
        }
    }
}

/// Training forward pass through every layer for the `b` samples in
/// `bufs.acts[0]`: hidden layers apply their activation, record the derivative
/// factors and apply dropout; the output layer leaves logits in `logits`.
fn forward_all<T: kernels::Element>(
    layers: &[Layer],
    hidden: &[Activation],
    bufs: &mut Buffers<T>,
    logits: &mut [f32],
    b: usize,
    keys: DropoutKeys,
    laps: &mut Laps<'_>,
) {
    let n_layers = layers.len();
    for (l, layer) in layers.iter().enumerate() {
        let n_in = layer.w.n_in();
        let (w, bias) = (&layer.w, &layer.bias[..]);
        if l + 1 == n_layers {
            let input = &bufs.acts[l][..n_in * b];
            kernels::forward(w, bias, input, b, logits, None, |_, _, _| {});
            laps.lap(|p| &mut p.forward[l]);
            continue;
        }
        let (done, rest) = bufs.acts.split_at_mut(l + 1);
        let input = &done[l][..n_in * b];
        let out = &mut rest[0];
        let act = hidden[l];
        kernels::forward(
            w,
            bias,
            input,
            b,
            out,
            Some(&mut bufs.dfac[l]),
            |j, z, d| {
                let d = d.expect("training forward always has derivative rows");
                activate_with_derivative(act, z, d);
                if keys.p > 0.0 {
                    let mut rng = Rng::from_keys(&[keys.seed, keys.step, l as u64, j as u64]);
                    dropout_row(z, d, &mut rng, keys.p);
                }
            },
        );
        laps.lap(|p| &mut p.forward[l]);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(seed: u64, dropout: f32) -> NetworkSpec {
        NetworkSpec {
            sizes: vec![12, 20, 16, 3],
            nnz: vec![80, 100, 48],
            hidden: vec![
                Activation::Leaky {
                    negative_slope: -0.5,
                },
                Activation::Leaky {
                    negative_slope: 0.5,
                },
            ],
            loss: Loss::CrossEntropy,
            dropout,
            init: WeightInit::HeUniform,
            seed,
        }
    }

    pub(crate) fn data(n: usize, f: usize, c: u32, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = Rng::new(seed);
        let y: Vec<u32> = (0..n).map(|_| rng.below(c as u64) as u32).collect();
        let x = (0..n * f)
            .map(|t| rng.normal() as f32 + if t % f < 3 { y[t / f] as f32 } else { 0.0 })
            .collect();
        (x, y)
    }

    pub(crate) fn cfg() -> TrainConfig {
        TrainConfig {
            batch_size: 16,
            optimizer: Optimizer::new(0.05, 0.9, 1e-4, false).unwrap(),
            rates: Vec::new(),
            shuffle: true,
            midpoint: None,
        }
    }

    fn train(threads: usize, epochs: usize) -> Network {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut net = Network::new(spec(7, 0.3)).unwrap();
            let (x, y) = data(150, 12, 3, 1);
            for _ in 0..epochs {
                net.train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
                    .unwrap();
                net.evolve_set(0.3).unwrap();
            }
            net
        })
    }

    #[test]
    fn training_learns_and_is_independent_of_thread_count() {
        let a = train(1, 30);
        let b = train(2, 30);
        let c = train(3, 30);
        assert_eq!(a.layers, b.layers);
        assert_eq!(a.layers, c.layers);
        let mut a = a;
        let (x, y) = data(150, 12, 3, 1);
        let (_, acc) = a.evaluate(&x, &Targets::classes(&y), 64).unwrap();
        assert!(acc > 0.7, "training accuracy {acc} (chance is 0.33)");
    }

    #[test]
    fn profiling_times_every_part_and_changes_no_result() {
        let (x, y) = data(150, 12, 3, 1);
        let mut plain = Network::new(spec(7, 0.3)).unwrap();
        let mut timed = plain.clone();
        timed.set_profiling(true);
        for net in [&mut plain, &mut timed] {
            for _ in 0..3 {
                net.train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
                    .unwrap();
            }
        }
        assert_eq!(plain.layers, timed.layers);
        assert!(plain.profile().is_none());
        let p = timed.profile().unwrap();
        assert_eq!(p.batches, 3 * 150_u64.div_ceil(16));
        assert_eq!(p.forward.len(), 3);
        let parts = [p.gather, p.loss, p.step, p.forward[0], p.backward[2]];
        assert!(parts.iter().all(|&t| t > 0.0), "{p:?}");
        timed.set_profiling(false);
        assert!(timed.profile().is_none());
    }

    #[test]
    fn stop_callback_ends_the_epoch_between_batches() {
        let mut net = Network::new(spec(1, 0.0)).unwrap();
        let (x, y) = data(100, 12, 3, 2);
        let stats = net
            .train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |done| done == 3)
            .unwrap();
        assert!(stats.interrupted);
        assert_eq!(stats.batches, 3);
        assert_eq!(stats.samples, 48);
    }

    #[test]
    fn dropout_zeroes_the_expected_fraction_and_rescales() {
        let mut rng = Rng::new(5);
        let n = 100_000;
        let mut a = vec![1.0f32; n];
        let mut d = vec![1.0f32; n];
        dropout_row(&mut a, &mut d, &mut rng, 0.3);
        let zeros = a.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        assert!((zeros - 0.3).abs() < 0.01, "{zeros}");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
        assert_eq!(a, d);
    }

    #[test]
    fn predictions_are_probabilities_and_match_evaluate() {
        let mut net = Network::new(spec(3, 0.3)).unwrap();
        let (x, y) = data(37, 12, 3, 3);
        let p = net.predict_proba(&x, 37, 10).unwrap();
        for row in p.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        let mut loss = 0.0;
        let mut correct = 0;
        for (row, &label) in p.chunks(3).zip(&y) {
            loss -= (row[label as usize] as f64).ln();
            let best = (0..3).fold(0, |m, k| if row[k] > row[m] { k } else { m });
            correct += (best == label as usize) as usize;
        }
        let (l, acc) = net.evaluate(&x, &Targets::classes(&y), 8).unwrap();
        assert!((l - loss / 37.0).abs() < 1e-4);
        assert!((acc - correct as f64 / 37.0).abs() < 1e-12);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut net = Network::new(spec(3, 0.0)).unwrap();
        let (x, y) = data(10, 12, 3, 3);
        assert!(net.evaluate(&x[..100], &Targets::classes(&y), 4).is_err());
        assert!(net.evaluate(&x, &Targets::classes(&[5u32; 10]), 4).is_err());
        assert!(net
            .train_epoch(&[], &Targets::classes(&[]), &cfg(), &mut |_| false)
            .is_err());
        assert!(net.remove_neurons(2, &[0], true).is_err());
        let mut s = spec(1, 0.0);
        s.dropout = 1.0;
        assert!(Network::new(s).is_err());
        let mut s = spec(1, 0.0);
        s.nnz[0] = 10_000;
        assert!(Network::new(s).is_err());
    }

    #[test]
    fn divergence_is_reported_with_the_batch() {
        let mut net = Network::new(spec(3, 0.0)).unwrap();
        let (mut x, y) = data(64, 12, 3, 3);
        x[20 * 12] = f32::NAN; // sample 20 is in some batch of the shuffled epoch
        let err = net
            .train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
            .unwrap_err();
        assert!(matches!(err, CoreError::Diverged { .. }), "{err:?}");
    }

    #[test]
    fn a_packed_gradient_step_equals_the_training_step() {
        let mut a = Network::new(spec(3, 0.0)).unwrap();
        let mut b = a.clone();
        let (x, y) = data(16, 12, 3, 4);
        let sgd = cfg().optimizer;
        a.compute_gradients(&x, &Targets::classes(&y), false)
            .unwrap();
        a.apply_gradients(&sgd, sgd.learning_rate);
        b.compute_gradients(&x, &Targets::classes(&y), false)
            .unwrap();
        let mut g = vec![0.0; b.packed_len()];
        b.pack_gradients(&mut g).unwrap();
        b.apply_packed_gradient(&g, &sgd, sgd.learning_rate)
            .unwrap();
        let (mut pa, mut pb) = (vec![0.0; a.packed_len()], vec![1.0; b.packed_len()]);
        a.pack_params(&mut pa).unwrap();
        b.pack_params(&mut pb).unwrap();
        assert_eq!(pa, pb);
        assert!(pa.iter().any(|&v| v != 0.0));
        let mut c = Network::new(spec(9, 0.0)).unwrap();
        c.unpack_params(&pa).unwrap();
        let mut pc = vec![0.0; c.packed_len()];
        c.pack_params(&mut pc).unwrap();
        assert_eq!(pc, pa);
        g[3] = f32::NAN;
        assert!(b
            .apply_packed_gradient(&g, &sgd, sgd.learning_rate)
            .is_err());
        b.pack_params(&mut pb).unwrap();
        assert_eq!(pa, pb, "a refused gradient changes nothing");
        assert!(b
            .apply_packed_gradient(&g[1..], &sgd, sgd.learning_rate)
            .is_err());
        assert!(b.pack_params(&mut pb[1..]).is_err());
    }

    #[test]
    fn removing_neurons_shrinks_the_network_and_it_still_trains() {
        let mut net = Network::new(spec(3, 0.2)).unwrap();
        let before = net.n_connections();
        net.remove_neurons(0, &[0, 5, 9], true).unwrap();
        assert_eq!(net.sizes(), vec![12, 17, 16, 3]);
        assert!(net.n_connections() < before);
        let (x, y) = data(64, 12, 3, 3);
        net.train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
            .unwrap();
        assert!(net
            .evaluate(&x, &Targets::classes(&y), 64)
            .unwrap()
            .0
            .is_finite());
    }

    #[test]
    fn an_epoch_split_at_batch_boundaries_trains_like_one_call() {
        let (x, y) = data(150, 12, 3, 1);
        let mut whole = Network::new(spec(7, 0.3)).unwrap();
        let mut split = whole.clone();
        whole
            .train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
            .unwrap();
        let order = split.epoch_order(150, true).unwrap();
        for part in [&order[..32], &order[32..112], &order[112..]] {
            split
                .train_order(&x, &Targets::classes(&y), part, &cfg(), &mut |_| false)
                .unwrap();
        }
        assert_eq!(whole.layers, split.layers);
        assert_eq!(whole.run_state(), split.run_state());
        assert!(split
            .train_order(&x, &Targets::classes(&y), &[150], &cfg(), &mut |_| false)
            .is_err());
    }

    #[test]
    fn set_spares_the_connections_of_protected_neurons() {
        let mut net = Network::new(spec(3, 0.0)).unwrap();
        net.protect_neurons(0, &[1, 4]).unwrap();
        let before = net.layers.clone();
        net.evolve_set(1.0).unwrap();
        let (a0, a) = (&before[0].w, &net.layers[0].w);
        for j in [1, 4] {
            // regrowth may add connections to them, but none of theirs goes
            let (rows, vals) = a0.column(j);
            for (&i, &v) in rows.iter().zip(vals) {
                let p = a
                    .position(i as usize, j)
                    .expect("protected incoming connection pruned");
                assert_eq!(a.values()[p], v);
            }
        }
        let (b0, b) = (&before[1].w, &net.layers[1].w);
        for j in 0..b.n_out() {
            for k in b0.col_ptr()[j]..b0.col_ptr()[j + 1] {
                let i = b0.row_idx()[k] as usize;
                if i == 1 || i == 4 {
                    let p = b
                        .position(i, j)
                        .expect("protected outgoing connection pruned");
                    assert_eq!(b.values()[p], b0.values()[k]);
                }
            }
        }
        // everything else was up for removal at zeta = 1
        assert_ne!(net.layers[0].w.column(0), before[0].w.column(0));
        net.protect_neurons(0, &[]).unwrap();
        assert!(net.protected_connections(0).is_none());
        assert!(net.protect_neurons(0, &[20]).is_err());
    }

    #[test]
    fn recycling_in_training_blends_and_tracks_activity() {
        let (x, y) = data(64, 12, 3, 2);
        let mut net = Network::new(spec(4, 0.0)).unwrap();
        net.track_activity(true, Some(0.9)).unwrap();
        let v0 = net.run_state().topology_version;
        let o = RecycleOptions {
            reinit: recycle::Reinit::Initial,
            outgoing: recycle::Outgoing::Zero,
            interpolate_steps: 3,
        };
        net.recycle_neurons(1, &[0, 5], o).unwrap();
        assert_eq!(net.run_state().topology_version, v0, "positions kept");
        assert_eq!(net.pending_blends(), 1);
        net.train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
            .unwrap(); // 4 steps
        assert_eq!(net.pending_blends(), 0);
        let (mean_abs, utility, samples) = net.activity(1).unwrap();
        assert_eq!(samples, 64);
        assert!(mean_abs.iter().all(|v| v.is_finite() && *v >= 0.0));
        assert!(utility.iter().any(|&u| u > 0.0));
        let plain = RecycleOptions {
            interpolate_steps: 0,
            ..o
        };
        net.recycle_neurons(0, &[2], plain).unwrap();
        assert_eq!(net.run_state().topology_version, v0 + 1);
        assert!(net.recycle_neurons(0, &[2, 2], plain).is_err());
        assert!(net.recycle_neurons(2, &[0], plain).is_err());
    }

    #[test]
    fn the_training_buffer_estimate_is_what_training_allocates() {
        let mut net = Network::new(spec(1, 0.3)).unwrap();
        assert_eq!(net.memory_bytes(), net.parameter_bytes());
        // the parameters, computed before building, are what was built
        for layer in net.layers() {
            let w = layer.weights();
            let expected = crate::layer::layer_bytes_for(w.n_in(), w.n_out(), w.nnz());
            assert_eq!(layer.memory_bytes() as u64, expected);
        }
        let (x, y) = data(40, 12, 3, 1);
        net.train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
            .unwrap();
        let grown = net.memory_bytes() - net.parameter_bytes();
        assert_eq!(grown as u64, net.training_bytes(16));
        // 4 bytes x 16 samples x (12+20+16+3 activations, 20+16 factors, 2x20 errors, a label)
        assert_eq!(net.training_bytes(16), 4 * 16 * (51 + 36 + 40 + 1));
        assert_eq!(net.inference_bytes(16), 4 * 16 * (12 + 2 * 20 + 3));
        // inference in its own buffers leaves the training buffers alone...
        let own = net.evaluate(&x, &Targets::classes(&y), 1000).unwrap();
        assert_eq!(
            (net.memory_bytes() - net.parameter_bytes()) as u64,
            net.training_bytes(16)
        );
        // ...and inference in the training buffers gives the same numbers
        let reused = net.evaluate(&x, &Targets::classes(&y), 16).unwrap();
        assert_eq!(own.1, reused.1);
        assert!(
            (own.0 - reused.0).abs() < 1e-12,
            "loss sums in other chunks: {own:?} {reused:?}"
        );
        assert_eq!(
            net.predict_proba(&x, 40, 16).unwrap(),
            net.predict_proba(&x, 40, 1000).unwrap()
        );
        assert_eq!(net.inference_batch(), 1024); // small model: more than training's 16
        let (x2, y2) = data(1100, 12, 3, 2);
        let big_batch = TrainConfig {
            batch_size: 1100,
            ..cfg()
        };
        net.train_epoch(&x2, &Targets::classes(&y2), &big_batch, &mut |_| false)
            .unwrap();
        assert_eq!(net.inference_batch(), 1100, "the training buffers are used");
        let wide = Network::new(NetworkSpec {
            sizes: vec![12, 1_100_000, 3],
            nnz: vec![40, 40],
            hidden: vec![Activation::Leaky {
                negative_slope: 0.0,
            }],
            ..spec(1, 0.0)
        })
        .unwrap();
        assert_eq!(wide.inference_bytes(1), 4 * (12 + 2 * 1_100_000 + 3));
        assert_eq!(
            wide.inference_batch(),
            32,
            "at least 32 samples, even past 256 MB"
        );
    }

    #[test]
    fn bfloat16_buffers_are_what_the_estimate_says() {
        let mut net = Network::new(spec(1, 0.3)).unwrap();
        net.set_precision(Precision::Bfloat16);
        let (x, y) = data(40, 12, 3, 1);
        net.train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
            .unwrap();
        let grown = net.memory_bytes() - net.parameter_bytes();
        assert_eq!(grown as u64, net.training_bytes(16));
        // 2 bytes x 16 x (12+20+16 inputs, 20+16 factors, 2x20 errors); 4 bytes x 16 x (3 outputs,
        // 3 errors before rounding, a label)
        assert_eq!(net.training_bytes(16), 2 * 16 * (48 + 36 + 40) + 4 * 16 * 7);
        assert_eq!(net.inference_bytes(16), 2 * 16 * (12 + 2 * 20) + 4 * 16 * 3);
        net.set_precision(Precision::Float32);
        assert_eq!(
            net.memory_bytes(),
            net.parameter_bytes(),
            "the other precision's buffers are freed"
        );
    }

    /// bfloat16 training follows float32 training closely (same data, same
    /// draws), is independent of the thread count, and inference in the
    /// buffers equals inference in its own.
    #[test]
    fn bfloat16_training_learns_like_float32_and_is_independent_of_threads() {
        let (x, y) = data(300, 12, 3, 7);
        let run = |precision: Precision, threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut net = Network::new(spec(3, 0.2)).unwrap();
                net.set_precision(precision);
                let mut last = EpochStats::default();
                for _ in 0..15 {
                    last = net
                        .train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
                        .unwrap();
                }
                let own = net.predict_proba(&x, 300, 1000).unwrap();
                let reused = net.predict_proba(&x, 300, 16).unwrap();
                assert_eq!(own, reused);
                (net, last, own)
            })
        };
        let (net32, s32, p32) = run(Precision::Float32, 1);
        let (net16, s16, p16) = run(Precision::Bfloat16, 1);
        let (net16b, _, p16b) = run(Precision::Bfloat16, 3);
        assert_eq!(p16, p16b, "bfloat16 predictions on 1 and 3 threads");
        for (a, b) in net16.layers().iter().zip(net16b.layers()) {
            assert_eq!(a.weights().values(), b.weights().values());
        }
        assert!(
            s16.accuracy > 0.6,
            "bfloat16 learns: {s16:?} (float32 {s32:?})"
        );
        assert!(
            (s16.accuracy - s32.accuracy).abs() < 0.05,
            "{s16:?} vs {s32:?}"
        );
        let max_diff = p16
            .iter()
            .zip(&p32)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max_diff < 0.1, "probabilities differ by {max_diff}");
        assert!(max_diff > 0.0, "bfloat16 must round something");
        assert_eq!(net32.precision(), Precision::Float32);
    }

    /// A network rebuilt from its layers, run state and recycling state, as
    /// a checkpoint does.
    fn rebuilt(net: &Network) -> Network {
        let mut copy = Network::from_layers(
            net.layers.clone(),
            net.hidden.clone(),
            net.loss,
            net.dropout,
            net.init,
            net.run_state(),
        )
        .unwrap();
        copy.set_recycling_state(net.recycling_state()).unwrap();
        copy
    }

    #[test]
    fn a_restored_recycling_state_continues_bit_identically() {
        let (x, y) = data(96, 12, 3, 5);
        let mut net = Network::new(spec(6, 0.2)).unwrap();
        net.track_activity(true, Some(0.9)).unwrap();
        net.train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
            .unwrap();
        let o = RecycleOptions {
            reinit: recycle::Reinit::Initial,
            outgoing: recycle::Outgoing::Reinit,
            interpolate_steps: 9,
        };
        net.recycle_neurons(0, &[1, 7], o).unwrap();
        net.recycle_neurons(1, &[3], o).unwrap();
        net.protect_neurons(0, &[1, 7]).unwrap();
        net.train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
            .unwrap(); // 6 of 9 steps
        net.evolve_set(0.3).unwrap(); // the blends' storage indices go stale
        assert_eq!(net.pending_blends(), 2);
        let mut copy = rebuilt(&net);
        assert_eq!(copy.recycling_state(), net.recycling_state());
        for _ in 0..2 {
            for n in [&mut net, &mut copy] {
                n.train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
                    .unwrap();
                n.evolve_set(0.3).unwrap();
            }
        }
        assert_eq!(net.pending_blends(), 0);
        assert_eq!(copy.layers, net.layers);
        assert_eq!(copy.run_state(), net.run_state());
        assert_eq!(copy.recycling_state(), net.recycling_state());
        // without the recycling state, the same layers train differently
        let mut bare = Network::new(spec(6, 0.2)).unwrap();
        let mut with = bare.clone();
        with.recycle_neurons(0, &[2], o).unwrap();
        bare.layers = with.layers.clone();
        for n in [&mut bare, &mut with] {
            n.train_epoch(&x, &Targets::classes(&y), &cfg(), &mut |_| false)
                .unwrap();
        }
        assert_ne!(bare.layers, with.layers);
    }

    #[test]
    fn a_bad_recycling_state_is_refused_and_changes_nothing() {
        let mut net = Network::new(spec(2, 0.0)).unwrap();
        net.track_activity(true, None).unwrap();
        net.protect_neurons(1, &[4]).unwrap();
        let good = net.recycling_state();
        let blend = SavedBlend {
            steps_left: 3,
            weights: vec![(0, 1, 2, 0.5)],
            biases: vec![(0, 2, 0.1)],
        };
        let mut cases: Vec<RecyclingState> = Vec::new();
        let with = |f: &dyn Fn(&mut RecyclingState)| {
            let mut s = RecyclingState {
                blends: vec![blend.clone()],
                ..good.clone()
            };
            f(&mut s);
            s
        };
        cases.push(with(&|s| s.protected.pop().map(drop).unwrap()));
        cases.push(with(&|s| s.protected[0] = vec![20]));
        cases.push(with(&|s| s.protected[0] = vec![3, 3]));
        cases.push(with(&|s| s.blends[0].steps_left = 0));
        cases.push(with(&|s| s.blends[0].weights[0].0 = 3));
        cases.push(with(&|s| s.blends[0].weights[0].1 = 12));
        cases.push(with(&|s| s.blends[0].weights[0].2 = 20));
        cases.push(with(&|s| s.blends[0].weights[0].3 = f32::NAN));
        cases.push(with(&|s| s.blends[0].biases[0].0 = 2));
        cases.push(with(&|s| s.blends[0].biases[0].1 = 20));
        cases.push(with(&|s| s.blends[0].biases[0].2 = f32::INFINITY));
        cases.push(with(&|s| s.activity.as_mut().unwrap().sum_abs[1].push(0.0)));
        cases.push(with(&|s| s.activity.as_mut().unwrap().utility[0][0] = -1.0));
        cases.push(with(&|s| s.activity.as_mut().unwrap().decay = Some(1.0)));
        for (i, bad) in cases.into_iter().enumerate() {
            assert!(net.set_recycling_state(bad).is_err(), "case {i} accepted");
            assert_eq!(net.recycling_state(), good, "case {i} changed the state");
        }
        let fine = with(&|_| {});
        net.set_recycling_state(fine.clone()).unwrap();
        assert_eq!(net.recycling_state(), fine);
    }

    fn adam_cfg() -> TrainConfig {
        let opt = Optimizer::adam(0.01, 0.9, 0.999, 1e-8, 1e-4, true).unwrap();
        TrainConfig::new(16, opt)
    }

    #[test]
    fn adam_keeps_aligned_moments_through_set_and_resumes_exactly() {
        let (x, y) = data(150, 12, 3, 1);
        let t = Targets::classes(&y);
        let mut a = Network::new(spec(7, 0.3)).unwrap();
        for _ in 0..3 {
            a.train_epoch(&x, &t, &adam_cfg(), &mut |_| false).unwrap();
            a.evolve_set(0.3).unwrap();
        }
        assert_eq!(a.optimizer(), "adamw");
        assert_eq!(a.run_state().optimizer_steps, 30);
        for l in &a.layers {
            assert_eq!(l.second.len(), l.nnz());
            assert_eq!(l.bias_second.len(), l.bias.len());
            // SET's new connections start with both moments at zero
            let fresh = (0..l.nnz()).filter(|&k| l.momentum[k] == 0.0).count();
            let both = (0..l.nnz())
                .filter(|&k| l.momentum[k] == 0.0 && l.second[k] == 0.0)
                .count();
            assert!((fresh > 0 || l.w.is_dense()) && fresh == both);
        }
        let mut b = rebuilt(&a);
        for n in [&mut a, &mut b] {
            n.train_epoch(&x, &t, &adam_cfg(), &mut |_| false).unwrap();
        }
        assert_eq!(a.layers, b.layers);
        let untrained = Network::new(spec(7, 0.3))
            .unwrap()
            .evaluate(&x, &t, 64)
            .unwrap()
            .0;
        assert!(a.evaluate(&x, &t, 64).unwrap().0 < 0.9 * untrained);
        // a saved Adam state without its second moments is refused
        let mut layers = a.layers.clone();
        layers[1].keep_second(false);
        let r = Network::from_layers(layers, a.hidden.clone(), a.loss, 0.0, a.init, a.run_state());
        assert!(r.unwrap_err().to_string().contains("no second moments"));
    }

    #[test]
    fn changing_optimizer_restarts_the_moments() {
        let (x, y) = data(64, 12, 3, 1);
        let t = Targets::classes(&y);
        let mut net = Network::new(spec(2, 0.0)).unwrap();
        net.train_epoch(&x, &t, &cfg(), &mut |_| false).unwrap();
        assert!(net.layers[0].momentum.iter().any(|&m| m != 0.0));
        assert!(!net.layers[0].has_second());
        let before = net.layers.clone();
        net.use_optimizer(&adam_cfg().optimizer);
        for (l, old) in net.layers.iter().zip(&before) {
            assert!(l.momentum.iter().all(|&m| m == 0.0) && l.has_second());
            assert_eq!(l.w, old.w);
        }
        assert_eq!(
            (net.optimizer(), net.run_state().optimizer_steps),
            ("adamw", 0)
        );
        net.train_epoch(&x, &t, &cfg(), &mut |_| false).unwrap();
        assert!(!net.layers[0].has_second() && net.optimizer() == "sgd");
    }

    #[test]
    fn per_batch_rates_are_the_steps_learning_rates() {
        // rates equal to the optimizer's rate change nothing; other rates do,
        // and a split epoch given its own slices of rates trains like one call
        let (x, y) = data(96, 12, 3, 3);
        let t = Targets::classes(&y);
        let run = |rates: Vec<f32>| {
            let mut n = Network::new(spec(4, 0.2)).unwrap();
            let cfg = TrainConfig { rates, ..cfg() };
            n.train_epoch(&x, &t, &cfg, &mut |_| false).unwrap();
            n
        };
        assert_eq!(run(Vec::new()).layers, run(vec![0.05; 6]).layers);
        let ramp: Vec<f32> = (1..=6).map(|i| 0.01 * i as f32).collect();
        let ramped = run(ramp.clone());
        assert_ne!(ramped.layers, run(Vec::new()).layers);
        let mut split = Network::new(spec(4, 0.2)).unwrap();
        let order = split.epoch_order(96, true).unwrap();
        for (part, rates) in order.chunks(48).zip(ramp.chunks(3)) {
            let cfg = TrainConfig {
                rates: rates.to_vec(),
                ..cfg()
            };
            split
                .train_order(&x, &t, part, &cfg, &mut |_| false)
                .unwrap();
        }
        assert_eq!(split.layers, ramped.layers);
        let mut n = Network::new(spec(4, 0.2)).unwrap();
        let short = TrainConfig {
            rates: vec![0.1; 5],
            ..cfg()
        };
        assert!(n.train_epoch(&x, &t, &short, &mut |_| false).is_err());
        let bad = TrainConfig {
            rates: vec![f32::NAN; 6],
            ..cfg()
        };
        assert!(n.train_epoch(&x, &t, &bad, &mut |_| false).is_err());
        assert_eq!(n.layers, Network::new(spec(4, 0.2)).unwrap().layers);
    }

    #[test]
    fn sample_weights_scale_each_samples_gradient() {
        // weights (2, 2, 0, 0) over a batch of 4 = the first 2 samples unweighted
        let (x, y) = data(4, 12, 3, 6);
        let mut a = Network::new(spec(5, 0.0)).unwrap();
        let mut b = Network::new(spec(5, 0.0)).unwrap();
        let w = [2.0f32, 2.0, 0.0, 0.0];
        let ra = a
            .compute_gradients(&x, &Targets::classes(&y).weighted(Some(&w)), false)
            .unwrap();
        let rb = b
            .compute_gradients(&x[..24], &Targets::classes(&y[..2]), false)
            .unwrap();
        assert!((ra.loss_sum - 2.0 * rb.loss_sum).abs() < 1e-5);
        for (la, lb) in a.layers.iter().zip(&b.layers) {
            for (ga, gb) in la
                .grad
                .iter()
                .chain(&la.bias_grad)
                .zip(lb.grad.iter().chain(&lb.bias_grad))
            {
                assert!((ga - gb).abs() <= 1e-6 * (1.0 + gb.abs()), "{ga} vs {gb}");
            }
        }
        // all-ones weights are no weights, bit for bit
        let ones = [1.0f32; 4];
        a.compute_gradients(&x, &Targets::classes(&y).weighted(Some(&ones)), false)
            .unwrap();
        b.compute_gradients(&x, &Targets::classes(&y), false)
            .unwrap();
        assert_eq!(a.layers, b.layers);
        for bad in [
            &[1.0f32, 1.0, 1.0][..],
            &[1.0, f32::NAN, 1.0, 1.0],
            &[1.0, -1.0, 1.0, 1.0],
        ] {
            let t = Targets::classes(&y).weighted(Some(bad));
            assert!(a.compute_gradients(&x, &t, false).is_err());
        }
    }

    #[test]
    fn regression_on_values_learns_a_smooth_function() {
        let mut rng = Rng::new(9);
        let (n, f) = (400, 12);
        let x: Vec<f32> = (0..n * f).map(|_| rng.normal() as f32).collect();
        let y: Vec<f32> = (0..n)
            .flat_map(|s| {
                let r = &x[s * f..s * f + 3];
                [r[0] + 0.5 * r[1], (r[2]).tanh()]
            })
            .collect();
        let spec = NetworkSpec {
            sizes: vec![12, 32, 2],
            nnz: vec![200, 64],
            hidden: vec![Activation::Leaky {
                negative_slope: 0.0,
            }],
            loss: Loss::Mse { sigmoid: false },
            dropout: 0.0,
            init: WeightInit::HeUniform,
            seed: 3,
        };
        let mut net = Network::new(spec).unwrap();
        let t = Targets::values(&y);
        let before = net.evaluate(&x, &t, 64).unwrap().0;
        let opt = Optimizer::adam(0.01, 0.9, 0.999, 1e-8, 0.0, false).unwrap();
        for _ in 0..60 {
            net.train_epoch(&x, &t, &TrainConfig::new(32, opt), &mut |_| false)
                .unwrap();
        }
        let after = net.evaluate(&x, &t, 64).unwrap().0;
        assert!(after < 0.2 * before, "mse {before} -> {after}");
        assert!(net.evaluate(&x, &Targets::values(&y[..3]), 64).is_err());
    }
}
