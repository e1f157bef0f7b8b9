//! Training, evaluation and the packed parameters data-parallel training moves.

use std::sync::atomic::Ordering;

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sparse_mlp_core::recycle::Midpoint;
use sparse_mlp_core::{Optimizer, TrainConfig};

use crate::convert::{indices, matrix, vector, vector_mut, GivenTargets};
use crate::errors::to_py;
use crate::network::{LayerGrads, PyNetwork};
use crate::pool::{compute, compute_interruptible};

/// The optimizer a call names: "sgd" (momentum, nesterov), "adam" or
/// "adamw" (betas, eps), each with its learning rate and weight decay.
#[allow(clippy::too_many_arguments)]
fn optimizer(
    name: &str,
    learning_rate: f64,
    momentum: f64,
    weight_decay: f64,
    nesterov: bool,
    betas: Option<(f64, f64)>,
    eps: f64,
    bias_decay: bool,
) -> PyResult<Optimizer> {
    let betas = betas.unwrap_or((0.9, 0.999));
    let opt = match sparse_mlp_core::optimizer_name(name).map_err(to_py)? {
        "sgd" => Optimizer::new(learning_rate, momentum, weight_decay, nesterov),
        other => Optimizer::adam(
            learning_rate,
            betas.0,
            betas.1,
            eps,
            weight_decay,
            other == "adamw",
        ),
    };
    Ok(opt.map_err(to_py)?.with_bias_decay(bias_decay))
}

fn weights<'a>(w: &'a Option<PyReadonlyArray1<'_, f32>>) -> PyResult<Option<&'a [f32]>> {
    w.as_ref().map(|w| vector(w, "sample_weight")).transpose()
}

#[pymethods]
impl PyNetwork {
    /// Trains one epoch; returns a dict of running loss/accuracy. A Python
    /// exception raised by a signal handler (Ctrl-C) or by `progress` ends the
    /// epoch between two batches and is re-raised here, the model intact.
    /// `y` holds int64 class labels or, for regression, float32 targets of
    /// shape (n, outputs). With `order` (sample indices, e.g. a slice of
    /// `epoch_order`), trains on those samples in that order instead of a
    /// fresh shuffle. `midpoint` = (weight, "mean"|"median", "l1"|"l2") adds
    /// the midpoint-loss step. `bias_decay=False` leaves the biases out of
    /// the weight decay. `optimizer` is "sgd", "adam" or "adamw"; `rates`
    /// gives each mini-batch its learning rate; `sample_weight` weighs each
    /// sample's loss.
    #[pyo3(signature = (x, y, batch_size, learning_rate, momentum, weight_decay, nesterov=false, shuffle=true, progress=None, order=None, midpoint=None, bias_decay=true, optimizer="sgd", betas=None, eps=1e-8, rates=None, sample_weight=None))]
    #[allow(clippy::too_many_arguments)]
    fn train_epoch<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        y: Bound<'py, PyAny>,
        batch_size: usize,
        learning_rate: f64,
        momentum: f64,
        weight_decay: f64,
        nesterov: bool,
        shuffle: bool,
        progress: Option<Bound<'py, PyAny>>,
        order: Option<PyReadonlyArray1<'py, i64>>,
        midpoint: Option<(f64, String, String)>,
        bias_decay: bool,
        optimizer: &str,
        betas: Option<(f64, f64)>,
        eps: f64,
        rates: Option<PyReadonlyArray1<'py, f32>>,
        sample_weight: Option<PyReadonlyArray1<'py, f32>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (xs, n) = matrix(&x, self.net.n_features(), "X")?;
        let given = GivenTargets::new(&y, n, self.net.n_outputs())?;
        let midpoint = midpoint
            .map(|(w, m, d)| Midpoint::new(w, &m, &d))
            .transpose()
            .map_err(to_py)?;
        let opt = self::optimizer(
            optimizer,
            learning_rate,
            momentum,
            weight_decay,
            nesterov,
            betas,
            eps,
            bias_decay,
        )?;
        let cfg = TrainConfig {
            shuffle,
            midpoint,
            rates: match &rates {
                Some(r) => vector(r, "rates")?.to_vec(),
                None => Vec::new(),
            },
            ..TrainConfig::new(batch_size, opt)
        };
        let targets = given.view(weights(&sample_weight)?);
        let order = order.map(|o| indices::<u32>(&o, "order")).transpose()?;
        let net = &mut self.net;
        let (stats, raised) = compute_interruptible(py, progress.as_ref(), |stop, done| {
            let mut check = |batches| {
                done.store(batches, Ordering::Relaxed);
                stop.load(Ordering::Relaxed)
            };
            match &order {
                Some(o) => net.train_order(xs, &targets, o, &cfg, &mut check),
                None => net.train_epoch(xs, &targets, &cfg, &mut check),
            }
        })?;
        if let Some(e) = raised {
            return Err(e);
        }
        let d = PyDict::new(py);
        d.set_item("loss", stats.loss)?;
        d.set_item("accuracy", stats.accuracy)?;
        d.set_item("samples", stats.samples)?;
        d.set_item("batches", stats.batches)?;
        Ok(d)
    }

    /// (mean loss, accuracy) in inference mode, in chunks of `batch_size`
    /// samples (default: `inference_batch()`). `y` as for `train_epoch`;
    /// with `sample_weight` the loss is the weighted mean.
    #[pyo3(signature = (x, y, batch_size=None, sample_weight=None))]
    fn evaluate<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        y: Bound<'py, PyAny>,
        batch_size: Option<usize>,
        sample_weight: Option<PyReadonlyArray1<'py, f32>>,
    ) -> PyResult<(f64, f64)> {
        let (xs, n) = matrix(&x, self.net.n_features(), "X")?;
        let given = GivenTargets::new(&y, n, self.net.n_outputs())?;
        let targets = given.view(weights(&sample_weight)?);
        let batch_size = batch_size.unwrap_or_else(|| self.net.inference_batch());
        let net = &mut self.net;
        compute(py, || net.evaluate(xs, &targets, batch_size))
    }

    /// Output probabilities, shape (n_samples, n_outputs), in chunks of
    /// `batch_size` samples (default: `inference_batch()`).
    #[pyo3(signature = (x, batch_size=None))]
    fn predict_proba<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        batch_size: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (xs, n) = matrix(&x, self.net.n_features(), "X")?;
        let c = self.net.n_outputs();
        let batch_size = batch_size.unwrap_or_else(|| self.net.inference_batch());
        let net = &mut self.net;
        let out = compute(py, || net.predict_proba(xs, n, batch_size))?;
        PyArray1::from_vec(py, out).reshape([n, c])
    }

    /// Gradients of the mean loss over (x, y) as one batch: (mean loss,
    /// [(weight gradient in CSC order, bias gradient) per layer]).
    #[pyo3(signature = (x, y, dropout=false, sample_weight=None))]
    fn gradients<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        y: Bound<'py, PyAny>,
        dropout: bool,
        sample_weight: Option<PyReadonlyArray1<'py, f32>>,
    ) -> PyResult<(f64, Vec<LayerGrads<'py>>)> {
        let (xs, n) = matrix(&x, self.net.n_features(), "X")?;
        let given = GivenTargets::new(&y, n, self.net.n_outputs())?;
        let targets = given.view(weights(&sample_weight)?);
        let net = &mut self.net;
        let r = compute(py, || net.compute_gradients(xs, &targets, dropout))?;
        let grads = self
            .net
            .layers()
            .iter()
            .map(|l| {
                (
                    PyArray1::from_slice(py, l.grad()),
                    PyArray1::from_slice(py, l.bias_grad()),
                )
            })
            .collect();
        Ok((r.loss_sum / n as f64, grads))
    }

    /// Starts (from zero) or stops timing the parts of each training step.
    fn set_profiling(&mut self, enabled: bool) {
        self.net.set_profiling(enabled);
    }

    /// Seconds per part of training since profiling started (None when it is
    /// off): `batches`, `gather`, `loss`, `step`, `other`, and per layer
    /// `forward`, `bias` and `backward` lists.
    #[getter]
    fn profile<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(p) = self.net.profile() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("batches", p.batches)?;
        for (k, v) in [
            ("gather", p.gather),
            ("loss", p.loss),
            ("step", p.step),
            ("other", p.other),
        ] {
            d.set_item(k, v)?;
        }
        for (k, v) in [
            ("forward", &p.forward),
            ("bias", &p.bias),
            ("backward", &p.backward),
        ] {
            d.set_item(k, v.clone())?;
        }
        Ok(Some(d))
    }

    /// Floats in the packed parameter layout: per layer its connection
    /// values (CSC order), then its bias. Gradients pack the same way.
    #[getter]
    fn packed_len(&self) -> usize {
        self.net.packed_len()
    }

    /// Copies the connection values and biases into `out` (packed layout).
    fn pack_params(&self, mut out: PyReadwriteArray1<'_, f32>) -> PyResult<()> {
        let out = vector_mut(&mut out, "out")?;
        self.net.pack_params(out).map_err(to_py)
    }

    /// Replaces the connection values and biases from `src` (packed layout).
    fn unpack_params(&mut self, src: PyReadonlyArray1<'_, f32>) -> PyResult<()> {
        let src = vector(&src, "src")?;
        self.net.unpack_params(src).map_err(to_py)
    }

    /// Gradients of one training mini-batch (with dropout) packed into `out`;
    /// advances the step. Returns (loss summed over the batch, correct predictions).
    #[pyo3(signature = (x, y, out, sample_weight=None))]
    fn gradient_step<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        y: Bound<'py, PyAny>,
        mut out: PyReadwriteArray1<'py, f32>,
        sample_weight: Option<PyReadonlyArray1<'py, f32>>,
    ) -> PyResult<(f64, usize)> {
        let (xs, n) = matrix(&x, self.net.n_features(), "X")?;
        let given = GivenTargets::new(&y, n, self.net.n_outputs())?;
        let targets = given.view(weights(&sample_weight)?);
        let out = vector_mut(&mut out, "out")?;
        let net = &mut self.net;
        compute(py, || {
            let r = net.gradient_step(xs, &targets)?;
            net.pack_gradients(out)?;
            Ok((r.loss_sum, r.correct))
        })
    }

    /// One optimizer step, in place, from a packed gradient computed elsewhere.
    #[pyo3(signature = (g, learning_rate, momentum, weight_decay, nesterov=false, bias_decay=true, optimizer="sgd", betas=None, eps=1e-8))]
    #[allow(clippy::too_many_arguments)]
    fn apply_packed_gradient(
        &mut self,
        py: Python<'_>,
        g: PyReadonlyArray1<'_, f32>,
        learning_rate: f64,
        momentum: f64,
        weight_decay: f64,
        nesterov: bool,
        bias_decay: bool,
        optimizer: &str,
        betas: Option<(f64, f64)>,
        eps: f64,
    ) -> PyResult<()> {
        let opt = self::optimizer(
            optimizer,
            learning_rate,
            momentum,
            weight_decay,
            nesterov,
            betas,
            eps,
            bias_decay,
        )?;
        let g = vector(&g, "g")?;
        let net = &mut self.net;
        compute(py, || net.apply_packed_gradient(g, &opt, opt.learning_rate))
    }
}
