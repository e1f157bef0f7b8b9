//! The sparse kernels of one layer, on feature-major activations: row `i` of
//! an activation block holds neuron `i` for all `B` samples of the batch
//! contiguously, so every inner loop runs over `B` contiguous floats.
//!
//! Parallelism: each output element (a row of activations, or one weight
//! gradient) is computed by exactly one task, in a fixed order, so results do
//! not depend on the number of threads.

use rayon::prelude::*;

use crate::csr::SparseMatrix;
use crate::simd::multiversion;

/// Work (multiply-adds) a rayon task should get at least, to amortize the
/// task overhead.
const TASK_WORK: usize = 1 << 15;

/// Minimum number of rows per task for a row-parallel kernel.
fn rows_per_task(nnz: usize, rows: usize, b: usize) -> usize {
    let per_row = (nnz / rows.max(1) + 1) * b;
    TASK_WORK.div_ceil(per_row).max(1)
}

/// `out[s] = init + Σ_t w(t) · src[idx[t]·b + start + s]` for `s < N`, with the
/// `N` accumulators held in registers.
#[inline(always)]
fn axpy_block<const N: usize>(
    out: &mut [f32],
    init: f32,
    idx: &[u32],
    w: &impl Fn(usize) -> f32,
    src: &[f32],
    b: usize,
    start: usize,
) {
    let mut acc = [init; N];
    for (t, &r) in idx.iter().enumerate() {
        let wt = w(t);
        let off = r as usize * b + start;
        let x = &src[off..off + N];
        for l in 0..N {
            acc[l] += wt * x[l];
        }
    }
    out[start..start + N].copy_from_slice(&acc);
}

/// One output row of a sparse × dense product, in register-sized blocks.
#[inline(always)]
fn axpy_row(
    out: &mut [f32],
    init: f32,
    idx: &[u32],
    w: impl Fn(usize) -> f32,
    src: &[f32],
    b: usize,
) {
    let mut s = 0;
    while s + 64 <= b {
        axpy_block::<64>(out, init, idx, &w, src, b, s);
        s += 64;
    }
    while s + 16 <= b {
        axpy_block::<16>(out, init, idx, &w, src, b, s);
        s += 16;
    }
    while s + 4 <= b {
        axpy_block::<4>(out, init, idx, &w, src, b, s);
        s += 4;
    }
    while s < b {
        axpy_block::<1>(out, init, idx, &w, src, b, s);
        s += 1;
    }
}

multiversion! {
    /// `out = init + Σ_t weights[t] · src_row(idx[t])` (forward: one output neuron).
    pub fn gather_axpy(out: &mut [f32], init: f32, idx: &[u32], weights: &[f32], src: &[f32], b: usize) {
        axpy_row(out, init, idx, |t| weights[t], src, b);
    }
}

multiversion! {
    /// `out = Σ_t values[pos[t]] · src_row(idx[t])` (backward: one input neuron,
    /// reading the weights through the transposed view).
    pub fn gather_axpy_indirect(
        out: &mut [f32],
        idx: &[u32],
        pos: &[u32],
        values: &[f32],
        src: &[f32],
        b: usize,
    ) {
        axpy_row(out, 0.0, idx, |t| values[pos[t] as usize], src, b);
    }
}

/// Sums 16 partial sums in a fixed tree.
#[inline(always)]
fn reduce16(mut acc: [f32; 16]) -> f32 {
    let mut w = 8;
    while w > 0 {
        for l in 0..w {
            acc[l] += acc[l + w];
        }
        w /= 2;
    }
    acc[0]
}

/// Four dot products against the same `d`, 16 lanes at a time: each load of
/// `d` serves four rows and the four accumulators are independent.
#[inline(always)]
fn dot4(x0: &[f32], x1: &[f32], x2: &[f32], x3: &[f32], d: &[f32]) -> [f32; 4] {
    let n = d.len();
    let (mut a0, mut a1, mut a2, mut a3) = ([0.0f32; 16], [0.0f32; 16], [0.0f32; 16], [0.0f32; 16]);
    let mut s = 0;
    while s + 16 <= n {
        let y = &d[s..s + 16];
        let (r0, r1, r2, r3) = (
            &x0[s..s + 16],
            &x1[s..s + 16],
            &x2[s..s + 16],
            &x3[s..s + 16],
        );
        for l in 0..16 {
            a0[l] += r0[l] * y[l];
            a1[l] += r1[l] * y[l];
            a2[l] += r2[l] * y[l];
            a3[l] += r3[l] * y[l];
        }
        s += 16;
    }
    for l in 0..n - s {
        let y = d[s + l];
        a0[l] += x0[s + l] * y;
        a1[l] += x1[s + l] * y;
        a2[l] += x2[s + l] * y;
        a3[l] += x3[s + l] * y;
    }
    [reduce16(a0), reduce16(a1), reduce16(a2), reduce16(a3)]
}

/// One dot product with the lane structure of [`dot4`] (hence the same bits).
#[inline(always)]
fn dot1(x: &[f32], d: &[f32]) -> f32 {
    let n = d.len();
    let mut a = [0.0f32; 16];
    let mut s = 0;
    while s + 16 <= n {
        let (r, y) = (&x[s..s + 16], &d[s..s + 16]);
        for l in 0..16 {
            a[l] += r[l] * y[l];
        }
        s += 16;
    }
    for l in 0..n - s {
        a[l] += x[s + l] * d[s + l];
    }
    reduce16(a)
}

multiversion! {
    /// `grad[t] = ⟨src_row(idx[t]), d⟩` for the connections of one output neuron.
    pub fn dots(grad: &mut [f32], idx: &[u32], src: &[f32], d: &[f32], b: usize) {
        let d = &d[..b];
        let row = |t: usize| {
            let off = idx[t] as usize * b;
            &src[off..off + b]
        };
        let mut t = 0;
        while t + 4 <= idx.len() {
            grad[t..t + 4].copy_from_slice(&dot4(row(t), row(t + 1), row(t + 2), row(t + 3), d));
            t += 4;
        }
        for (g, t) in grad[t..idx.len()].iter_mut().zip(t..) {
            *g = dot1(row(t), d);
        }
    }
}

/// Forward pass of one layer: `out[j] = bias[j] + Σ_i W[i,j] · input[i]` for
/// every output row, then `epilogue(j, row, dfac_row)` on the finished row
/// (activation, dropout). `dfac`, when given, has one row per output too.
pub fn forward<E>(
    w: &SparseMatrix,
    bias: &[f32],
    input: &[f32],
    b: usize,
    out: &mut [f32],
    dfac: Option<&mut [f32]>,
    epilogue: E,
) where
    E: Fn(usize, &mut [f32], Option<&mut [f32]>) + Sync,
{
    let n_out = w.n_out();
    let min_len = rows_per_task(w.nnz(), n_out, b);
    let row = |j: usize, z: &mut [f32], d: Option<&mut [f32]>| {
        let (rows, vals) = w.column(j);
        gather_axpy(z, bias[j], rows, vals, input, b);
        epilogue(j, z, d);
    };
    let out = &mut out[..n_out * b];
    match dfac {
        Some(dfac) => out
            .par_chunks_mut(b)
            .zip(dfac[..n_out * b].par_chunks_mut(b))
            .enumerate()
            .with_min_len(min_len)
            .for_each(|(j, (z, d))| row(j, z, Some(d))),
        None => out
            .par_chunks_mut(b)
            .enumerate()
            .with_min_len(min_len)
            .for_each(|(j, z)| row(j, z, None)),
    }
}

/// Input gradient of one layer: `delta_in[i] = (Σ_j W[i,j] · delta_out[j]) ⊙ dfac[i]`,
/// where `dfac` is the derivative of the previous activation times the dropout
/// mask and scale.
pub fn backprop_input(
    w: &SparseMatrix,
    delta_out: &[f32],
    b: usize,
    delta_in: &mut [f32],
    dfac: &[f32],
) {
    let n_in = w.n_in();
    let (row_ptr, t_col, t_pos, values) = (w.row_ptr(), w.t_col(), w.t_pos(), w.values());
    delta_in[..n_in * b]
        .par_chunks_mut(b)
        .enumerate()
        .with_min_len(rows_per_task(w.nnz(), n_in, b))
        .for_each(|(i, row)| {
            let s = row_ptr[i]..row_ptr[i + 1];
            gather_axpy_indirect(row, &t_col[s.clone()], &t_pos[s], values, delta_out, b);
            for (x, f) in row.iter_mut().zip(&dfac[i * b..(i + 1) * b]) {
                *x *= f;
            }
        });
}

/// Weight gradient at the existing connections only (SDDMM):
/// `grad[k] = ⟨input[row(k)], delta[col(k)]⟩` for every stored connection `k`.
/// The 1/B of the mean is already in `delta`. Work is split into equal runs
/// of connections, whatever the column lengths (SET grows hub neurons).
pub fn weight_grad(w: &SparseMatrix, input: &[f32], delta: &[f32], b: usize, grad: &mut [f32]) {
    let nnz = w.nnz();
    if nnz == 0 {
        return;
    }
    let (col_ptr, row_idx) = (w.col_ptr(), w.row_idx());
    let chunk = (TASK_WORK / b).max(64);
    grad[..nnz]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(c, g)| {
            let k0 = c * chunk;
            let k1 = k0 + g.len();
            // the column holding connection k0: last j with col_ptr[j] <= k0
            let mut j = col_ptr.partition_point(|&p| p <= k0) - 1;
            let mut k = k0;
            while k < k1 {
                while col_ptr[j + 1] <= k {
                    j += 1;
                }
                let end = col_ptr[j + 1].min(k1);
                dots(
                    &mut g[k - k0..end - k0],
                    &row_idx[k..end],
                    input,
                    &delta[j * b..(j + 1) * b],
                    b,
                );
                k = end;
            }
        });
}

/// Bias gradient: `grad[j] = Σ_s delta[j, s]` (the 1/B is already in `delta`).
pub fn bias_grad(delta: &[f32], b: usize, grad: &mut [f32]) {
    let n = grad.len();
    grad.par_iter_mut()
        .enumerate()
        .with_min_len((TASK_WORK / b).max(1))
        .for_each(|(j, g)| {
            *g = delta[j * b..(j + 1) * b].iter().sum();
        });
    debug_assert!(delta.len() >= n * b);
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // index loops mirror the math of the reference
mod tests {
    use super::*;
    use crate::init::{random_sparse, WeightInit};
    use crate::rng::Rng;

    fn dense(w: &SparseMatrix) -> Vec<Vec<f32>> {
        let mut d = vec![vec![0.0f32; w.n_out()]; w.n_in()];
        for j in 0..w.n_out() {
            let (rows, vals) = w.column(j);
            for (&i, &v) in rows.iter().zip(vals) {
                d[i as usize][j] = v;
            }
        }
        d
    }

    fn random_block(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-4 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn kernels_match_naive_dense_reference() {
        let mut rng = Rng::new(9);
        for &(n_in, n_out, nnz, b) in &[
            (37, 23, 200, 1),
            (50, 40, 700, 67),
            (64, 8, 512, 130),
            (5, 5, 0, 3),
        ] {
            let w = random_sparse(n_in, n_out, nnz, WeightInit::HeUniform, &mut rng).unwrap();
            let wd = dense(&w);
            let bias = random_block(&mut rng, n_out);
            let x = random_block(&mut rng, n_in * b);
            let delta = random_block(&mut rng, n_out * b);
            let dfac = random_block(&mut rng, n_in * b);

            let mut z = vec![0.0; n_out * b];
            forward(&w, &bias, &x, b, &mut z, None, |_, _, _| {});
            for j in 0..n_out {
                for s in 0..b {
                    let r: f32 = bias[j] + (0..n_in).map(|i| wd[i][j] * x[i * b + s]).sum::<f32>();
                    assert!(close(z[j * b + s], r), "forward {j} {s}");
                }
            }

            let mut din = vec![0.0; n_in * b];
            backprop_input(&w, &delta, b, &mut din, &dfac);
            for i in 0..n_in {
                for s in 0..b {
                    let r: f32 = (0..n_out).map(|j| wd[i][j] * delta[j * b + s]).sum::<f32>()
                        * dfac[i * b + s];
                    assert!(close(din[i * b + s], r), "input grad {i} {s}");
                }
            }

            let mut g = vec![0.0; w.nnz()];
            weight_grad(&w, &x, &delta, b, &mut g);
            for j in 0..n_out {
                for k in w.col_ptr()[j]..w.col_ptr()[j + 1] {
                    let i = w.row_idx()[k] as usize;
                    let r: f32 = (0..b).map(|s| x[i * b + s] * delta[j * b + s]).sum();
                    assert!(close(g[k], r), "weight grad {i} {j}");
                }
            }

            let mut gb = vec![0.0; n_out];
            bias_grad(&delta, b, &mut gb);
            for j in 0..n_out {
                assert!(close(gb[j], delta[j * b..(j + 1) * b].iter().sum()));
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let mut rng = Rng::new(4);
        let (n_in, n_out, b) = (300, 200, 96);
        let w = random_sparse(n_in, n_out, 6000, WeightInit::HeUniform, &mut rng).unwrap();
        let bias = random_block(&mut rng, n_out);
        let x = random_block(&mut rng, n_in * b);
        let delta = random_block(&mut rng, n_out * b);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut z = vec![0.0; n_out * b];
                forward(&w, &bias, &x, b, &mut z, None, |_, _, _| {});
                let mut g = vec![0.0; w.nnz()];
                weight_grad(&w, &x, &delta, b, &mut g);
                let mut din = vec![0.0; n_in * b];
                backprop_input(&w, &delta, b, &mut din, &vec![1.0; n_in * b]);
                (z, g, din)
            })
        };
        assert_eq!(run(1), run(2));
        assert_eq!(run(1), run(5));
    }
}
