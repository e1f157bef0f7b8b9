//! W5 of the benchmark protocol: one sparse layer's forward and backward
//! pass (input and weight gradients) timed in isolation, so that scripts can
//! compare its GFLOP/s with a dense GEMM measured in the same process.

use std::time::Instant;

use crate::error::{invalid, Result};
use crate::init::{random_sparse, WeightInit};
use crate::kernels::{self, Element};
use crate::precision::{Bf16, Precision};
use crate::rng::Rng;

/// Times `repeats` forward + backward passes of a random `n_in × n_out`
/// layer with `nnz` connections on a batch of `b` random samples, with
/// activations and errors stored in `precision`, on the current rayon pool.
/// Returns the seconds of each pass; the useful work of one pass is
/// `6 · b · nnz` flops.
pub fn time_layer_passes(
    n_in: usize,
    n_out: usize,
    nnz: u64,
    b: usize,
    repeats: usize,
    seed: u64,
    precision: Precision,
) -> Result<Vec<f64>> {
    if b == 0 || repeats == 0 {
        invalid!("batch size and repeats must be at least 1");
    }
    match precision {
        Precision::Float32 => time_passes::<f32>(n_in, n_out, nnz, b, repeats, seed),
        Precision::Bfloat16 => time_passes::<Bf16>(n_in, n_out, nnz, b, repeats, seed),
    }
}

fn time_passes<T: Element>(
    n_in: usize,
    n_out: usize,
    nnz: u64,
    b: usize,
    repeats: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    let mut rng = Rng::new(seed);
    let w = random_sparse(n_in, n_out, nnz, WeightInit::HeUniform, &mut rng)?;
    let mut block =
        |n: usize| -> Vec<T> { (0..n).map(|_| T::narrow(rng.normal() as f32)).collect() };
    let (x, dfac) = (block(n_in * b), block(n_in * b));
    let bias: Vec<f32> = (0..n_out).map(|_| rng.normal() as f32).collect();
    let (mut z, mut grad, mut delta_in) = (
        vec![T::default(); n_out * b],
        vec![0.0; w.nnz()],
        vec![T::default(); n_in * b],
    );
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        kernels::forward(&w, &bias, &x, b, &mut z, None, |_, _, _| {});
        kernels::backward(&w, &x, &z, b, &mut grad, Some((&mut delta_in, &dfac)));
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(times)
}
