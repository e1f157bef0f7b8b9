//! Kernel benchmarks (`cargo bench`): every kernel of one sparse layer, the
//! optimizer step, SET, node strength, and whole training steps and epochs of
//! W1 (../shared/BENCHMARKS.md).
//!
//! Kernel throughput is reported in elements per second where one element is
//! one floating-point operation of useful work (2 per multiply-add), so
//! criterion's "Gelem/s" reads as GFLOP/s. `SPARSE_MLP_NUM_THREADS`-style
//! control: set `RAYON_NUM_THREADS` (criterion uses rayon's global pool).
//! `cargo bench -- layer` runs the layer group only; `SPARSE_MLP_NO_SIMD=1`
//! measures the baseline (SSE2) kernels.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sparse_mlp_core::init::{er_nnz, random_sparse};
use sparse_mlp_core::kernels;
use sparse_mlp_core::topology::{node_strength, set_prune_regrow};
use sparse_mlp_core::{
    Activation, Layer, Loss, Network, NetworkSpec, Rng, Sgd, SparseMatrix, Targets, TrainConfig,
    WeightInit,
};

fn block(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

/// W5's layer: 1000 × 1000 at ε = 20 (40,000 connections), batch 128.
struct LayerCase {
    w: SparseMatrix,
    x: Vec<f32>,
    delta: Vec<f32>,
    dfac: Vec<f32>,
    bias: Vec<f32>,
    b: usize,
}

impl LayerCase {
    fn new(n_in: usize, n_out: usize, epsilon: f64, b: usize) -> Self {
        let mut rng = Rng::new(42);
        let nnz = er_nnz(epsilon, n_in, n_out);
        let w = random_sparse(n_in, n_out, nnz, WeightInit::HeUniform, &mut rng).unwrap();
        LayerCase {
            x: block(&mut rng, n_in * b),
            delta: block(&mut rng, n_out * b),
            dfac: block(&mut rng, n_in * b),
            bias: block(&mut rng, n_out),
            w,
            b,
        }
    }

    /// Useful flops of one multiply-add pass over the connections.
    fn pass_flops(&self) -> u64 {
        2 * (self.b * self.w.nnz()) as u64
    }
}

fn layer_kernels(c: &mut Criterion) {
    let case = LayerCase::new(1000, 1000, 20.0, 128);
    let (n_in, n_out, b, nnz) = (case.w.n_in(), case.w.n_out(), case.b, case.w.nnz());
    let mut g = c.benchmark_group("layer_1000x1000_eps20_b128");
    g.measurement_time(Duration::from_secs(3));

    let mut z = vec![0.0f32; n_out * b];
    let mut dfac_out = vec![0.0f32; n_out * b];
    let mut grad = vec![0.0f32; nnz];
    let mut din = vec![0.0f32; n_in * b];
    let act = Activation::Leaky {
        negative_slope: 0.6,
    };

    g.throughput(Throughput::Elements(case.pass_flops()));
    g.bench_function("forward", |bench| {
        bench.iter(|| kernels::forward(&case.w, &case.bias, &case.x, b, &mut z, None, |_, _, _| {}))
    });
    g.bench_function("forward_activation", |bench| {
        bench.iter(|| {
            kernels::forward(
                &case.w,
                &case.bias,
                &case.x,
                b,
                &mut z,
                Some(&mut dfac_out),
                |_, z, d| act.apply_with_derivative(z, d.unwrap()),
            )
        })
    });
    g.bench_function("weight_grad", |bench| {
        bench.iter(|| kernels::weight_grad(&case.w, &case.x, &case.delta, b, &mut grad))
    });
    g.throughput(Throughput::Elements(2 * case.pass_flops()));
    g.bench_function("backward_fused", |bench| {
        bench.iter(|| {
            kernels::backward(
                &case.w,
                &case.x,
                &case.delta,
                b,
                &mut grad,
                Some((&mut din, &case.dfac)),
            )
        })
    });
    // W5: forward + backward (input and weight gradients), 6·B·nnz flops
    g.throughput(Throughput::Elements(3 * case.pass_flops()));
    g.bench_function("w5_forward_backward", |bench| {
        bench.iter(|| {
            kernels::forward(&case.w, &case.bias, &case.x, b, &mut z, None, |_, _, _| {});
            kernels::backward(
                &case.w,
                &case.x,
                &z,
                b,
                &mut grad,
                Some((&mut din, &case.dfac)),
            );
        })
    });

    g.throughput(Throughput::Elements(nnz as u64));
    let sgd = Sgd::new(0.01, 0.9, 2e-4, false).unwrap();
    let mut values = case.w.values().to_vec();
    let mut momentum = vec![0.0f32; nnz];
    g.bench_function("sgd_step", |bench| {
        bench.iter(|| sgd.step(0.01, 1, &mut values, &mut momentum, &mut [], &grad))
    });
    g.bench_function("node_strength", |bench| {
        bench.iter(|| black_box(node_strength(&case.w)))
    });
    let layer = Layer::new(case.w.clone());
    let mut rng = Rng::new(7);
    g.bench_function("set_prune_regrow_zeta0.3", |bench| {
        bench.iter_batched_ref(
            || layer.clone(),
            |l| set_prune_regrow(l, 0.3, WeightInit::HeUniform, &mut rng, None).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// W1's network: 784-1000-1000-1000-10, ε = 20, All-ReLU α = 0.6, dropout 0.3.
fn w1_network() -> Network {
    let sizes = vec![784, 1000, 1000, 1000, 10];
    let nnz = sizes.windows(2).map(|p| er_nnz(20.0, p[0], p[1])).collect();
    let hidden = (0..3)
        .map(|k| Activation::Leaky {
            negative_slope: if k % 2 == 0 { 0.6 } else { -0.6 },
        })
        .collect();
    Network::new(NetworkSpec {
        sizes,
        nnz,
        hidden,
        loss: Loss::CrossEntropy,
        dropout: 0.3,
        init: WeightInit::HeUniform,
        seed: 1,
    })
    .unwrap()
}

fn w1(c: &mut Criterion) {
    let mut rng = Rng::new(3);
    let n = 10_000;
    let x = block(&mut rng, n * 784);
    let y: Vec<u32> = (0..n).map(|_| rng.below(10) as u32).collect();
    let cfg = TrainConfig::new(128, Sgd::new(0.01, 0.9, 2e-4, false).unwrap());
    let mut net = w1_network();
    let nnz = net.n_connections() as u64;
    let mut g = c.benchmark_group("w1");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(6 * 128 * nnz));
    g.bench_function("train_step_b128", |bench| {
        bench.iter(|| {
            net.compute_gradients(&x[..128 * 784], &Targets::classes(&y[..128]), true)
                .unwrap();
            net.apply_gradients(&cfg.optimizer, 0.01);
        })
    });
    g.throughput(Throughput::Elements(6 * n as u64 * nnz));
    g.bench_function("epoch_10000", |bench| {
        bench.iter(|| {
            net.train_epoch(&x, &Targets::classes(&y), &cfg, &mut |_| false)
                .unwrap()
        })
    });
    g.throughput(Throughput::Elements(nnz));
    g.bench_function("set_evolution", |bench| {
        bench.iter_batched_ref(
            || net.clone(),
            |n| n.evolve_set(0.3).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.throughput(Throughput::Elements(2 * n as u64 * nnz));
    g.bench_function("predict_proba_10000", |bench| {
        bench.iter(|| black_box(net.predict_proba(&x, n, 1000).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, layer_kernels, w1);
criterion_main!(benches);
