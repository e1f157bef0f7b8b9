"""End-to-end training speed against the peers of ../shared/BENCHMARKS.md.

Runs each workload with sparse_mlp and with numpy dense weights + a binary
mask doing the same math (forward, backward, momentum SGD with decoupled
weight decay, inverted dropout, SET at the epoch end), in one process, and
prints medians of the repetitions and their ratios.

    python benches/compare.py [--workloads W1] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

import sparse_mlp as sm
from sparse_mlp.datasets import make_classification, standardize

WORKLOADS = {
    # id: (sizes, epsilon, alpha, samples)
    "W1": ([784, 1000, 1000, 1000, 10], 20.0, 0.6, 10_000),
    "W2": ([3072, 4000, 1000, 4000, 10], 20.0, 0.75, 5_000),
}
BATCH, LR, MU, WD, DROPOUT, ZETA = 128, 0.01, 0.9, 2e-4, 0.3, 0.3


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


class DenseMask:
    """What most sparse-training code does: dense float32 weights, a binary
    mask applied to the gradient, dense BLAS matrix products."""

    def __init__(self, model: sm.SparseMLP, alpha: float, seed: int = 0) -> None:
        self.W = [layer.to_scipy().toarray() for layer in model.layers]
        self.mask = [w != 0 for w in self.W]
        self.b = [layer.bias.copy() for layer in model.layers]
        self.VW = [np.zeros_like(w) for w in self.W]
        self.Vb = [np.zeros_like(b) for b in self.b]
        self.slopes = [-alpha if k % 2 == 0 else alpha for k in range(len(self.W) - 1)]
        self.rng = np.random.default_rng(seed)

    def train_epoch(self, X: np.ndarray, y: np.ndarray, order: np.ndarray) -> None:
        n_layers = len(self.W)
        for start in range(0, len(order), BATCH):
            idx = order[start:start + BATCH]
            a = [X[idx]]
            dfac = []
            for lay in range(n_layers - 1):
                z = a[-1] @ self.W[lay] + self.b[lay]
                s = self.slopes[lay]
                d = np.where(z >= 0, np.float32(1), np.float32(s))
                keep = (self.rng.random(z.shape, dtype=np.float32) >= DROPOUT) / np.float32(1 - DROPOUT)
                a.append(z * d * keep)
                dfac.append(d * keep)
            z = a[-1] @ self.W[-1] + self.b[-1]
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(idx)), y[idx]] -= 1
            delta = p / np.float32(len(idx))
            for lay in range(n_layers - 1, -1, -1):
                gW = (a[lay].T @ delta) * self.mask[lay]
                gb = delta.sum(axis=0)
                if lay > 0:
                    delta = (delta @ self.W[lay].T) * dfac[lay - 1]
                self.VW[lay] = MU * self.VW[lay] - LR * gW
                self.Vb[lay] = MU * self.Vb[lay] - LR * gb
                self.W[lay] += self.VW[lay] - WD * self.W[lay]
                self.b[lay] += self.Vb[lay] - WD * self.b[lay]

    def set_step(self) -> None:
        """SET on the masked dense matrices: O(n_in × n_out) per layer."""
        for lay in range(len(self.W)):
            mask = self.mask[lay]
            if mask.all():
                continue
            w = self.W[lay]
            pos = np.flatnonzero(mask & (w >= 0))
            neg = np.flatnonzero(mask & (w < 0))
            k_pos, k_neg = round(ZETA * pos.size), round(ZETA * neg.size)
            flat_w, flat_m, flat_v = w.reshape(-1), mask.reshape(-1), self.VW[lay].reshape(-1)
            gone = np.concatenate([pos[np.argpartition(flat_w[pos], k_pos)[:k_pos]],
                                   neg[np.argpartition(-flat_w[neg], k_neg)[:k_neg]]])
            flat_m[gone] = False
            empty = np.flatnonzero(~flat_m)
            new = self.rng.choice(empty, size=gone.size, replace=False)
            flat_w[gone] = 0
            flat_v[gone] = 0
            limit = np.sqrt(6 / w.shape[0])
            flat_w[new] = self.rng.uniform(-limit, limit, size=new.size)
            flat_m[new] = True


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_workload(name: str, repeats: int) -> None:
    sizes, eps, alpha, n = WORKLOADS[name]
    X, y = make_classification(n_samples=n, n_features=sizes[0], n_informative=64,
                               n_redundant=32, n_classes=sizes[-1], seed=0)
    (X,) = standardize(X)
    model = sm.SparseMLP(sizes, activation=sm.AllReLU(alpha), epsilon=eps, dropout=DROPOUT,
                         init="he_uniform", seed=0)
    useful_gflop = 6 * model.n_connections * n / 1e9
    dense = DenseMask(model, alpha)
    order = np.random.default_rng(0).permutation(n)

    def ours_train():
        model._net.train_epoch(X, y, BATCH, LR, MU, WD, False, True)

    def ours_set():
        model._net.evolve_set(ZETA)

    t_train = median_time(ours_train, repeats)
    t_set = median_time(ours_set, repeats)
    t_dense_train = median_time(lambda: dense.train_epoch(X, y, order), repeats)
    t_dense_set = median_time(dense.set_step, repeats)
    ours = t_train + t_set
    peer = t_dense_train + t_dense_set
    print(f"\n{name}: {'-'.join(map(str, sizes))}, eps {eps:g}, {model.n_connections} connections, "
          f"{n} samples, batch {BATCH}; useful work {useful_gflop:.1f} GFLOP per epoch")
    print(f"{'implementation':<28}{'train s':>10}{'SET s':>10}{'epoch s':>10}{'GFLOP/s':>10}"
          f"{'ratio':>9}")
    for label, tr, ev in (("sparse_mlp", t_train, t_set),
                          ("numpy dense + mask", t_dense_train, t_dense_set)):
        total = tr + ev
        print(f"{label:<28}{tr:>10.3f}{ev:>10.4f}{total:>10.3f}{useful_gflop / total:>10.1f}"
              f"{total / ours:>8.1f}x")
    print(f"sparse_mlp is {peer / ours:.1f}x faster than numpy dense+mask per epoch "
          f"(SET step: {100 * t_set / t_train:.2f}% of our training time)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workloads", default="W1", help="comma-separated: " + ",".join(WORKLOADS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int)
    args = p.parse_args()
    if args.threads:
        sm.set_num_threads(args.threads)
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; sparse_mlp "
          f"{sm.__version__} on {sm.get_num_threads()} threads ({sm._core.simd_level()} kernels); "
          f"numpy {np.__version__}")
    for name in args.workloads.split(","):
        run_workload(name.strip(), args.repeats)


if __name__ == "__main__":
    main()
