//! `sparse_mlp._core`: the PyO3 bindings of sparse-mlp-core.
//!
//! Only conversion lives here: numpy arrays in and out, core errors mapped
//! onto the Python exception classes of `sparse_mlp.errors`, the GIL released
//! around all real work, which runs on a rayon pool owned by this module.
//! One module per concept: `errors`, `pool` (threads), `convert` (arrays),
//! the `Network` class split over `network`, `training`, `topology` and
//! `recycling`, and the module-level `functions`.

use pyo3::prelude::*;
use sparse_mlp_core as core;

mod convert;
mod errors;
mod functions;
mod network;
mod pool;
mod recycling;
mod rigl;
mod topology;
mod training;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<network::PyNetwork>()?;
    m.add_function(wrap_pyfunction!(pool::set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(pool::get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(functions::er_nnz, m)?)?;
    m.add_function(wrap_pyfunction!(rigl::rigl_top, m)?)?;
    m.add_function(wrap_pyfunction!(functions::to_bfloat16, m)?)?;
    m.add_function(wrap_pyfunction!(functions::from_bfloat16, m)?)?;
    m.add_function(wrap_pyfunction!(functions::parameter_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(functions::simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(functions::bench_layer, m)?)?;
    m.add_function(wrap_pyfunction!(functions::remap_values, m)?)?;
    m.add_function(wrap_pyfunction!(functions::union_average, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // the widest layer (and the most connections in one layer) the core indexes
    m.add("MAX_INDEX", core::csc::MAX_INDEX)?;
    // the names the core parses, for the Python layer's checks and the command line's choices
    let names = pyo3::types::PyDict::new(m.py());
    names.set_item("init", core::init::INIT_NAMES.to_vec())?;
    names.set_item("reinit", core::recycle::REINIT_NAMES.to_vec())?;
    names.set_item("outgoing", core::recycle::OUTGOING_NAMES.to_vec())?;
    names.set_item("midpoint", core::recycle::MIDPOINT_NAMES.to_vec())?;
    names.set_item("distance", core::recycle::DISTANCE_NAMES.to_vec())?;
    let losses = pyo3::types::PyDict::new(m.py());
    for (loss, outputs) in core::loss::LOSS_OUTPUTS {
        losses.set_item(loss, outputs.to_vec())?;
    }
    names.set_item("loss", losses)?;
    m.add("NAMES", names)?;
    Ok(())
}
