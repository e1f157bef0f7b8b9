//! Training, evaluation and the packed parameters data-parallel training moves.

use std::sync::atomic::Ordering;

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sparse_mlp_core::recycle::Midpoint;
use sparse_mlp_core::{Sgd, TrainConfig};

use crate::convert::{indices, labels, matrix, vector, vector_mut};
use crate::errors::to_py;
use crate::network::{LayerGrads, PyNetwork};
use crate::pool::{compute, compute_interruptible};

#[pymethods]
impl PyNetwork {
    /// Trains one epoch; returns a dict of running loss/accuracy. A Python
    /// exception raised by a signal handler (Ctrl-C) or by `progress` ends the
    /// epoch between two batches and is re-raised here, the model intact.
    /// With `order` (sample indices, e.g. a slice of `epoch_order`), trains
    /// on those samples in that order instead of a fresh shuffle. `midpoint`
    /// = (weight, "mean"|"median", "l1"|"l2") adds the midpoint-loss step.
    /// `bias_decay=False` leaves the biases out of the weight decay.
    #[pyo3(signature = (x, y, batch_size, learning_rate, momentum, weight_decay, nesterov=false, shuffle=true, progress=None, order=None, midpoint=None, bias_decay=true))]
    #[allow(clippy::too_many_arguments)]
    fn train_epoch<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        y: PyReadonlyArray1<'py, i64>,
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
    ) -> PyResult<Bound<'py, PyDict>> {
        let (xs, n) = matrix(&x, self.net.n_features(), "X")?;
        let ys = labels(&y, n, self.net.n_outputs())?;
        let midpoint = midpoint
            .map(|(w, m, d)| Midpoint::new(w, &m, &d))
            .transpose()
            .map_err(to_py)?;
        let cfg = TrainConfig {
            batch_size,
            sgd: Sgd::new(learning_rate, momentum, weight_decay, nesterov)
                .map_err(to_py)?
                .with_bias_decay(bias_decay),
            shuffle,
            midpoint,
        };
        let order = order.map(|o| indices::<u32>(&o, "order")).transpose()?;
        let net = &mut self.net;
        let (stats, raised) = compute_interruptible(py, progress.as_ref(), |stop, done| {
            let mut check = |batches| {
                done.store(batches, Ordering::Relaxed);
                stop.load(Ordering::Relaxed)
            };
            match &order {
                Some(o) => net.train_order(xs, &ys, o, &cfg, &mut check),
                None => net.train_epoch(xs, &ys, &cfg, &mut check),
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
    /// samples (default: `inference_batch()`).
    #[pyo3(signature = (x, y, batch_size=None))]
    fn evaluate(
        &mut self,
        py: Python<'_>,
        x: PyReadonlyArray2<'_, f32>,
        y: PyReadonlyArray1<'_, i64>,
        batch_size: Option<usize>,
    ) -> PyResult<(f64, f64)> {
        let (xs, n) = matrix(&x, self.net.n_features(), "X")?;
        let ys = labels(&y, n, self.net.n_outputs())?;
        let batch_size = batch_size.unwrap_or_else(|| self.net.inference_batch());
        let net = &mut self.net;
        compute(py, || net.evaluate(xs, &ys, batch_size))
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
    #[pyo3(signature = (x, y, dropout=false))]
    fn gradients<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        y: PyReadonlyArray1<'py, i64>,
        dropout: bool,
    ) -> PyResult<(f64, Vec<LayerGrads<'py>>)> {
        let (xs, n) = matrix(&x, self.net.n_features(), "X")?;
        let ys = labels(&y, n, self.net.n_outputs())?;
        let net = &mut self.net;
        let r = compute(py, || net.compute_gradients(xs, &ys, dropout))?;
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
    fn gradient_step(
        &mut self,
        py: Python<'_>,
        x: PyReadonlyArray2<'_, f32>,
        y: PyReadonlyArray1<'_, i64>,
        mut out: PyReadwriteArray1<'_, f32>,
    ) -> PyResult<(f64, usize)> {
        let (xs, n) = matrix(&x, self.net.n_features(), "X")?;
        let ys = labels(&y, n, self.net.n_outputs())?;
        let out = vector_mut(&mut out, "out")?;
        let net = &mut self.net;
        compute(py, || {
            let r = net.gradient_step(xs, &ys)?;
            net.pack_gradients(out)?;
            Ok((r.loss_sum, r.correct))
        })
    }

    /// One momentum-SGD step, in place, from a packed gradient computed elsewhere.
    #[pyo3(signature = (g, learning_rate, momentum, weight_decay, nesterov=false, bias_decay=true))]
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
    ) -> PyResult<()> {
        let sgd = Sgd::new(learning_rate, momentum, weight_decay, nesterov)
            .map_err(to_py)?
            .with_bias_decay(bias_decay);
        let g = vector(&g, "g")?;
        let net = &mut self.net;
        compute(py, || net.apply_packed_gradient(g, &sgd))
    }
}
