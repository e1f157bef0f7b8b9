"""Training speed, inference speed and memory against the peers of
../shared/BENCHMARKS.md, side by side in one process.

Workloads: W1 and W2 (one training epoch with SET at the end, inference on
the same samples), W3 (width scaling at 1% density, time per 1,000 samples)
and W5 (one layer's forward + backward against numpy's dense GEMM rate).
Peers, doing the same math (forward, backward, momentum SGD with decoupled
weight decay, inverted dropout, All-ReLU, SET at the epoch end):

* numpy dense weights + binary mask (BLAS on all cores): always;
* scipy.sparse CSR weights, weight gradient only at the stored connections
  (the papers' prototype's data structure): always;
* PyTorch dense + mask: when torch is installed, in float32 and with
  bfloat16 autocast (its matrix products in bfloat16, weights float32).

sparse_mlp runs in float32 and with ``precision="bfloat16"`` (activations and
errors stored as bfloat16, weights and sums float32); ratios are against
sparse_mlp float32 and, in the last column, sparse_mlp bfloat16.

Times are medians of ``--repeats``; ratios are peer time / sparse_mlp time
from the same run. Peak memory is measured per implementation in a child
process (growth of the peak resident set over the loaded data).

    python benches/compare.py                     # W1, W2, W3, W5
    python benches/compare.py --workloads W1,W5 --repeats 5
    python benches/compare.py --workloads W3 --w3-sizes 1024,2048,4096,8192,16384,32768
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

import sparse_mlp as sm
from sparse_mlp.datasets import make_classification, standardize

try:  # optional peer
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

WORKLOADS = {
    # id: (sizes, epsilon, alpha, samples)
    "W1": ([784, 1000, 1000, 1000, 10], 20.0, 0.6, 10_000),
    "W2": ([3072, 4000, 1000, 4000, 10], 20.0, 0.75, 5_000),
}
BATCH, LR, MU, WD, DROPOUT, ZETA = 128, 0.01, 0.9, 2e-4, 0.3, 0.3
W3_BATCH, W3_SAMPLES, W3_DENSITY, W3_ALPHA = 100, 1000, 0.01, 0.6


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def slopes(n_hidden: int, alpha: float) -> list[float]:
    """All-ReLU negative slopes of hidden layers 1..n (SPEC §4): -α on odd layers."""
    return [-alpha if k % 2 == 0 else alpha for k in range(n_hidden)]


class NumpyPeer:
    """The epoch loop the numpy peers share: forward with All-ReLU and
    inverted dropout, softmax cross-entropy, backward, momentum SGD with
    decoupled weight decay. Subclasses store the weights (``W``: anything
    that multiplies a dense batch) and give the weight gradient and its
    momentum-aligned parameter array."""

    def __init__(self, W: list, alpha: float, biases: list, batch: int, seed: int) -> None:
        self.W = W
        self.VW = [np.zeros_like(self.params(lay)) for lay in range(len(W))]
        self.b = biases
        self.Vb = [np.zeros_like(b) for b in biases]
        self.slopes = slopes(len(W) - 1, alpha)
        self.batch = batch
        self.rng = np.random.default_rng(seed)

    def params(self, lay: int) -> np.ndarray:
        """The array of layer ``lay`` that SGD updates in place."""
        raise NotImplementedError

    def weight_grad(self, lay: int, a: np.ndarray, delta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, x: np.ndarray, train: bool):
        a, dfac = [x], []
        for lay in range(len(self.W) - 1):
            z = a[-1] @ self.W[lay] + self.b[lay]
            d = np.where(z >= 0, np.float32(1), np.float32(self.slopes[lay]))
            if train:
                keep = (self.rng.random(z.shape, dtype=np.float32) >= DROPOUT) / np.float32(1 - DROPOUT)
                d = d * keep
            a.append(z * d)
            dfac.append(d)
        return a, dfac, a[-1] @ self.W[-1] + self.b[-1]

    def train_epoch(self, X: np.ndarray, y: np.ndarray, order: np.ndarray) -> None:
        for start in range(0, len(order), self.batch):
            idx = order[start:start + self.batch]
            a, dfac, z = self.forward(X[idx], True)
            delta = softmax_delta(z, y[idx])
            for lay in range(len(self.W) - 1, -1, -1):
                gW = self.weight_grad(lay, a[lay], delta)
                gb = delta.sum(axis=0)
                if lay > 0:
                    delta = np.asarray(delta @ self.W[lay].T) * dfac[lay - 1]
                w = self.params(lay)
                self.VW[lay] = MU * self.VW[lay] - LR * gW
                self.Vb[lay] = MU * self.Vb[lay] - LR * gb
                w += self.VW[lay] - WD * w
                self.b[lay] += self.Vb[lay] - WD * self.b[lay]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.concatenate([self.forward(X[s:s + 1000], False)[2] for s in range(0, len(X), 1000)])


class DenseMask(NumpyPeer):
    """What most sparse-training code does: dense float32 weights, a binary
    mask applied to the gradient, dense BLAS matrix products (numpy)."""

    name = "numpy dense + mask"

    def __init__(self, model: sm.SparseMLP, alpha: float, batch: int, seed: int = 0) -> None:
        W = [layer.to_scipy().toarray() for layer in model.layers]
        self.mask = [w != 0 for w in W]
        super().__init__(W, alpha, [layer.bias.copy() for layer in model.layers], batch, seed)

    def params(self, lay: int) -> np.ndarray:
        return self.W[lay]

    def weight_grad(self, lay: int, a: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return (a.T @ delta) * self.mask[lay]

    def set_step(self) -> None:
        """SET on the masked dense matrices: O(n_in × n_out) per layer."""
        for lay in range(len(self.W)):
            mask = self.mask[lay]
            if mask.all():
                continue
            w = self.W[lay]
            flat_w, flat_m, flat_v = w.reshape(-1), mask.reshape(-1), self.VW[lay].reshape(-1)
            gone = set_removals(flat_w, np.flatnonzero(flat_m))
            flat_m[gone] = False
            new = self.rng.choice(np.flatnonzero(~flat_m), size=gone.size, replace=False)
            flat_w[gone] = 0
            flat_v[gone] = 0
            flat_w[new] = he_uniform(self.rng, w.shape[0], new.size)
            flat_m[new] = True


def softmax_delta(z, labels):
    """Gradient of the mean cross-entropy with respect to the logits."""
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p / np.float32(len(labels))


def set_removals(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Positions (from ``where``) SET removes: ζ of the smallest non-negative
    and ζ of the negative weights closest to zero."""
    v = values[where]
    pos, neg = where[v >= 0], where[v < 0]
    k_pos, k_neg = round(ZETA * pos.size), round(ZETA * neg.size)
    return np.concatenate([pos[np.argpartition(values[pos], k_pos)[:k_pos]],
                           neg[np.argpartition(-values[neg], k_neg)[:k_neg]]])


def he_uniform(rng, n_in: int, size: int) -> np.ndarray:
    limit = np.sqrt(6 / n_in)
    return rng.uniform(-limit, limit, size=size).astype(np.float32)


class ScipyCSR(NumpyPeer):
    """scipy.sparse CSR weights (the papers' prototype's data structure):
    sparse × dense products, the weight gradient only at stored connections
    (a gather and a row-wise dot), SGD on ``W.data``, SET by rebuilding CSR."""

    name = "scipy.sparse CSR"

    def __init__(self, model: sm.SparseMLP, alpha: float, batch: int, seed: int = 0) -> None:
        W = [layer.to_scipy() for layer in model.layers]
        for w in W:
            w.sort_indices()
        self.coords = [self._coords(w) for w in W]
        super().__init__(W, alpha, [layer.bias.copy() for layer in model.layers], batch, seed)

    @staticmethod
    def _coords(w):
        return np.repeat(np.arange(w.shape[0]), np.diff(w.indptr)), w.indices

    def params(self, lay: int) -> np.ndarray:
        return self.W[lay].data

    def weight_grad(self, lay: int, a: np.ndarray, delta: np.ndarray) -> np.ndarray:
        rows, cols = self.coords[lay]
        return np.einsum("bk,bk->k", a[:, rows], delta[:, cols])

    def set_step(self) -> None:
        from scipy import sparse

        for lay, w in enumerate(self.W):
            n_in, n_out = w.shape
            if w.nnz == n_in * n_out:
                continue
            rows, cols = self.coords[lay]
            gone = set_removals(w.data, np.arange(w.nnz))
            keep = np.ones(w.nnz, dtype=bool)
            keep[gone] = False
            taken = set((rows[keep].astype(np.int64) * n_out + cols[keep]).tolist())
            new: list[int] = []
            while len(new) < gone.size:
                for p in self.rng.integers(0, n_in * n_out, size=2 * (gone.size - len(new))).tolist():
                    if p not in taken and len(new) < gone.size:
                        taken.add(p)
                        new.append(p)
            new_arr = np.array(new, dtype=np.int64)
            r = np.concatenate([rows[keep], new_arr // n_out])
            c = np.concatenate([cols[keep], new_arr % n_out])
            v = np.concatenate([w.data[keep], he_uniform(self.rng, n_in, new_arr.size)])
            m = np.concatenate([self.VW[lay][keep], np.zeros(new_arr.size, np.float32)])
            order = np.lexsort((c, r))
            self.W[lay] = sparse.csr_matrix((v[order], (r[order], c[order])), shape=w.shape)
            self.W[lay].sort_indices()
            self.VW[lay] = m[order]
            self.coords[lay] = self._coords(self.W[lay])


class TorchDenseMask:
    """PyTorch CPU, dense weights + mask (torch.ao.pruning, rigl-style)."""

    name = "PyTorch dense + mask"

    def __init__(self, model: sm.SparseMLP, alpha: float, batch: int, seed: int = 0) -> None:
        self.W = [torch.from_numpy(layer.to_scipy().toarray()) for layer in model.layers]
        self.mask = [(w != 0).to(torch.float32) for w in self.W]
        self.b = [torch.from_numpy(layer.bias.copy()) for layer in model.layers]
        self.VW = [torch.zeros_like(w) for w in self.W]
        self.Vb = [torch.zeros_like(b) for b in self.b]
        self.slopes = slopes(len(self.W) - 1, alpha)
        self.batch = batch
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, x, train: bool):
        a, dfac = [x], []
        for lay in range(len(self.W) - 1):
            z = a[-1] @ self.W[lay] + self.b[lay]
            d = torch.where(z >= 0, 1.0, self.slopes[lay])
            if train:
                d = d * ((torch.rand(z.shape, generator=self.gen) >= DROPOUT) / (1 - DROPOUT))
            a.append(z * d)
            dfac.append(d)
        return a, dfac, a[-1] @ self.W[-1] + self.b[-1]

    def train_epoch(self, X: np.ndarray, y: np.ndarray, order: np.ndarray) -> None:
        with torch.no_grad():
            Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
            for start in range(0, len(order), self.batch):
                idx = torch.from_numpy(order[start:start + self.batch])
                a, dfac, z = self.forward(Xt[idx], True)
                p = torch.softmax(z, dim=1)
                p[torch.arange(len(idx)), yt[idx]] -= 1
                delta = p / len(idx)
                for lay in range(len(self.W) - 1, -1, -1):
                    gW = (a[lay].T @ delta) * self.mask[lay]
                    gb = delta.sum(dim=0)
                    if lay > 0:
                        delta = (delta @ self.W[lay].T) * dfac[lay - 1]
                    self.VW[lay].mul_(MU).sub_(LR * gW)
                    self.Vb[lay].mul_(MU).sub_(LR * gb)
                    self.W[lay].mul_(1 - WD).add_(self.VW[lay])
                    self.b[lay].mul_(1 - WD).add_(self.Vb[lay])

    def predict(self, X: np.ndarray):
        with torch.no_grad():
            Xt = torch.from_numpy(X)
            return torch.cat([self.forward(Xt[s:s + 1000], False)[2] for s in range(0, len(X), 1000)])

    def set_step(self) -> None:
        rng = np.random.default_rng(0)
        for lay, w in enumerate(self.W):
            m = self.mask[lay]
            if bool(m.all()):
                continue
            flat_w, flat_m, flat_v = w.view(-1).numpy(), m.view(-1).numpy(), self.VW[lay].view(-1).numpy()
            gone = set_removals(flat_w, np.flatnonzero(flat_m))
            flat_m[gone] = 0
            new = rng.choice(np.flatnonzero(flat_m == 0), size=gone.size, replace=False)
            flat_w[gone] = 0
            flat_v[gone] = 0
            flat_w[new] = he_uniform(rng, w.shape[0], new.size)
            flat_m[new] = 1


class TorchDenseMaskBf16(TorchDenseMask):
    """The same, its matrix products under ``torch.autocast("cpu", bfloat16)``
    (what a PyTorch user turns on for speed on a CPU with bfloat16 units)."""

    name = "PyTorch dense+mask bf16"

    def train_epoch(self, X: np.ndarray, y: np.ndarray, order: np.ndarray) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            super().train_epoch(X, y, order)

    def predict(self, X: np.ndarray):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return super().predict(X)


def peers() -> list[type]:
    found = [DenseMask, ScipyCSR]
    if torch is not None:
        found += [TorchDenseMask, TorchDenseMaskBf16]
    return found


OURS = {"sparse_mlp": "float32", "sparse_mlp bfloat16": "bfloat16"}


def run_times(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def median_time(fn, repeats: int) -> float:
    return statistics.median(run_times(fn, repeats))


def data(sizes: list[int], n: int):
    X, y = make_classification(n_samples=n, n_features=sizes[0], n_informative=64,
                               n_redundant=32, n_classes=sizes[-1], seed=0)
    (X,) = standardize(X)
    return X, y


def model_for(name: str, sizes=None, precision: str = "float32"):
    if name == "W3":
        return sm.SparseMLP(sizes, activation=sm.AllReLU(W3_ALPHA), density=W3_DENSITY,
                            distribution="uniform", dropout=DROPOUT, init="he_uniform", seed=0,
                            precision=precision)
    sizes, eps, alpha, _ = WORKLOADS[name]
    return sm.SparseMLP(sizes, activation=sm.AllReLU(alpha), epsilon=eps, dropout=DROPOUT,
                        init="he_uniform", seed=0, precision=precision)


def ours_epoch(model: sm.SparseMLP, X, y, batch: int) -> None:
    model._net.train_epoch(X, y, batch, LR, MU, WD, False, True)


def row(label: str, cells: list[str], widths: list[int]) -> str:
    return f"{label:<24}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths))


def run_epoch_workload(name: str, repeats: int, memory: bool) -> None:
    sizes, eps, alpha, n = WORKLOADS[name]
    X, y = data(sizes, n)
    model = model_for(name)
    nnz = model.n_connections
    gflop = 6 * nnz * n / 1e9
    order = np.random.default_rng(0).permutation(n)
    results = []  # (label, train, set, predict)
    trained = {}
    for label, precision in OURS.items():
        m = trained[label] = model_for(name, precision=precision)
        results.append((label,
                        median_time(lambda m=m: ours_epoch(m, X, y, BATCH), repeats),
                        median_time(lambda m=m: m._net.evolve_set(ZETA), repeats),
                        median_time(lambda m=m: m.predict_proba(X), repeats)))
    for peer in peers():
        p = peer(model, alpha, BATCH)
        results.append((peer.name,
                        median_time(lambda p=p: p.train_epoch(X, y, order), repeats),
                        median_time(p.set_step, repeats),
                        median_time(lambda p=p: p.predict(X), repeats)))
    print(f"\n{name}: {'-'.join(map(str, sizes))}, eps {eps:g}, {nnz:,} connections, {n:,} samples, "
          f"batch {BATCH}; useful work {gflop:.2f} GFLOP per epoch")
    widths = [10, 10, 10, 10, 9, 11, 9, 10]
    print(row("implementation", ["train s", "SET s", "epoch s", "GFLOP/s", "ratio", "predict s",
                                 "ratio", "vs bf16"], widths))
    ours_total, ours_pred = results[0][1] + results[0][2], results[0][3]
    bf16_total = results[1][1] + results[1][2]
    for label, tr, ev, pr in results:
        total = tr + ev
        print(row(label, [f"{tr:.3f}", f"{ev:.4f}", f"{total:.3f}", f"{gflop / total:.1f}",
                          f"{total / ours_total:.1f}x", f"{pr:.3f}", f"{pr / ours_pred:.1f}x",
                          f"{total / bf16_total:.1f}x"], widths))
    print(f"SET step: {100 * results[0][2] / results[0][1]:.2f}% of our training time per epoch")
    layers = layer_bytes(model)
    buffers = {p: (trained[label].memory_bytes - layers) / 2**20 for label, p in OURS.items()}
    print(f"memory: layers {layers / 2**20:.2f} MiB = {layers / nnz:.1f} bytes per connection (value, row "
          f"index, momentum, gradient, transposed column and position: 24; the rest per neuron); "
          f"work buffers for batch {BATCH}: {buffers['float32']:.2f} MiB in float32, "
          f"{buffers['bfloat16']:.2f} MiB in bfloat16")
    if memory:
        for label in [*OURS, *(p.name for p in peers())]:
            print(f"peak memory growth of one epoch, {label}: {peak_growth(name, label) / 2**20:.0f} MiB")


def peak_growth(workload: str, label: str) -> int:
    """Bytes by which training one epoch and SET raise the peak resident set
    over the loaded data, measured in a fresh child process."""
    out = subprocess.run([sys.executable, __file__, "--peak", f"{workload}:{label}"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_peak(spec: str) -> None:
    """Child process: peak resident set of building the model, one epoch and
    one SET step, above the resident set with the data loaded (Linux: the
    peak is reset through /proc/self/clear_refs after loading)."""
    workload, label = spec.split(":", 1)
    sizes, eps, alpha, n = WORKLOADS[workload]
    X, y = data(sizes, n)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    model = model_for(workload)
    if label in OURS:
        model.precision = OURS[label]
        ours_epoch(model, X, y, BATCH)
        model._net.evolve_set(ZETA)
    else:
        peer = {p.name: p for p in peers()}[label](model, alpha, BATCH)
        del model
        peer.train_epoch(X, y, np.arange(n))
        peer.set_step()
    print((_status_kib("VmHWM") - before) * 1024)


def layer_bytes(model: sm.SparseMLP) -> int:
    """Bytes of the layers alone: per connection a value, a row index, a
    momentum, a gradient and the transposed view's column and position (6 × 4);
    per layer the two index pointers (8 bytes per entry) and the bias, its
    momentum and gradient."""
    total = 0
    for layer in model.layers:
        n_in, n_out = layer.shape
        total += 24 * layer.nnz + 8 * (n_in + n_out + 2) + 12 * n_out
    return total


def run_w3(sizes_n: list[int], repeats: int, dense_max: int, scipy_max: int) -> None:
    print(f"\nW3: 1024-N-N-N-10 at {W3_DENSITY:.0%} density (every layer), batch {W3_BATCH}; "
          f"seconds of training per {W3_SAMPLES:,} samples (epoch of {W3_SAMPLES:,}, no SET)")
    labels = [*OURS, *(p.name for p in peers())]
    widths = [12, 8] + [15, 8] * len(labels)
    short = {"sparse_mlp bfloat16": "ours bf16", "PyTorch dense+mask bf16": "torch bf16"}
    print(row("N", ["connections", "GFLOP"] + [c for lab in labels
                                               for c in (short.get(lab, lab.split()[0]) + " s", "ratio")],
              widths))
    for n_width in sizes_n:
        sizes = [1024, n_width, n_width, n_width, 10]
        X, y = data(sizes, W3_SAMPLES)
        model = model_for("W3", sizes)
        nnz = model.n_connections
        ours = median_time(functools.partial(ours_epoch, model, X, y, W3_BATCH), repeats)
        cells = [f"{nnz:,}", f"{6 * nnz * W3_SAMPLES / 1e9:.2f}", f"{ours:.3f}", "1.0x"]
        model.precision = "bfloat16"
        t = median_time(functools.partial(ours_epoch, model, X, y, W3_BATCH), repeats)
        model.precision = "float32"
        cells += [f"{t:.3f}", f"{t / ours:.1f}x"]
        for peer in peers():
            if n_width > (scipy_max if peer is ScipyCSR else dense_max):
                cells += ["-", "-"]
                continue
            # dense peers at large N: time 2 batches and scale to 1,000 samples
            m = W3_SAMPLES if n_width <= 2048 or peer is ScipyCSR else 2 * W3_BATCH
            p = peer(model, W3_ALPHA, W3_BATCH)
            t = median_time(functools.partial(p.train_epoch, X, y, np.arange(m)), repeats) * W3_SAMPLES / m
            cells += [f"{t:.3f}", f"{t / ours:.1f}x"]
            del p
        print(row(str(n_width), cells, widths), flush=True)
        del model


def gemm_times(repeats: int) -> list[float]:
    """Seconds of 2048³ float32 products by numpy (BLAS, all cores)."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((2048, 2048), dtype=np.float32)
    a @ b
    return run_times(lambda: a @ b, max(repeats, 5))


def run_w5(repeats: int) -> None:
    n_in, n_out, eps, b = 1000, 1000, 20.0, 128
    print(f"\nW5: one {n_in}x{n_out} layer, eps {eps:g}, batch {b}: forward + input gradient + "
          "weight gradient (6·B·nnz flops); a pass takes well under a millisecond, so the best "
          "time is reported beside the median")
    for precision in OURS.values():
        times, nnz = sm._core.bench_layer(n_in, n_out, eps, b, repeats=max(200, 20 * repeats),
                                          precision=precision)
        times = times[5:]
        gemm = gemm_times(repeats)
        for name, pick in (("median", statistics.median), ("best", min)):
            t, g = pick(times), 2 * 2048**3 / pick(gemm) / 1e9
            ours = 6 * b * nnz / t / 1e9
            print(f"{name:>6}: sparse_mlp {precision} {t * 1e6:.0f} us per pass = {ours:.1f} GFLOP/s; "
                  f"numpy dense float32 GEMM (2048^3) {g:.1f} GFLOP/s; ratio {100 * ours / g:.1f}% "
                  f"of GEMM")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default="W1,W2,W3,W5", help="comma-separated: W1,W2,W3,W5")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="sparse_mlp threads (default: all cores)")
    p.add_argument("--w3-sizes", default="1024,2048,4096,8192,16384,32768")
    p.add_argument("--w3-dense-max", type=int, default=8192,
                   help="largest N for the dense peers (their weights grow with N²)")
    p.add_argument("--w3-scipy-max", type=int, default=16384,
                   help="largest N for the scipy peer (its gradient gathers B × nnz floats)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    p.add_argument("--smoke", action="store_true",
                   help="256 samples, W3 at N=1024 only, one repeat: check that the script runs")
    p.add_argument("--peak", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.smoke:
        global W3_SAMPLES
        for name, (sizes, eps, alpha, _) in WORKLOADS.items():
            WORKLOADS[name] = (sizes, eps, alpha, 256)
        W3_SAMPLES, args.w3_sizes, args.repeats, args.no_memory = 200, "1024", 1, True
    if args.threads:
        sm.set_num_threads(args.threads)
    if args.peak:
        measure_peak(args.peak)
        return
    torch_note = (f"torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch
                  else "torch not installed")
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; sparse_mlp {sm.__version__} on "
          f"{sm.get_num_threads()} threads ({sm._core.simd_level()} kernels); numpy {np.__version__}; "
          f"{torch_note}; medians of {args.repeats}")
    for name in [w.strip() for w in args.workloads.split(",")]:
        if name in WORKLOADS:
            run_epoch_workload(name, args.repeats, not args.no_memory)
        elif name == "W3":
            run_w3([int(s) for s in args.w3_sizes.split(",")], args.repeats, args.w3_dense_max,
                   args.w3_scipy_max)
        elif name == "W5":
            run_w5(args.repeats)
        else:
            p.error(f"unknown workload {name!r}")


if __name__ == "__main__":
    main()
