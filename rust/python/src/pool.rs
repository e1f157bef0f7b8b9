//! The library's own rayon pool, and running work on it with the GIL released.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyInt;
use rayon::ThreadPool;
use sparse_mlp_core as core;
use sparse_mlp_core::CoreError;

use crate::errors::{panic_message, to_py};

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
pub(crate) fn set_num_threads(n: &Bound<'_, PyAny>) -> PyResult<()> {
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
pub(crate) fn get_num_threads() -> PyResult<usize> {
    Ok(pool()?.current_num_threads())
}

/// Runs `work` on the pool with the GIL released; a panic becomes an error.
pub(crate) fn compute<R: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> core::Result<R> + Send,
) -> PyResult<R> {
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
pub(crate) fn compute_interruptible<R: Send>(
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
