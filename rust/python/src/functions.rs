//! Module-level functions: sizes and counts, the kernel benchmark, and the
//! helpers of data-parallel training (remapping and averaging topologies).

use numpy::{PyArray1, PyReadonlyArray1, PyReadwriteArray1};
use pyo3::prelude::*;
use sparse_mlp_core as core;
use sparse_mlp_core::precision::{Bf16, Stored};
use sparse_mlp_core::CoreError;

use crate::convert::{any_indices, indices, vector, vector_mut};
use crate::errors::to_py;
use crate::pool::compute;

/// Bytes of the parameters (weights, both views' indices, optimizer state,
/// bias) of a network with these `sizes` and per-layer connection counts,
/// computed without building it.
#[pyfunction]
pub(crate) fn parameter_bytes(sizes: Vec<usize>, nnz: Vec<usize>) -> PyResult<u64> {
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
pub(crate) fn er_nnz(epsilon: f64, n_in: usize, n_out: usize) -> PyResult<u64> {
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(to_py(CoreError::InvalidInput(format!(
            "epsilon must be a positive number, got {epsilon}"
        ))));
    }
    Ok(core::init::er_nnz(epsilon, n_in, n_out))
}

/// W5: seconds of each of `repeats` forward + backward passes of a random
/// layer (see `sparse_mlp_core::bench`) with activations stored in
/// `precision`, and its connection count.
#[pyfunction]
#[pyo3(signature = (n_in, n_out, epsilon, batch_size, repeats = 20, seed = 0, precision = "float32"))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn bench_layer(
    py: Python<'_>,
    n_in: usize,
    n_out: usize,
    epsilon: f64,
    batch_size: usize,
    repeats: usize,
    seed: u64,
    precision: &str,
) -> PyResult<(Vec<f64>, u64)> {
    let nnz = er_nnz(epsilon, n_in, n_out)?;
    let precision = core::precision::Precision::parse(precision).map_err(to_py)?;
    let times = compute(py, || {
        core::bench::time_layer_passes(n_in, n_out, nnz, batch_size, repeats, seed, precision)
    })?;
    Ok((times, nnz))
}

/// A gradient (or any per-connection values) computed on one topology,
/// moved onto another of the same layer: entries of connections present in
/// both keep their value, entries of removed connections are dropped, new
/// connections get 0. Returns the values in the target's CSC order and the
/// number of dropped entries.
#[pyfunction]
pub(crate) fn remap_values<'py>(
    py: Python<'py>,
    from_col_ptr: PyReadonlyArray1<'_, i64>,
    from_row_idx: &Bound<'_, PyAny>,
    values: PyReadonlyArray1<'_, f32>,
    to_col_ptr: PyReadonlyArray1<'_, i64>,
    to_row_idx: &Bound<'_, PyAny>,
) -> PyResult<(Bound<'py, PyArray1<f32>>, usize)> {
    let (fp, fr) = (
        indices::<usize>(&from_col_ptr, "from_col_ptr")?,
        any_indices::<u32>(from_row_idx, "from_row_idx")?,
    );
    let (tp, tr) = (
        indices::<usize>(&to_col_ptr, "to_col_ptr")?,
        any_indices::<u32>(to_row_idx, "to_row_idx")?,
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

/// (col_ptr, row_idx, values) of one layer in CSC order, as numpy arrays
/// (row indices uint32, as the core holds them).
type CscArrays<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<f32>>,
);

/// One layer's replicas (col_ptr, row_idx, values) averaged over the union
/// of their connections (missing = 0) and pruned back to `target_nnz` by
/// removing the averages closest to zero, per sign. Returns (col_ptr,
/// row_idx, values) and the number of connections in the union.
#[pyfunction]
pub(crate) fn union_average<'py>(
    py: Python<'py>,
    replicas: Vec<(
        PyReadonlyArray1<'py, i64>,
        Bound<'py, PyAny>,
        PyReadonlyArray1<'py, f32>,
    )>,
    n_in: usize,
    target_nnz: usize,
) -> PyResult<(CscArrays<'py>, usize)> {
    let mut owned = Vec::with_capacity(replicas.len());
    for (r, (ptr, rows, values)) in replicas.iter().enumerate() {
        owned.push((
            indices::<usize>(ptr, &format!("replica {r} col_ptr"))?,
            any_indices::<u32>(rows, &format!("replica {r} row_idx"))?,
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
        PyArray1::from_vec(py, avg.row_idx),
        PyArray1::from_vec(py, avg.values),
    );
    Ok((csc, avg.union_nnz))
}

/// The instruction set the kernels run with: "avx512", "avx2" or "baseline".
#[pyfunction]
pub(crate) fn simd_level() -> &'static str {
    core::simd::level().name()
}

/// float32 values rounded to bfloat16 (their upper 16 bits), as the core
/// rounds bfloat16 activations: to nearest, ties to even; NaN stays NaN,
/// subnormals become zeros of their sign.
#[pyfunction]
pub(crate) fn to_bfloat16<'py>(
    py: Python<'py>,
    src: PyReadonlyArray1<'py, f32>,
) -> PyResult<Bound<'py, PyArray1<u16>>> {
    let src = vector(&src, "src")?;
    Ok(PyArray1::from_iter(
        py,
        src.iter().map(|&v| Bf16::from_f32(v).0),
    ))
}

/// bfloat16 bits widened (exactly) into float32 `out`.
#[pyfunction]
pub(crate) fn from_bfloat16(
    src: PyReadonlyArray1<'_, u16>,
    mut out: PyReadwriteArray1<'_, f32>,
) -> PyResult<()> {
    let src = vector(&src, "src")?;
    let out = vector_mut(&mut out, "out")?;
    if src.len() != out.len() {
        return Err(to_py(CoreError::InvalidInput(format!(
            "{} bfloat16 values for {} float32 places",
            src.len(),
            out.len()
        ))));
    }
    for (d, &s) in out.iter_mut().zip(src) {
        *d = Bf16(s).widen();
    }
    Ok(())
}
