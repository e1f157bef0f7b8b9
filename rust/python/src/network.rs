//! The compiled network class: construction, properties and layer arrays.

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sparse_mlp_core as core;
use sparse_mlp_core::precision::Precision;
use sparse_mlp_core::{
    Activation, CoreError, Layer, Loss, Network, NetworkSpec, RunState, SparseMatrix, WeightInit,
};

use crate::convert::{require_memory, saved_indices, vector};
use crate::errors::to_py;
use crate::pool::compute;

/// (weight gradient in CSC order, bias gradient) of one layer.
pub(crate) type LayerGrads<'py> = (Bound<'py, PyArray1<f32>>, Bound<'py, PyArray1<f32>>);
/// (mean |activation|, utility, samples) of one hidden layer.
pub(crate) type ActivityArrays<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>, u64);

/// The compiled network. `sparse_mlp.SparseMLP` wraps it; use that.
#[pyclass(module = "sparse_mlp._core", name = "Network")]
pub(crate) struct PyNetwork {
    pub(crate) net: Network,
}

/// The named settings both constructors take: hidden activations, loss with
/// its output activation, and the weight initialization.
fn parse_config(
    activations: &[(String, f32)],
    loss: &str,
    output_activation: &str,
    init: &str,
) -> PyResult<(Vec<Activation>, Loss, WeightInit)> {
    let hidden = activations
        .iter()
        .map(|(k, s)| Activation::parse(k, *s).map_err(to_py))
        .collect::<PyResult<Vec<_>>>()?;
    let loss = Loss::parse(loss, output_activation).map_err(to_py)?;
    let init = WeightInit::parse(init).map_err(to_py)?;
    Ok((hidden, loss, init))
}

#[pymethods]
impl PyNetwork {
    #[new]
    #[pyo3(signature = (sizes, nnz, activations, loss, output_activation, dropout, init, seed))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        sizes: Vec<usize>,
        nnz: Vec<u64>,
        activations: Vec<(String, f32)>,
        loss: &str,
        output_activation: &str,
        dropout: f32,
        init: &str,
        seed: u64,
    ) -> PyResult<Self> {
        let (hidden, loss, init) = parse_config(&activations, loss, output_activation, init)?;
        if sizes.len() == nnz.len() + 1 {
            let bytes = sizes
                .windows(2)
                .zip(&nnz)
                .map(|(s, &k)| core::layer::layer_bytes_for(s[0], s[1], k as usize))
                .fold(0, u64::saturating_add);
            require_memory(py, bytes, "building the network")?;
        }
        let spec = NetworkSpec {
            sizes,
            nnz,
            hidden,
            loss,
            dropout,
            init,
            seed,
        };
        let net = compute(py, || Network::new(spec))?;
        Ok(PyNetwork { net })
    }

    /// Rebuilds a network from saved arrays. `layers` holds one dict per layer
    /// with n_in, n_out, col_ptr, row_idx, values, momentum, bias, bias_momentum
    /// (and second, bias_second when `optimizer` keeps second moments).
    #[staticmethod]
    #[pyo3(signature = (layers, activations, loss, output_activation, dropout, init, seed, rng_state, step, topology_version, optimizer="sgd", optimizer_steps=0))]
    #[allow(clippy::too_many_arguments)]
    fn from_state(
        layers: Vec<Bound<'_, PyDict>>,
        activations: Vec<(String, f32)>,
        loss: &str,
        output_activation: &str,
        dropout: f32,
        init: &str,
        seed: u64,
        rng_state: [u64; 4],
        step: u64,
        topology_version: u64,
        optimizer: &str,
        optimizer_steps: u64,
    ) -> PyResult<Self> {
        let optimizer = core::optimizer_name(optimizer).map_err(to_py)?;
        let mut built = Vec::with_capacity(layers.len());
        for (l, d) in layers.iter().enumerate() {
            let get = |k: &str| -> PyResult<Bound<'_, PyAny>> {
                d.get_item(k)?.ok_or_else(|| {
                    to_py(CoreError::InvalidInput(format!(
                        "layer {l} state is missing '{k}'"
                    )))
                })
            };
            let n_in: usize = get("n_in")?.extract()?;
            let n_out: usize = get("n_out")?.extract()?;
            let col_ptr = saved_indices::<usize>(&get("col_ptr")?, l, "column pointer")?;
            let row_idx = saved_indices::<u32>(&get("row_idx")?, l, "row index")?;
            let f32s = |k: &str| -> PyResult<Vec<f32>> {
                Ok(get(k)?
                    .extract::<PyReadonlyArray1<f32>>()?
                    .as_array()
                    .to_vec())
            };
            let (values, bias, momentum, bias_momentum) = (
                f32s("values")?,
                f32s("bias")?,
                f32s("momentum")?,
                f32s("bias_momentum")?,
            );
            let bytes = core::layer::layer_bytes_for(n_in, n_out, row_idx.len());
            require_memory(d.py(), bytes, &format!("building layer {l}"))?;
            let second = match d.get_item("second")? {
                Some(_) => Some((f32s("second")?, f32s("bias_second")?)),
                None => None,
            };
            let w = SparseMatrix::from_csc(n_in, n_out, col_ptr, row_idx, values)
                .and_then(|w| Layer::from_parts(w, bias, momentum, bias_momentum))
                .and_then(|layer| match second {
                    Some((v, bv)) => layer.with_second(v, bv),
                    None => Ok(layer),
                })
                .map_err(|e| to_py(CoreError::InvalidInput(format!("layer {l}: {e}"))))?;
            built.push(w);
        }
        let state = RunState {
            seed,
            rng: rng_state,
            step,
            topology_version,
            optimizer,
            optimizer_steps,
        };
        let (hidden, loss, init) = parse_config(&activations, loss, output_activation, init)?;
        let net = Network::from_layers(built, hidden, loss, dropout, init, state).map_err(to_py)?;
        Ok(PyNetwork { net })
    }

    #[getter]
    fn sizes(&self) -> Vec<usize> {
        self.net.sizes()
    }

    #[getter]
    fn layer_nnz(&self) -> Vec<usize> {
        self.net.layers().iter().map(Layer::nnz).collect()
    }

    #[getter]
    fn n_connections(&self) -> usize {
        self.net.n_connections()
    }

    #[getter]
    fn activations(&self) -> Vec<(String, f32)> {
        self.net
            .hidden_activations()
            .iter()
            .map(|a| {
                let (k, s) = a.describe();
                (k.to_string(), s)
            })
            .collect()
    }

    #[getter]
    fn loss(&self) -> (String, String) {
        let (l, o) = self.net.loss().describe();
        (l.into(), o.into())
    }

    #[getter]
    fn dropout(&self) -> f32 {
        self.net.dropout()
    }

    #[getter]
    fn init(&self) -> &'static str {
        self.net.weight_init().name()
    }

    /// (seed, rng state, step, topology version)
    #[getter]
    fn run_state(&self) -> (u64, [u64; 4], u64, u64) {
        let s = self.net.run_state();
        (s.seed, s.rng, s.step, s.topology_version)
    }

    /// (name, steps) of the optimizer whose moments the layers hold.
    #[getter]
    fn optimizer_state(&self) -> (&'static str, u64) {
        let s = self.net.run_state();
        (s.optimizer, s.optimizer_steps)
    }

    /// Bytes of each layer: connections, momentum, gradients, both index
    /// views, biases.
    #[getter]
    fn layer_bytes(&self) -> Vec<usize> {
        self.net.layer_bytes()
    }

    /// What activations, derivative factors and errors are stored as:
    /// "float32" or "bfloat16" (weights and sums are float32 in both).
    #[getter]
    fn precision(&self) -> &'static str {
        self.net.precision().name()
    }

    /// Stores activations, derivative factors and errors as `precision`
    /// ("float32" or "bfloat16") from now on.
    fn set_precision(&mut self, precision: &str) -> PyResult<()> {
        let p = Precision::parse(precision).map_err(to_py)?;
        self.net.set_precision(p);
        Ok(())
    }

    /// Bytes of the buffers training with mini-batches of `batch` samples uses.
    fn training_bytes(&self, batch: usize) -> u64 {
        self.net.training_bytes(batch)
    }

    /// Bytes of the buffers inference in chunks of `batch` samples uses.
    fn inference_bytes(&self, batch: usize) -> u64 {
        self.net.inference_bytes(batch)
    }

    /// The default inference chunk: up to 1024 samples, at most 256 MB of buffers.
    fn inference_batch(&self) -> usize {
        self.net.inference_batch()
    }

    #[getter]
    fn memory_bytes(&self) -> usize {
        self.net.memory_bytes()
    }

    /// Arrays of layer `l`: dict with n_in, n_out, col_ptr (int64), row_idx
    /// (uint32, as the core holds them), values, momentum, bias, bias_momentum
    /// (float32), and second, bias_second when Adam's moments are kept; all copies.
    fn layer_state<'py>(&self, py: Python<'py>, l: usize) -> PyResult<Bound<'py, PyDict>> {
        let n = self.net.layers().len();
        let layer = self.net.layers().get(l).ok_or_else(|| {
            to_py(CoreError::InvalidInput(format!(
                "layer index {l} out of range for {n} layers"
            )))
        })?;
        let w = layer.weights();
        let d = PyDict::new(py);
        d.set_item("n_in", w.n_in())?;
        d.set_item("n_out", w.n_out())?;
        d.set_item(
            "col_ptr",
            PyArray1::from_vec(py, w.col_ptr().iter().map(|&p| p as i64).collect()),
        )?;
        d.set_item("row_idx", PyArray1::from_slice(py, w.row_idx()))?;
        d.set_item("values", PyArray1::from_slice(py, w.values()))?;
        d.set_item("momentum", PyArray1::from_slice(py, layer.momentum()))?;
        d.set_item("bias", PyArray1::from_slice(py, layer.bias()))?;
        d.set_item(
            "bias_momentum",
            PyArray1::from_slice(py, layer.bias_momentum()),
        )?;
        if layer.has_second() {
            d.set_item("second", PyArray1::from_slice(py, layer.second()))?;
            d.set_item("bias_second", PyArray1::from_slice(py, layer.bias_second()))?;
        }
        Ok(d)
    }

    /// Replaces the connection values (CSC order) and, optionally, the bias of layer `l`.
    #[pyo3(signature = (l, values, bias=None))]
    fn set_layer_values(
        &mut self,
        l: usize,
        values: PyReadonlyArray1<'_, f32>,
        bias: Option<PyReadonlyArray1<'_, f32>>,
    ) -> PyResult<()> {
        let values = vector(&values, "values")?;
        let layer = self.net.layer_mut(l).map_err(to_py)?;
        layer.set_values(values).map_err(to_py)?;
        if let Some(b) = bias {
            layer.set_bias(vector(&b, "bias")?).map_err(to_py)?;
        }
        Ok(())
    }

    /// Restarts the random streams (shuffling, SET, dropout) from `seed`.
    fn reseed(&mut self, seed: u64) {
        self.net.reseed(seed);
    }

    /// The sample order of one epoch, drawn as `train_epoch` would draw it.
    #[pyo3(signature = (n, shuffle=true))]
    fn epoch_order<'py>(
        &mut self,
        py: Python<'py>,
        n: usize,
        shuffle: bool,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        require_memory(py, 12 * n as u64, "the sample order")?;
        let order = self.net.epoch_order(n, shuffle).map_err(to_py)?;
        Ok(PyArray1::from_vec(
            py,
            order.into_iter().map(i64::from).collect(),
        ))
    }
}
