//! numpy arrays in and out: checked views of the caller's arrays.

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use sparse_mlp_core as core;
use sparse_mlp_core::CoreError;

use crate::errors::to_py;

/// The rows of a C-contiguous float32 matrix, checked against the features.
pub(crate) fn matrix<'a>(
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
pub(crate) fn require_memory(py: Python<'_>, bytes: u64, what: &str) -> PyResult<()> {
    py.import("sparse_mlp.memory")?
        .call_method1("require", (bytes, what))?;
    Ok(())
}

pub(crate) fn vector<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray1<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be a contiguous 1-d array")))
}

/// An index array of a saved layer (uint32, as files store row indices, or
/// int64) as `T`, each value checked to fit, with no copy of another width.
pub(crate) fn saved_indices<T: TryFrom<i64>>(
    a: &Bound<'_, PyAny>,
    l: usize,
    what: &str,
) -> PyResult<Vec<T>> {
    any_indices(a, &format!("layer {l}: {what}"))
}

/// An index array given as uint32 (as the core holds row indices) or int64,
/// as `T`, each value checked to fit.
pub(crate) fn any_indices<T: TryFrom<i64>>(a: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<T>> {
    if let Ok(a) = a.extract::<PyReadonlyArray1<u32>>() {
        return vector(&a, name)?
            .iter()
            .map(|&v| {
                T::try_from(i64::from(v))
                    .map_err(|_| to_py(CoreError::InvalidInput(format!("{name} {v} out of range"))))
            })
            .collect();
    }
    indices(&a.extract::<PyReadonlyArray1<i64>>()?, name)
}

pub(crate) fn vector_mut<'a>(
    a: &'a mut PyReadwriteArray1<'_, f32>,
    name: &str,
) -> PyResult<&'a mut [f32]> {
    a.as_slice_mut().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a contiguous, writable float32 array"
        ))
    })
}

pub(crate) fn labels(
    y: &PyReadonlyArray1<'_, i64>,
    n: usize,
    n_classes: usize,
) -> PyResult<Vec<u32>> {
    let y = vector(y, "y")?;
    if y.len() != n {
        return Err(to_py(CoreError::InvalidInput(format!(
            "X has {n} samples but y has {} labels",
            y.len()
        ))));
    }
    core::labels_from_i64(y, n_classes).map_err(to_py)
}

/// Indices from Python (int64, as `Network.layer_state` gives them) as the
/// core's types, with a named error for negative or too large entries.
pub(crate) fn indices<T: TryFrom<i64>>(
    a: &PyReadonlyArray1<'_, i64>,
    name: &str,
) -> PyResult<Vec<T>> {
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

/// The targets a call gives: int64 class labels `(n,)` or float32 values
/// `(n, outputs)` (regression).
pub(crate) enum GivenTargets<'py> {
    Classes(Vec<u32>),
    Values(PyReadonlyArray2<'py, f32>),
}

impl<'py> GivenTargets<'py> {
    pub(crate) fn new(y: &Bound<'py, PyAny>, n: usize, n_outputs: usize) -> PyResult<Self> {
        if let Ok(v) = y.extract::<PyReadonlyArray2<'py, f32>>() {
            let shape = v.shape();
            if shape != [n, n_outputs] {
                return Err(to_py(CoreError::InvalidInput(format!(
                    "X has {n} samples and the model {n_outputs} outputs, but y has shape {shape:?}"
                ))));
            }
            matrix(&v, n_outputs, "y")?;
            return Ok(GivenTargets::Values(v));
        }
        let Ok(labels_given) = y.extract::<PyReadonlyArray1<'py, i64>>() else {
            return Err(PyTypeError::new_err(
                "y must be int64 class labels of shape (n,) or float32 targets of shape (n, outputs)",
            ));
        };
        Ok(GivenTargets::Classes(labels(&labels_given, n, n_outputs)?))
    }

    /// The core's view, with per-sample `weights`.
    pub(crate) fn view<'a>(&'a self, weights: Option<&'a [f32]>) -> core::Targets<'a> {
        let t = match self {
            GivenTargets::Classes(l) => core::Targets::classes(l),
            GivenTargets::Values(v) => core::Targets::values(v.as_slice().unwrap_or(&[])),
        };
        t.weighted(weights)
    }
}
