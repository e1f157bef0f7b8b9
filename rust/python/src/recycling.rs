//! Neuron recycling on the compiled network, and its state for checkpoints.

use std::collections::HashMap;

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sparse_mlp_core::columns::{Column, Kind, RECYCLING_COLUMNS};
use sparse_mlp_core::recycle::{
    Midpoint, Outgoing, RecycleOptions, RecyclingState, Reinit, Selection,
};
use sparse_mlp_core::CoreError;

use crate::convert::{indices, vector};
use crate::errors::{invalid, to_py};
use crate::network::{ActivityArrays, PyNetwork};
use crate::pool::compute;

#[pymethods]
impl PyNetwork {
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
    /// 1-d arrays (the core's columns), for checkpoints; `set_recycling_state`
    /// takes it back.
    fn recycling_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, column) in self.net.recycling_state().to_columns() {
            match column {
                Column::Int(v) => d.set_item(name, PyArray1::from_vec(py, v))?,
                Column::F32(v) => d.set_item(name, PyArray1::from_vec(py, v))?,
                Column::F64(v) => d.set_item(name, PyArray1::from_vec(py, v))?,
            }
        }
        Ok(d)
    }

    /// Restores a dict from `recycling_state` (of a network of the same
    /// shape); a malformed one is refused and nothing changes.
    fn set_recycling_state(&mut self, state: &Bound<'_, PyDict>) -> PyResult<()> {
        let mut columns = HashMap::new();
        for (name, kind) in RECYCLING_COLUMNS {
            let Some(item) = state.get_item(name)? else {
                continue; // the core names what is missing
            };
            let bad = |what: &str| {
                invalid(format!(
                    "recycling state: '{name}' must be a 1-d array of {what}"
                ))
            };
            let column = match kind {
                Kind::Int => Column::Int(
                    vector(
                        &item
                            .extract::<PyReadonlyArray1<'_, i64>>()
                            .map_err(|_| bad("int64"))?,
                        name,
                    )?
                    .to_vec(),
                ),
                Kind::F32 => Column::F32(
                    vector(
                        &item
                            .extract::<PyReadonlyArray1<'_, f32>>()
                            .map_err(|_| bad("float32"))?,
                        name,
                    )?
                    .to_vec(),
                ),
                Kind::F64 => Column::F64(
                    vector(
                        &item
                            .extract::<PyReadonlyArray1<'_, f64>>()
                            .map_err(|_| bad("float64"))?,
                        name,
                    )?
                    .to_vec(),
                ),
            };
            columns.insert(name.to_string(), column);
        }
        let sizes = self.net.sizes();
        let state =
            RecyclingState::from_columns(&columns, &sizes[1..sizes.len() - 1]).map_err(to_py)?;
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
}
