"""A trained model taken to PyTorch: the time and memory of ``to_torch`` and
of inference with torch's sparse CSR layers, beside ours and beside the same
network as dense ``nn.Linear`` layers (zeros where there is no connection),
in one process, one model at a time.

Models: W1 (784-1000-1000-1000-10, ε 20; 10,000 samples) and, with
``--w4a``, the W4 model with 1M hidden neurons (65536-500000-500000-2, ε 10;
500 samples; its dense peer would need 1.3 TB and is not run) and, with
``--w4c``, the 10M-neuron W4 model (65536-5M-5M-2, ε 5, about 100M
connections; 100 samples, as a hidden layer of 5M neurons holds 2 GB of
activations per 100 samples). Weights are freshly initialized: speed and
memory do not depend on training.

    python benches/torch_export.py --threads 2
    python benches/torch_export.py --threads 2 --w4a
    python benches/torch_export.py --threads 2 --w4c
    python benches/torch_export.py --smoke
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import numpy as np
import torch

import sparse_mlp as sm


def rss(field: str = "VmRSS") -> int:
    """The process's resident memory (or its peak, ``VmHWM``), bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def peak_above_now(fn):
    """Run ``fn``; the peak resident memory it reached above the memory before, and its result."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS
        f.write("5")
    before = rss()
    out = fn()
    return rss("VmHWM") - before, out


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], out


def dense_peer(module) -> torch.nn.Module:
    """The exported network as dense nn.Linear layers with the same weights."""
    layers = []
    for k, layer in enumerate(module.layers):
        lin = torch.nn.Linear(layer.in_features, layer.out_features)
        with torch.no_grad():
            lin.weight.copy_(layer.weight.to_dense())
            lin.bias.copy_(layer.bias)
        layers.append(lin)
        if k < len(module.activations):
            kind, slope = module.activations[k]
            layers.append(torch.nn.LeakyReLU(slope) if kind == "leaky" else torch.nn.Tanh())
    return torch.nn.Sequential(*layers).eval()


def measure(name: str, sizes: list[int], epsilon: float, samples: int, dense: bool, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((samples, sizes[0]), dtype=np.float32)
    model = sm.SparseMLP(sizes, epsilon=epsilon, seed=0)
    gc.collect()
    before = rss()
    export_s, module = timed(lambda: model.to_torch(), 1)
    export_bytes = rss() - before
    ours_peak, (ours_s, ours) = peak_above_now(lambda: timed(lambda: model.predict_proba(X), repeats))
    Xt = torch.from_numpy(X)
    with torch.inference_mode():
        torch_peak, (torch_s, logits) = peak_above_now(lambda: timed(lambda: module(Xt), repeats))
        diff = float(np.abs(torch.softmax(logits, 1).numpy() - ours).max())
        result = {"model": name, "sizes": sizes, "connections": model.n_connections, "samples": samples,
                  "threads": torch.get_num_threads(), "to_torch_seconds": export_s,
                  "to_torch_rss_bytes": export_bytes, "ours_seconds": ours_s,
                  "torch_sparse_seconds": torch_s, "max_probability_difference": diff,
                  "ours_peak_bytes": ours_peak, "torch_sparse_peak_bytes": torch_peak}
        if dense:
            peer = dense_peer(module)
            dense_s, _ = timed(lambda: peer(Xt), repeats)
            result["torch_dense_seconds"] = dense_s
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--w4a", action="store_true", help="also the 1M-neuron W4 model (minutes, ~6 GB)")
    p.add_argument("--w4c", action="store_true", help="also the 10M-neuron W4 model (minutes, ~8 GB)")
    p.add_argument("--only-w4", action="store_true", help="skip W1")
    p.add_argument("--smoke", action="store_true", help="a small model, once")
    args = p.parse_args()
    sm.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    runs = [("W1", [784, 1000, 1000, 1000, 10], 20.0, 10_000, True)]
    if args.w4a:
        runs.append(("W4a", [65536, 500_000, 500_000, 2], 10.0, 500, False))
    if args.w4c:
        runs.append(("W4c", [65536, 5_000_000, 5_000_000, 2], 5.0, 100, False))
    if args.only_w4:
        runs = [r for r in runs if r[0].startswith("W4")]
    if args.smoke:  # whatever else was asked: a small model, once
        runs, args.repeats = [("small", [64, 128, 128, 10], 8.0, 500, True)], 1
    for run in runs:
        r = measure(*run, repeats=args.repeats)
        print(json.dumps(r), flush=True)
        ours, sparse = r["ours_seconds"], r["torch_sparse_seconds"]
        line = (f"{r['model']}: to_torch {r['to_torch_seconds']:.3f} s "
                f"(+{r['to_torch_rss_bytes'] / 2**20:.0f} MiB); inference of {r['samples']} samples: "
                f"ours {ours:.3f} s (peak +{r['ours_peak_bytes'] / 2**20:.0f} MiB), "
                f"torch sparse CSR {sparse:.3f} s "
                f"({sparse / ours:.1f}×, peak +{r['torch_sparse_peak_bytes'] / 2**20:.0f} MiB)")
        if "torch_dense_seconds" in r:
            line += (f", torch dense {r['torch_dense_seconds']:.3f} s "
                     f"({r['torch_dense_seconds'] / r['ours_seconds']:.1f}×)")
        print(line + f"; probabilities differ by at most {r['max_probability_difference']:.1e}", flush=True)


if __name__ == "__main__":
    main()
