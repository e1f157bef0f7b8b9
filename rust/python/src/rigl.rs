//! RigL's building blocks on the compiled network's layers: the gradients of
//! missing connections from a batch's activations and errors (exact search or
//! candidates), and the prune-and-grow step.

use numpy::{
    PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sparse_mlp_core::layer::Layer;
use sparse_mlp_core::network::Network;
use sparse_mlp_core::regrowth::{Gathered, LayerWindow, Search, Window};
use sparse_mlp_core::rigl::{self, Batch, GrowInit, Scored};
use sparse_mlp_core::rng::Rng;
use sparse_mlp_core::CoreError;

use crate::convert::{matrix, vector, vector_mut};
use crate::errors::to_py;
use crate::network::PyNetwork;
use crate::pool::compute;

/// Positions and their gradients, best first.
type Ranked<'py> = (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<f32>>);

/// A batch's activations (n_in × B) and errors (n_out × B), feature-major.
fn batch<'a>(
    a: &'a PyReadonlyArray2<'_, f32>,
    delta: &'a PyReadonlyArray2<'_, f32>,
) -> PyResult<(&'a [f32], &'a [f32], usize)> {
    let b = a.shape()[1];
    let (a, _) = matrix(a, b, "a")?;
    let (delta, _) = matrix(delta, b, "delta")?;
    Ok((a, delta, b))
}

fn ranked<'py>(
    py: Python<'py>,
    top: &[Scored],
) -> (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<f32>>) {
    (
        PyArray1::from_iter(py, top.iter().map(|s| s.position)),
        PyArray1::from_iter(py, top.iter().map(|s| s.grad)),
    )
}

#[pymethods]
impl PyNetwork {
    /// The `k` missing connections of layer `l` with the largest gradient
    /// |⟨a_i, δ_j⟩| / B, exactly: (linear positions j·n_in + i, gradients),
    /// best first; ties by a hash of (`seed`, position).
    fn rigl_exact<'py>(
        &self,
        py: Python<'py>,
        l: usize,
        a: PyReadonlyArray2<'py, f32>,
        delta: PyReadonlyArray2<'py, f32>,
        k: usize,
        seed: u64,
    ) -> PyResult<Ranked<'py>> {
        let layer = layer_at(&self.net, l)?;
        let (a, delta, b) = batch(&a, &delta)?;
        let top = compute(py, || {
            rigl::top_missing_exact(layer.weights(), &Batch::per_sample(a, delta, b), k, seed)
        })?;
        Ok(ranked(py, &top))
    }

    /// `count` distinct missing positions of layer `l`, uniformly drawn
    /// from `seed` (all of them when fewer are missing), sorted.
    fn rigl_candidates<'py>(
        &self,
        py: Python<'py>,
        l: usize,
        count: usize,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let layer = layer_at(&self.net, l)?;
        let mut rng = Rng::new(seed);
        Ok(PyArray1::from_vec(
            py,
            rigl::draw_candidates(layer.weights(), count, &mut rng),
        ))
    }

    /// Adds each candidate's gradient over the batch (a, delta) to `sums`.
    fn rigl_accumulate(
        &self,
        py: Python<'_>,
        l: usize,
        candidates: PyReadonlyArray1<'_, u64>,
        a: PyReadonlyArray2<'_, f32>,
        delta: PyReadonlyArray2<'_, f32>,
        mut sums: PyReadwriteArray1<'_, f32>,
    ) -> PyResult<()> {
        let layer = layer_at(&self.net, l)?;
        let (a, delta, b) = batch(&a, &delta)?;
        let candidates = vector(&candidates, "candidates")?;
        let sums = vector_mut(&mut sums, "sums")?;
        compute(py, || {
            rigl::accumulate_gradients(
                layer.weights(),
                candidates,
                &Batch::per_sample(a, delta, b),
                sums,
            )
        })
    }

    /// Prunes layer `l` as SET does and grows the best of the offered
    /// positions (missing ones, best first, with their gradients) in place:
    /// at zero, or at −`init_lr`·g. Returns (removed positive, removed
    /// negative, grown positions).
    #[pyo3(signature = (l, zeta, positions, grads, init_lr=None))]
    fn rigl_prune_grow<'py>(
        &mut self,
        py: Python<'py>,
        l: usize,
        zeta: f64,
        positions: PyReadonlyArray1<'py, u64>,
        grads: PyReadonlyArray1<'py, f32>,
        init_lr: Option<f32>,
    ) -> PyResult<(usize, usize, Bound<'py, PyArray1<u64>>)> {
        let (positions, grads) = paired(&positions, "positions", &grads, "gradients")?;
        let offered: Vec<Scored> = positions
            .iter()
            .zip(grads)
            .map(|(&p, &g)| Scored::new(p, g, 0))
            .collect();
        let init = init_lr.map_or(GrowInit::Zero, GrowInit::Gradient);
        let net = &mut self.net;
        let (step, grown) = compute(py, || net.rigl_prune_grow(l, zeta, &offered, init))?;
        Ok((
            step.removed_positive,
            step.removed_negative,
            PyArray1::from_vec(py, grown),
        ))
    }
}

/// What an update did to a layer: (layer, removed positive, removed
/// negative, grown positions, candidates offered).
type LayerUpdate<'py> = (usize, usize, usize, Bound<'py, PyArray1<u64>>, u64);

/// An open RigL window as Python data: (step, batches, one dict per layer,
/// seed).
type WindowData<'py> = (u64, u64, Vec<Bound<'py, PyDict>>, u64);

#[pymethods]
impl PyNetwork {
    /// Opens RigL's window for the update at `step` on `layers`: from now on
    /// every backward pass gathers what the update needs: the gradient sums
    /// of `candidates` × (connections to grow) uniformly drawn missing
    /// positions, or with `candidates=None` the batches themselves for the
    /// exact search.
    /// Draws and ties use `seed` (default: the network's).
    #[pyo3(signature = (layers, zeta, step, candidates=None, seed=None))]
    fn rigl_open(
        &mut self,
        layers: Vec<usize>,
        zeta: f64,
        step: u64,
        candidates: Option<f64>,
        seed: Option<u64>,
    ) -> PyResult<()> {
        let search = candidates.map_or(Search::Exact, Search::Candidates);
        self.net
            .rigl_open(&layers, zeta, search, step, seed)
            .map_err(to_py)
    }

    /// The open window's candidate sums, every layer's one after the other,
    /// set back to zero with its batch count (what a WASAP worker sends).
    fn rigl_take_sums<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let window = self.net.rigl_window_mut().map_err(to_py)?;
        Ok(PyArray1::from_vec(py, window.take_sums()))
    }

    /// Adds sums from `rigl_take_sums` of a window with the same keys on the
    /// same topology, gathered over `batches` mini-batches.
    fn rigl_add_sums(&mut self, sums: PyReadonlyArray1<'_, f32>, batches: u64) -> PyResult<()> {
        let sums = vector(&sums, "sums")?;
        let window = self.net.rigl_window_mut().map_err(to_py)?;
        window.add_sums(sums, batches).map_err(to_py)
    }

    /// RigL's update: closes the window, prunes each of its layers as SET
    /// does (connections at `keep[l]`, sorted linear positions, stay) and
    /// grows the missing positions with the largest mean gradient, at zero
    /// or at −`init_lr`·g. Returns per layer (layer, removed positive,
    /// removed negative, grown positions, candidates offered).
    #[pyo3(signature = (zeta, init_lr=None, keep=Vec::new()))]
    fn rigl_update<'py>(
        &mut self,
        py: Python<'py>,
        zeta: f64,
        init_lr: Option<f32>,
        keep: Vec<PyReadonlyArray1<'py, u64>>,
    ) -> PyResult<Vec<LayerUpdate<'py>>> {
        let keep: Vec<Vec<u64>> = keep
            .iter()
            .map(|k| vector(k, "keep").map(<[u64]>::to_vec))
            .collect::<PyResult<_>>()?;
        let init = init_lr.map_or(GrowInit::Zero, GrowInit::Gradient);
        let net = &mut self.net;
        let done = compute(py, || net.rigl_update(zeta, init, &keep))?;
        Ok(done
            .into_iter()
            .map(|u| {
                let grown = PyArray1::from_vec(py, u.grown);
                let (p, n) = (u.removed_positive, u.removed_negative);
                (u.layer, p, n, grown, u.candidates)
            })
            .collect())
    }

    /// The open RigL window (None when none is) for a checkpoint:
    /// (step, batches, per layer a dict of `layer`, `shape` and either
    /// `positions` and `sums` or `a`, `delta` and `len`, seed).
    fn rigl_window<'py>(&self, py: Python<'py>) -> PyResult<Option<WindowData<'py>>> {
        let Some(win) = self.net.rigl_window() else {
            return Ok(None);
        };
        let mut parts = Vec::with_capacity(win.layers.len());
        for part in &win.layers {
            let d = PyDict::new(py);
            d.set_item("layer", part.layer)?;
            d.set_item("shape", part.shape)?;
            match &part.gathered {
                Gathered::Candidates { positions, sums } => {
                    d.set_item("positions", PyArray1::from_slice(py, positions))?;
                    d.set_item("sums", PyArray1::from_slice(py, sums))?;
                }
                Gathered::Exact { a, delta, len } => {
                    d.set_item("a", PyArray1::from_slice(py, a))?;
                    d.set_item("delta", PyArray1::from_slice(py, delta))?;
                    d.set_item("len", *len)?;
                }
            }
            parts.push(d);
        }
        Ok(Some((win.step, win.batches, parts, win.seed)))
    }

    /// Puts back a window from `rigl_window` (None closes the open one); a
    /// malformed one is refused and nothing changes.
    #[pyo3(signature = (window))]
    fn set_rigl_window(&mut self, window: Option<WindowData<'_>>) -> PyResult<()> {
        let window = match window {
            None => None,
            Some((step, batches, parts, seed)) => Some(Window {
                step,
                seed,
                batches,
                layers: parts.iter().map(layer_window).collect::<PyResult<_>>()?,
            }),
        };
        self.net.set_rigl_window(window).map_err(to_py)
    }
}

/// One layer's part of a saved window.
fn layer_window(d: &Bound<'_, PyDict>) -> PyResult<LayerWindow> {
    let item = |name: &str| -> PyResult<Bound<'_, PyAny>> {
        d.get_item(name)?.ok_or_else(|| {
            to_py(CoreError::InvalidInput(format!(
                "the RigL window lacks '{name}'"
            )))
        })
    };
    let floats = |name: &str| -> PyResult<Vec<f32>> {
        Ok(vector(&item(name)?.extract::<PyReadonlyArray1<'_, f32>>()?, name)?.to_vec())
    };
    let gathered = if d.contains("positions")? {
        let positions = item("positions")?.extract::<PyReadonlyArray1<'_, u64>>()?;
        Gathered::Candidates {
            positions: vector(&positions, "positions")?.to_vec(),
            sums: floats("sums")?,
        }
    } else {
        Gathered::Exact {
            a: floats("a")?,
            delta: floats("delta")?,
            len: item("len")?.extract()?,
        }
    };
    Ok(LayerWindow {
        layer: item("layer")?.extract()?,
        shape: item("shape")?.extract()?,
        gathered,
    })
}

/// The `k` candidates with the largest |sum|: (positions, sums), best first.
#[pyfunction]
pub(crate) fn rigl_top<'py>(
    py: Python<'py>,
    candidates: PyReadonlyArray1<'py, u64>,
    sums: PyReadonlyArray1<'py, f32>,
    k: usize,
    seed: u64,
) -> PyResult<Ranked<'py>> {
    let (candidates, sums) = paired(&candidates, "candidates", &sums, "sums")?;
    Ok(ranked(py, &rigl::top_candidates(candidates, sums, k, seed)))
}

/// Two 1-d arrays that go together, or an error naming their lengths.
fn paired<'a, A: numpy::Element, B: numpy::Element>(
    a: &'a PyReadonlyArray1<'_, A>,
    a_name: &str,
    b: &'a PyReadonlyArray1<'_, B>,
    b_name: &str,
) -> PyResult<(&'a [A], &'a [B])> {
    let (a, b) = (vector(a, a_name)?, vector(b, b_name)?);
    if a.len() != b.len() {
        return Err(to_py(CoreError::InvalidInput(format!(
            "{} {a_name} but {} {b_name}",
            a.len(),
            b.len()
        ))));
    }
    Ok((a, b))
}

/// Layer `l` of the network, or an error naming the range.
fn layer_at(net: &Network, l: usize) -> PyResult<&Layer> {
    net.layers().get(l).ok_or_else(|| {
        to_py(CoreError::InvalidInput(format!(
            "layer index {l} out of range for a network of {} layers",
            net.layers().len()
        )))
    })
}
