//! Core errors and panics as the exceptions of `sparse_mlp.errors`.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;
use sparse_mlp_core::CoreError;

/// Maps a core error onto `sparse_mlp.errors`: bad input is an
/// `InvalidInputError` (a `ValueError`), divergence a `DivergenceError`,
/// anything else a `SparseMLPError`.
pub(crate) fn to_py(e: CoreError) -> PyErr {
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

pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// An `InvalidInputError` with this message.
pub(crate) fn invalid(message: impl Into<String>) -> PyErr {
    to_py(CoreError::InvalidInput(message.into()))
}
