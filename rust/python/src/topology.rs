//! SET and Importance Pruning on the compiled network.

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::convert::indices;
use crate::errors::to_py;
use crate::network::PyNetwork;
use crate::pool::compute;

#[pymethods]
impl PyNetwork {
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
}
