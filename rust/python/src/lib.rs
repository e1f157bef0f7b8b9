//! `sparse_mlp._core`: the PyO3 bindings of sparse-mlp-core.
//!
//! Only conversion lives here: numpy arrays in and out, core errors mapped
//! onto the Python exception classes of `sparse_mlp.errors`, the GIL released
//! around all real work, which runs on a rayon pool owned by this module.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyType};
use rayon::ThreadPool;
use sparse_mlp_core as core;
use sparse_mlp_core::recycle::{
    Activity, Midpoint, Outgoing, RecycleOptions, RecyclingState, Reinit, SavedBlend, Selection,
};
use sparse_mlp_core::{
    Activation, CoreError, Layer, Loss, Network, NetworkSpec, RunState, Sgd, SparseMatrix,
    TrainConfig, WeightInit,
};

// ---------------------------------------------------------------- errors

/// Maps a core error onto `sparse_mlp.errors`: bad input is an
/// `InvalidInputError` (a `ValueError`), divergence a `DivergenceError`,
/// anything else a `SparseMLPError`.
fn to_py(e: CoreError) -> PyErr {
    Python::attach(|py| {
        let (class, args): (&str, Py<PyAny>) = match &e {
            CoreError::InvalidInput(m) => (
                "InvalidInputError",
                (m.clone(),).into_pyobject(py).unwrap().into_any().unbind(),
            ),
            CoreError::Diverged { batch, loss } => (
                "DivergenceError",
                (e.to_string(), *batch, *loss)
                    .into_pyobject(py)
                    .unwrap()
                    .into_any()
                    .unbind(),
            ),
            CoreError::Internal(_) => (
                "SparseMLPError",
                (e.to_string(),)
                    .into_pyobject(py)
                    .unwrap()
                    .into_any()
                    .unbind(),
            ),
        };
        let ty = py
            .import("sparse_mlp.errors")
            .and_then(|m| m.getattr(class))
            .and_then(|t| t.cast_into::<PyType>().map_err(PyErr::from));
        match ty {
            Ok(ty) => PyErr::from_type(ty, args),
            Err(_) => match e {
                CoreError::InvalidInput(m) => PyValueError::new_err(m),
                other => PyRuntimeError::new_err(other.to_string()),
            },
        }
    })
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

// ---------------------------------------------------------------- threads

static POOL: Mutex<Option<Arc<ThreadPool>>> = Mutex::new(None);

fn default_threads() -> usize {
    std::env::var("SPARSE_MLP_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=MAX_THREADS).contains(n))
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

fn build_pool(threads: usize) -> PyResult<Arc<ThreadPool>> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("sparse-mlp-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| {
            to_py(CoreError::Internal(format!(
                "cannot start {threads} worker threads: {e}"
            )))
        })
}

fn pool() -> PyResult<Arc<ThreadPool>> {
    let mut guard = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(p) = guard.as_ref() {
        return Ok(p.clone());
    }
    let p = build_pool(default_threads())?;
    *guard = Some(p.clone());
    Ok(p)
}

/// Sets the number of threads the library computes with (default: all cores,
/// or `SPARSE_MLP_NUM_THREADS`). Results do not depend on it.
/// Any integer out of range (negative, huge) is an `InvalidInputError`, not
/// a conversion's `OverflowError`.
#[pyfunction]
fn set_num_threads(n: &Bound<'_, PyAny>) -> PyResult<()> {
    let count = match n.extract::<usize>() {
        Ok(v) if (1..=MAX_THREADS).contains(&v) => v,
        Err(e) if !n.is_instance_of::<PyInt>() => return Err(e),
        _ => {
            return Err(to_py(CoreError::InvalidInput(format!(
                "the number of threads must be between 1 and {MAX_THREADS}, got {n}"
            ))))
        }
    };
    let p = build_pool(count)?;
    *POOL.lock().unwrap_or_else(PoisonError::into_inner) = Some(p);
    Ok(())
}

/// More threads than this is a mistake (and would try to start them all).
const MAX_THREADS: usize = 4096;

#[pyfunction]
fn get_num_threads() -> PyResult<usize> {
    Ok(pool()?.current_num_threads())
}

/// Runs `work` on the pool with the GIL released; a panic becomes an error.
fn compute<R: Send>(py: Python<'_>, work: impl FnOnce() -> core::Result<R> + Send) -> PyResult<R> {
    let pool = pool()?;
    py.detach(|| pool.install(|| catch_unwind(AssertUnwindSafe(work))))
        .map_err(|p| CoreError::Internal(format!("a worker panicked: {}", panic_message(p))))
        .and_then(|r| r)
        .map_err(to_py)
}

/// Runs `work` on the pool while this (the calling) thread waits with the GIL
/// released, waking every 50 ms to run Python's signal handlers and the
/// progress callback. If a handler raises (Ctrl-C), `stop` is set, the work
/// ends at its next check, and the exception is returned beside the result.
fn compute_interruptible<R: Send>(
    py: Python<'_>,
    progress: Option<&Bound<'_, PyAny>>,
    work: impl FnOnce(&AtomicBool, &AtomicUsize) -> core::Result<R> + Send,
) -> PyResult<(R, Option<PyErr>)> {
    let pool = pool()?;
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let slot: (Mutex<Option<std::thread::Result<core::Result<R>>>>, Condvar) =
        (Mutex::new(None), Condvar::new());
    let mut raised: Option<PyErr> = None;
    pool.in_place_scope(|scope| {
        let (stop, done, slot) = (&stop, &done, &slot);
        scope.spawn(move |_| {
            let r = catch_unwind(AssertUnwindSafe(|| work(stop, done)));
            *slot.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
            slot.1.notify_all();
        });
        loop {
            let finished = py.detach(|| {
                let guard = slot.0.lock().unwrap_or_else(PoisonError::into_inner);
                let (guard, _) = slot
                    .1
                    .wait_timeout_while(guard, Duration::from_millis(50), |r| r.is_none())
                    .unwrap_or_else(PoisonError::into_inner);
                guard.is_some()
            });
            if finished {
                break;
            }
            if raised.is_some() {
                continue;
            }
            let callback = progress.map(|cb| cb.call1((done.load(Ordering::Relaxed),)).map(drop));
            if let Err(e) = callback.unwrap_or(Ok(())).and_then(|_| py.check_signals()) {
                stop.store(true, Ordering::Relaxed);
                raised = Some(e);
            }
        }
    });
    let result = slot
        .0
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .expect("the worker always reports");
    match result {
        Ok(Ok(v)) => Ok((v, raised)),
        Ok(Err(e)) => Err(to_py(e)),
        Err(p) => Err(to_py(CoreError::Internal(format!(
            "a worker panicked: {}",
            panic_message(p)
        )))),
    }
}

// ---------------------------------------------------------------- arrays

fn invalid_state(what: &str) -> PyErr {
    to_py(CoreError::InvalidInput(format!("recycling state: {what}")))
}

/// The arrays of a saved recycling state, read by name.
struct SavedState<'a, 'py>(&'a Bound<'py, PyDict>);

impl SavedState<'_, '_> {
    fn array(&self, key: &str) -> PyResult<Bound<'_, PyAny>> {
        self.0
            .get_item(key)?
            .ok_or_else(|| invalid_state(&format!("'{key}' is missing")))
    }

    /// Non-negative int64 entries of `key` converted to `T`.
    fn indices<T: TryFrom<i64>>(&self, key: &str) -> PyResult<Vec<T>> {
        let a: PyReadonlyArray1<'_, i64> = self
            .array(key)?
            .extract()
            .map_err(|_| invalid_state(&format!("'{key}' must be a 1-d int64 array")))?;
        indices(&a, key)
    }

    fn floats<T: numpy::Element + Copy>(&self, key: &str) -> PyResult<Vec<T>> {
        let a: PyReadonlyArray1<'_, T> = self.array(key)?.extract().map_err(|_| {
            invalid_state(&format!(
                "'{key}' must be a 1-d array of {}",
                std::any::type_name::<T>()
            ))
        })?;
        Ok(vector(&a, key)?.to_vec())
    }
}

/// `values` cut into consecutive groups of `counts` entries.
fn split<T>(values: Vec<T>, counts: &[i64], what: &str) -> PyResult<Vec<Vec<T>>> {
    let total = counts.iter().try_fold(0usize, |acc, &c| {
        usize::try_from(c).ok().and_then(|c| acc.checked_add(c))
    });
    if total != Some(values.len()) {
        return Err(invalid_state(&format!(
            "{what} holds {} entries but its counts add up to {total:?}",
            values.len()
        )));
    }
    let mut it = values.into_iter();
    Ok(counts
        .iter()
        .map(|&c| it.by_ref().take(c as usize).collect())
        .collect())
}

/// The rows of a C-contiguous float32 matrix, checked against the features.
fn matrix<'a>(
    x: &'a PyReadonlyArray2<'_, f32>,
    n_features: usize,
    name: &str,
) -> PyResult<(&'a [f32], usize)> {
    let shape = x.shape();
    if shape[1] != n_features {
        return Err(to_py(CoreError::InvalidInput(format!(
            "{name} has {} features (columns) but the model expects {n_features}",
            shape[1]
        ))));
    }
    // as_slice() also accepts Fortran order, which would be read transposed.
    let c_order = x.is_c_contiguous();
    let data = x.as_slice().ok().filter(|_| c_order).ok_or_else(|| {
        PyTypeError::new_err(format!("{name} must be a C-contiguous float32 array"))
    })?;
    Ok((data, shape[0]))
}

/// Refuses, with `sparse_mlp.memory.require` (`InsufficientMemoryError`),
/// work that would allocate more than the machine has available, so that a
/// size given to an entry point makes an error instead of aborting the
/// process when the allocation fails.
fn require_memory(py: Python<'_>, bytes: u64, what: &str) -> PyResult<()> {
    py.import("sparse_mlp.memory")?
        .call_method1("require", (bytes, what))?;
    Ok(())
}

fn vector<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, name: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be a contiguous 1-d array")))
}

/// An index array of a saved layer (uint32, as files store row indices, or
/// int64) as `T`, each value checked to fit, with no copy of another width.
fn saved_indices<T: TryFrom<i64>>(a: &Bound<'_, PyAny>, l: usize, what: &str) -> PyResult<Vec<T>> {
    let name = format!("layer {l}: {what}");
    if let Ok(a) = a.extract::<PyReadonlyArray1<u32>>() {
        return vector(&a, &name)?
            .iter()
            .map(|&v| {
                T::try_from(i64::from(v))
                    .map_err(|_| to_py(CoreError::InvalidInput(format!("{name} {v} out of range"))))
            })
            .collect();
    }
    indices(&a.extract::<PyReadonlyArray1<i64>>()?, &name)
}

fn vector_mut<'a>(a: &'a mut PyReadwriteArray1<'_, f32>, name: &str) -> PyResult<&'a mut [f32]> {
    a.as_slice_mut().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a contiguous, writable float32 array"
        ))
    })
}

fn labels(y: &PyReadonlyArray1<'_, i64>, n: usize, n_classes: usize) -> PyResult<Vec<u32>> {
    let y = vector(y, "y")?;
    if y.len() != n {
        return Err(to_py(CoreError::InvalidInput(format!(
            "X has {n} samples but y has {} labels",
            y.len()
        ))));
    }
    core::labels_from_i64(y, n_classes).map_err(to_py)
}

// ---------------------------------------------------------------- network

/// (weight gradient in CSC order, bias gradient) of one layer.
type LayerGrads<'py> = (Bound<'py, PyArray1<f32>>, Bound<'py, PyArray1<f32>>);
/// (mean |activation|, utility, samples) of one hidden layer.
type ActivityArrays<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>, u64);

/// The compiled network. `sparse_mlp.SparseMLP` wraps it; use that.
#[pyclass(module = "sparse_mlp._core", name = "Network")]
struct PyNetwork {
    net: Network,
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
    /// with n_in, n_out, col_ptr, row_idx, values, momentum, bias, bias_momentum.
    #[staticmethod]
    #[pyo3(signature = (layers, activations, loss, output_activation, dropout, init, seed, rng_state, step, topology_version))]
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
    ) -> PyResult<Self> {
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
            let w = SparseMatrix::from_csc(n_in, n_out, col_ptr, row_idx, values)
                .and_then(|w| Layer::from_parts(w, bias, momentum, bias_momentum))
                .map_err(|e| to_py(CoreError::InvalidInput(format!("layer {l}: {e}"))))?;
            built.push(w);
        }
        let state = RunState {
            seed,
            rng: rng_state,
            step,
            topology_version,
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
    /// Bytes of each layer: connections, momentum, gradients, both index
    /// views, biases.
    #[getter]
    fn layer_bytes(&self) -> Vec<usize> {
        self.net.layer_bytes()
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

    /// Restarts the random streams (shuffling, SET, dropout) from `seed`.
    fn reseed(&mut self, seed: u64) {
        self.net.reseed(seed);
    }

    /// One SET step on every sparse layer: [(removed positive, removed negative)].
    #[pyo3(signature = (zeta, layers=None))]
    fn evolve_set(
        &mut self,
        py: Python<'_>,
        zeta: f64,
        layers: Option<Vec<usize>>,
    ) -> PyResult<Vec<(usize, usize)>> {
        let net = &mut self.net;
        let steps = compute(py, || net.evolve_set_layers(zeta, layers.as_deref()))?;
        Ok(steps
            .iter()
            .map(|s| (s.removed_positive, s.removed_negative))
            .collect())
    }

    /// Sum of absolute incoming weights of each neuron of hidden layer `h` (0-based).
    fn neuron_importance<'py>(
        &self,
        py: Python<'py>,
        h: usize,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        Ok(PyArray1::from_vec(
            py,
            self.net.neuron_importance(h).map_err(to_py)?,
        ))
    }

    /// Removes neurons `ids` of hidden layer `h` (0-based) with their
    /// connections and bias; with `shrink` the layer is compacted, otherwise
    /// the neurons stay as empty slots that regrowth may reconnect.
    #[pyo3(signature = (h, ids, shrink=true))]
    fn remove_neurons(
        &mut self,
        py: Python<'_>,
        h: usize,
        ids: PyReadonlyArray1<'_, i64>,
        shrink: bool,
    ) -> PyResult<()> {
        let ids = indices::<u32>(&ids, "ids")?;
        let net = &mut self.net;
        compute(py, || net.remove_neurons(h, &ids, shrink))
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

    /// `‖incoming‖₂ · ‖outgoing‖₂` of each neuron of hidden layer `h`.
    fn neuron_magnitudes<'py>(
        &self,
        py: Python<'py>,
        h: usize,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let net = &self.net;
        let m = compute(py, || net.neuron_magnitudes(h))?;
        Ok(PyArray1::from_vec(py, m))
    }

    /// Ids (sorted) of the neurons `rule` picks among the `eligible` ones:
    /// "smallest"/"largest"/"random" take `amount` neurons, "at_most" every
    /// neuron whose score is at most `amount`.
    fn select_neurons<'py>(
        &mut self,
        py: Python<'py>,
        scores: PyReadonlyArray1<'py, f64>,
        eligible: PyReadonlyArray1<'py, bool>,
        rule: &str,
        amount: f64,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let count = || -> PyResult<usize> {
            if amount.is_finite() && amount >= 0.0 && amount.fract() == 0.0 {
                Ok(amount as usize)
            } else {
                Err(to_py(CoreError::InvalidInput(format!(
                    "rule {rule:?} needs a whole number of neurons >= 0, got {amount}"
                ))))
            }
        };
        let rule = match rule {
            "smallest" => Selection::Smallest(count()?),
            "largest" => Selection::Largest(count()?),
            "random" => Selection::Random(count()?),
            "at_most" => Selection::AtMost(amount),
            _ => {
                return Err(to_py(CoreError::InvalidInput(format!(
                    "rule must be 'smallest', 'largest', 'random' or 'at_most', got {rule:?}"
                ))))
            }
        };
        let ids = self
            .net
            .select_neurons(
                vector(&scores, "scores")?,
                vector(&eligible, "eligible")?,
                rule,
            )
            .map_err(to_py)?;
        Ok(PyArray1::from_vec(
            py,
            ids.into_iter().map(i64::from).collect(),
        ))
    }

    /// Recycles neurons `ids` of hidden layer `h`: reinit "initial",
    /// "matrix_normal", "copy" or "zero"; outgoing "reinit", "zero" or
    /// "keep"; `interpolate_steps` > 0 blends old into new weights over that
    /// many training steps. Returns the touched (incoming, outgoing) counts.
    #[pyo3(signature = (h, ids, reinit="initial", outgoing="reinit", interpolate_steps=0))]
    fn recycle_neurons(
        &mut self,
        py: Python<'_>,
        h: usize,
        ids: PyReadonlyArray1<'_, i64>,
        reinit: &str,
        outgoing: &str,
        interpolate_steps: u32,
    ) -> PyResult<(usize, usize)> {
        let ids = indices::<u32>(&ids, "ids")?;
        let opts = RecycleOptions {
            reinit: Reinit::parse(reinit).map_err(to_py)?,
            outgoing: Outgoing::parse(outgoing).map_err(to_py)?,
            interpolate_steps,
        };
        let net = &mut self.net;
        let r = compute(py, || net.recycle_neurons(h, &ids, opts))?;
        Ok((r.incoming, r.outgoing))
    }

    /// Keeps SET from pruning the connections of neurons `ids` of hidden
    /// layer `h` until the next call for that layer (empty: no protection).
    fn protect_neurons(&mut self, h: usize, ids: PyReadonlyArray1<'_, i64>) -> PyResult<()> {
        let ids = indices::<u32>(&ids, "ids")?;
        self.net.protect_neurons(h, &ids).map_err(to_py)
    }

    /// Starts or stops gathering activation statistics during training.
    #[pyo3(signature = (enabled, utility_decay=None))]
    fn track_activity(&mut self, enabled: bool, utility_decay: Option<f64>) -> PyResult<()> {
        self.net
            .track_activity(enabled, utility_decay)
            .map_err(to_py)
    }

    /// (mean |activation| per neuron, utility per neuron, samples seen) of
    /// hidden layer `h` since tracking started or was reset.
    fn activity<'py>(&self, py: Python<'py>, h: usize) -> PyResult<ActivityArrays<'py>> {
        let (mean_abs, utility, samples) = self.net.activity(h).map_err(to_py)?;
        Ok((
            PyArray1::from_vec(py, mean_abs),
            PyArray1::from_vec(py, utility),
            samples,
        ))
    }

    /// Clears the mean activations (utilities keep running).
    fn reset_activity(&mut self) {
        self.net.reset_activity();
    }

    /// What neuron recycling keeps inside the network between steps (SET
    /// protection, pending interpolations, activity statistics) as a dict of
    /// 1-d arrays, for checkpoints; `set_recycling_state` takes it back.
    fn recycling_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.net.recycling_state();
        let d = PyDict::new(py);
        let ints = |v: Vec<i64>| PyArray1::from_vec(py, v);
        let counts = |v: Vec<usize>| ints(v.into_iter().map(|n| n as i64).collect());
        d.set_item(
            "protected_counts",
            counts(s.protected.iter().map(Vec::len).collect()),
        )?;
        d.set_item(
            "protected_ids",
            ints(s.protected.iter().flatten().map(|&j| j as i64).collect()),
        )?;
        let blends = &s.blends;
        d.set_item(
            "blend_steps",
            counts(blends.iter().map(|b| b.steps_left as usize).collect()),
        )?;
        d.set_item(
            "blend_weights",
            counts(blends.iter().map(|b| b.weights.len()).collect()),
        )?;
        d.set_item(
            "blend_biases",
            counts(blends.iter().map(|b| b.biases.len()).collect()),
        )?;
        let weights: Vec<_> = blends
            .iter()
            .flat_map(|b| b.weights.iter().copied())
            .collect();
        d.set_item(
            "weight_layer",
            counts(weights.iter().map(|e| e.0).collect()),
        )?;
        d.set_item(
            "weight_row",
            counts(weights.iter().map(|e| e.1 as usize).collect()),
        )?;
        d.set_item(
            "weight_col",
            counts(weights.iter().map(|e| e.2 as usize).collect()),
        )?;
        d.set_item(
            "weight_delta",
            PyArray1::from_iter(py, weights.iter().map(|e| e.3)),
        )?;
        let biases: Vec<_> = blends
            .iter()
            .flat_map(|b| b.biases.iter().copied())
            .collect();
        d.set_item("bias_layer", counts(biases.iter().map(|e| e.0).collect()))?;
        d.set_item(
            "bias_neuron",
            counts(biases.iter().map(|e| e.1 as usize).collect()),
        )?;
        d.set_item(
            "bias_delta",
            PyArray1::from_iter(py, biases.iter().map(|e| e.2)),
        )?;
        let act = s.activity.as_ref();
        d.set_item(
            "activity_samples",
            ints(act.map(|a| a.samples as i64).into_iter().collect()),
        )?;
        d.set_item(
            "activity_decay",
            PyArray1::from_iter(py, act.and_then(|a| a.decay)),
        )?;
        let concat = |v: fn(&Activity) -> &Vec<Vec<f64>>| {
            PyArray1::from_vec(py, act.map_or(Vec::new(), |a| v(a).concat()))
        };
        d.set_item("activity_sum_abs", concat(|a| &a.sum_abs))?;
        d.set_item("activity_utility", concat(|a| &a.utility))?;
        Ok(d)
    }

    /// Restores a dict from `recycling_state` (of a network of the same
    /// shape); a malformed one is refused and nothing changes.
    fn set_recycling_state(&mut self, state: &Bound<'_, PyDict>) -> PyResult<()> {
        let saved = SavedState(state);
        let widths: Vec<usize> = {
            let sizes = self.net.sizes();
            sizes[1..sizes.len() - 1].to_vec()
        };
        let protected = split(
            saved.indices("protected_ids")?,
            &saved.indices("protected_counts")?,
            "protected_ids",
        )?;
        let steps: Vec<u32> = saved.indices("blend_steps")?;
        let (layers, rows, cols) = (
            saved.indices::<usize>("weight_layer")?,
            saved.indices::<u32>("weight_row")?,
            saved.indices::<u32>("weight_col")?,
        );
        let deltas = saved.floats::<f32>("weight_delta")?;
        if [rows.len(), cols.len(), deltas.len()] != [layers.len(); 3] {
            return Err(invalid_state("the weight_* arrays differ in length"));
        }
        let weights: Vec<_> = (0..layers.len())
            .map(|i| (layers[i], rows[i], cols[i], deltas[i]))
            .collect();
        let (layers, neurons) = (
            saved.indices::<usize>("bias_layer")?,
            saved.indices::<u32>("bias_neuron")?,
        );
        let deltas = saved.floats::<f32>("bias_delta")?;
        if [neurons.len(), deltas.len()] != [layers.len(); 2] {
            return Err(invalid_state("the bias_* arrays differ in length"));
        }
        let biases: Vec<_> = (0..layers.len())
            .map(|i| (layers[i], neurons[i], deltas[i]))
            .collect();
        let weights = split(weights, &saved.indices("blend_weights")?, "weight_*")?;
        let biases = split(biases, &saved.indices("blend_biases")?, "bias_*")?;
        if weights.len() != steps.len() || biases.len() != steps.len() {
            return Err(invalid_state(
                "blend_steps, blend_weights and blend_biases differ in length",
            ));
        }
        let blends = steps
            .into_iter()
            .zip(weights.into_iter().zip(biases))
            .map(|(steps_left, (weights, biases))| SavedBlend {
                steps_left,
                weights,
                biases,
            })
            .collect();
        let samples: Vec<u64> = saved.indices("activity_samples")?;
        let decay = saved.floats::<f64>("activity_decay")?;
        let activity = match (samples.as_slice(), decay.as_slice()) {
            ([], []) => {
                for key in ["activity_sum_abs", "activity_utility"] {
                    if !saved.floats::<f64>(key)?.is_empty() {
                        return Err(invalid_state(&format!(
                            "'{key}' has values but activity is off"
                        )));
                    }
                }
                None
            }
            ([n], d) if d.len() <= 1 => {
                let per_layer: Vec<i64> = widths.iter().map(|&w| w as i64).collect();
                let widths_of = |key: &str| -> PyResult<Vec<Vec<f64>>> {
                    let v = saved.floats::<f64>(key)?;
                    split(v, &per_layer, key)
                };
                Some(Activity {
                    samples: *n,
                    sum_abs: widths_of("activity_sum_abs")?,
                    decay: d.first().copied(),
                    utility: widths_of("activity_utility")?,
                })
            }
            _ => {
                return Err(invalid_state(
                    "activity_samples and activity_decay hold more than one value",
                ))
            }
        };
        let state = RecyclingState {
            protected,
            blends,
            activity,
        };
        self.net.set_recycling_state(state).map_err(to_py)
    }

    /// Interpolations of recycled neurons still in progress.
    #[getter]
    fn pending_blends(&self) -> usize {
        self.net.pending_blends()
    }

    /// The midpoint loss of the current weights (without the step size).
    fn midpoint_loss(&self, weight: f64, midpoint: &str, distance: &str) -> PyResult<f64> {
        let mp = Midpoint::new(weight, midpoint, distance).map_err(to_py)?;
        Ok(mp.loss(self.net.layers()))
    }

    /// Arrays of layer `l`: dict with n_in, n_out, col_ptr (int64), row_idx
    /// (int64), values, momentum, bias, bias_momentum (float32), all copies.
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
        d.set_item(
            "row_idx",
            PyArray1::from_vec(py, w.row_idx().iter().map(|&r| r as i64).collect()),
        )?;
        d.set_item("values", PyArray1::from_slice(py, w.values()))?;
        d.set_item("momentum", PyArray1::from_slice(py, layer.momentum()))?;
        d.set_item("bias", PyArray1::from_slice(py, layer.bias()))?;
        d.set_item(
            "bias_momentum",
            PyArray1::from_slice(py, layer.bias_momentum()),
        )?;
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
}

/// Bytes of the parameters (weights, both views' indices, optimizer state,
/// bias) of a network with these `sizes` and per-layer connection counts,
/// computed without building it.
#[pyfunction]
fn parameter_bytes(sizes: Vec<usize>, nnz: Vec<usize>) -> PyResult<u64> {
    if sizes.len() != nnz.len() + 1 {
        return Err(to_py(CoreError::InvalidInput(format!(
            "{} sizes need {} connection counts, got {}",
            sizes.len(),
            sizes.len().saturating_sub(1),
            nnz.len()
        ))));
    }
    Ok(sizes
        .windows(2)
        .zip(&nnz)
        .map(|(s, &k)| core::layer::layer_bytes_for(s[0], s[1], k))
        .fold(0, u64::saturating_add))
}

/// Connections of an Erdős–Rényi layer: round(min(1, ε(n_in+n_out)/(n_in·n_out)) · n_in·n_out).
#[pyfunction]
fn er_nnz(epsilon: f64, n_in: usize, n_out: usize) -> PyResult<u64> {
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(to_py(CoreError::InvalidInput(format!(
            "epsilon must be a positive number, got {epsilon}"
        ))));
    }
    Ok(core::init::er_nnz(epsilon, n_in, n_out))
}

/// W5: seconds of each of `repeats` forward + backward passes of a random
/// layer (see `sparse_mlp_core::bench`), and its connection count.
#[pyfunction]
#[pyo3(signature = (n_in, n_out, epsilon, batch_size, repeats = 20, seed = 0))]
fn bench_layer(
    py: Python<'_>,
    n_in: usize,
    n_out: usize,
    epsilon: f64,
    batch_size: usize,
    repeats: usize,
    seed: u64,
) -> PyResult<(Vec<f64>, u64)> {
    let nnz = er_nnz(epsilon, n_in, n_out)?;
    let times = compute(py, || {
        core::bench::time_layer_passes(n_in, n_out, nnz, batch_size, repeats, seed)
    })?;
    Ok((times, nnz))
}

/// Indices from Python (int64, as `Network.layer_state` gives them) as the
/// core's types, with a named error for negative or too large entries.
fn indices<T: TryFrom<i64>>(a: &PyReadonlyArray1<'_, i64>, name: &str) -> PyResult<Vec<T>> {
    vector(a, name)?
        .iter()
        .map(|&v| {
            T::try_from(v).map_err(|_| {
                to_py(CoreError::InvalidInput(format!(
                    "{name} holds {v}, which is not a valid index"
                )))
            })
        })
        .collect()
}

/// A gradient (or any per-connection values) computed on one topology,
/// moved onto another of the same layer: entries of connections present in
/// both keep their value, entries of removed connections are dropped, new
/// connections get 0. Returns the values in the target's CSC order and the
/// number of dropped entries.
#[pyfunction]
fn remap_values<'py>(
    py: Python<'py>,
    from_col_ptr: PyReadonlyArray1<'_, i64>,
    from_row_idx: PyReadonlyArray1<'_, i64>,
    values: PyReadonlyArray1<'_, f32>,
    to_col_ptr: PyReadonlyArray1<'_, i64>,
    to_row_idx: PyReadonlyArray1<'_, i64>,
) -> PyResult<(Bound<'py, PyArray1<f32>>, usize)> {
    let (fp, fr) = (
        indices::<usize>(&from_col_ptr, "from_col_ptr")?,
        indices::<u32>(&from_row_idx, "from_row_idx")?,
    );
    let (tp, tr) = (
        indices::<usize>(&to_col_ptr, "to_col_ptr")?,
        indices::<u32>(&to_row_idx, "to_row_idx")?,
    );
    let values = vector(&values, "values")?;
    let mut out = vec![0.0f32; tr.len()];
    let from = core::remap::Topology {
        col_ptr: &fp,
        row_idx: &fr,
    };
    let to = core::remap::Topology {
        col_ptr: &tp,
        row_idx: &tr,
    };
    let dropped = core::remap::remap_values(from, values, to, &mut out).map_err(to_py)?;
    Ok((PyArray1::from_vec(py, out), dropped))
}

/// (col_ptr, row_idx, values) of one layer in CSC order, as numpy arrays.
type CscArrays<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f32>>,
);

/// One layer's replicas (col_ptr, row_idx, values) averaged over the union
/// of their connections (missing = 0) and pruned back to `target_nnz` by
/// removing the averages closest to zero, per sign. Returns (col_ptr,
/// row_idx, values) and the number of connections in the union.
#[pyfunction]
fn union_average<'py>(
    py: Python<'py>,
    replicas: Vec<(
        PyReadonlyArray1<'py, i64>,
        PyReadonlyArray1<'py, i64>,
        PyReadonlyArray1<'py, f32>,
    )>,
    n_in: usize,
    target_nnz: usize,
) -> PyResult<(CscArrays<'py>, usize)> {
    let mut owned = Vec::with_capacity(replicas.len());
    for (r, (ptr, rows, values)) in replicas.iter().enumerate() {
        owned.push((
            indices::<usize>(ptr, &format!("replica {r} col_ptr"))?,
            indices::<u32>(rows, &format!("replica {r} row_idx"))?,
            vector(values, &format!("replica {r} values"))?,
        ));
    }
    let parts: Vec<_> = owned
        .iter()
        .map(|(ptr, rows, values)| {
            (
                core::remap::Topology {
                    col_ptr: ptr,
                    row_idx: rows,
                },
                *values,
            )
        })
        .collect();
    let avg = compute(py, || core::remap::union_average(&parts, n_in, target_nnz))?;
    let csc = (
        PyArray1::from_vec(py, avg.col_ptr.iter().map(|&p| p as i64).collect()),
        PyArray1::from_vec(py, avg.row_idx.iter().map(|&r| r as i64).collect()),
        PyArray1::from_vec(py, avg.values),
    );
    Ok((csc, avg.union_nnz))
}

/// The instruction set the kernels run with: "avx512", "avx2" or "baseline".
#[pyfunction]
fn simd_level() -> &'static str {
    core::simd::level().name()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyNetwork>()?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(er_nnz, m)?)?;
    m.add_function(wrap_pyfunction!(parameter_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(bench_layer, m)?)?;
    m.add_function(wrap_pyfunction!(remap_values, m)?)?;
    m.add_function(wrap_pyfunction!(union_average, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // the widest layer (and the most connections in one layer) the core indexes
    m.add("MAX_INDEX", core::csr::MAX_INDEX)?;
    m.add("INIT_NAMES", core::init::INIT_NAMES.to_vec())?;
    Ok(())
}
