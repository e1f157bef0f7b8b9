"""The cost of one RigL update beside an epoch, on W1, W2, W3 (N=8192) and the
first W4 model of ../shared/BENCHMARKS.md (synthetic data: this is speed).

For each workload and search (candidates γ = 1 and 4, the exact search):
opening the window (drawing the candidates), gathering one mini-batch's
gradients into it (the extra time of a training step with the window open,
over ``--gather-batches`` steps; one step for the exact search), and the
update (ranking, pruning, growing);
their sum as a share of an epoch of training without RigL, and what RigL at
``every_steps=100`` adds to an epoch. Memory: the window's bytes (candidate
positions and sums, or the exact search's activations and errors) beside the
model's, and the dense gradient RigL would otherwise hold (n_in × n_out
floats per layer). W4's epoch (7,000 samples) is timed on ``--w4-batches``
mini-batches and scaled; the exact search is not run there.

    python benches/rigl_cost.py                     # W1, W2, W3, W4a
    python benches/rigl_cost.py --workloads W1 W3 --threads 1
    python benches/rigl_cost.py --smoke             # tiny shapes, to check the script
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import sparse_mlp as sm

HERE = os.path.dirname(os.path.abspath(__file__))
# id: (sizes, sparsity, samples in an epoch, batch)
WORKLOADS = {
    "W1": ([784, 1000, 1000, 1000, 10], {"epsilon": 20.0}, 10_000, 128),
    "W2": ([3072, 4000, 1000, 4000, 10], {"epsilon": 20.0}, 5_000, 128),
    "W3": ([1024, 8192, 8192, 8192, 10], {"density": 0.01}, 1_000, 100),
    "W4a": ([65536, 500_000, 500_000, 2], {"epsilon": 10.0}, 7_000, 128),
}
SMOKE = {
    "W1": ([78, 100, 100, 100, 10], {"epsilon": 5.0}, 1_000, 32),
    "W4a": ([655, 5_000, 5_000, 2], {"epsilon": 5.0}, 700, 32),
}
SEARCHES = {"candidates 1": 1.0, "candidates 4": 4.0, "exact": None}
ZETA = 0.3


def window_bytes(net) -> int:
    window = net.rigl_window()
    return 0 if window is None else sum(a.nbytes for part in window[2] for a in part.values()
                                        if isinstance(a, np.ndarray))


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(name: str, sizes, sparsity, samples: int, batch: int, args) -> list[dict]:
    rng = np.random.default_rng(0)
    scaled = name == "W4a"
    n = min(samples, batch * args.w4_batches) if scaled else samples
    X = rng.standard_normal((n, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], n)
    model = sm.SparseMLP(sizes, activation=sm.AllReLU(0.6), dropout=0.3, seed=0, **sparsity)
    net = model._net
    train = dict(learning_rate=0.01, momentum=0.9, weight_decay=2e-4)

    def steps(k: int) -> None:
        order = np.arange(k * batch, dtype=np.int64) % n
        net.train_epoch(X, y, batch, order=order, **train)

    steps(2)  # buffers and pages
    k = min(args.gather_batches, -(-n // batch))
    per_batch = min(timed(lambda: steps(k)) for _ in range(args.repeats)) / k
    batches = -(-samples // batch)
    epoch = per_batch * batches if scaled else min(
        timed(lambda: net.train_epoch(X, y, batch, **train)) for _ in range(args.repeats))
    layers = list(range(len(sizes) - 1))
    rows = []
    for search, candidates in SEARCHES.items():
        if candidates is None and name == "W4a" and not args.smoke:
            continue
        opened = gathered = updated = 0.0
        # candidates: the gathering cost per batch over k batches; the exact
        # search ranks one batch (more batches make its rows longer)
        m = k if candidates is not None else 1
        for _ in range(args.repeats):
            step = int(net.run_state[2]) + m
            t_open = timed(lambda s=step, c=candidates: net.rigl_open(layers, ZETA, s, c))
            t_gather = timed(lambda m=m: steps(m))
            size = window_bytes(net)
            t_update = timed(lambda: net.rigl_update(ZETA))
            opened = t_open if not opened else min(opened, t_open)
            gathered = t_gather if not gathered else min(gathered, t_gather)
            updated = t_update if not updated else min(updated, t_update)
        gather = max(gathered / m - per_batch, 0.0)
        update = opened + gather + updated
        rows.append({
            "workload": name, "sizes": sizes, "search": search, "threads": sm.get_num_threads(),
            "connections": model.n_connections, "batch": batch, "epoch_seconds": epoch,
            "epoch_scaled_from_batches": k if scaled else None,
            "open_seconds": opened, "gather_seconds_per_batch": gather, "update_seconds": updated,
            "rigl_update_seconds": update, "share_of_epoch": update / epoch,
            "share_at_every_100_steps": update * batches / 100 / epoch,
            "window_bytes": size, "model_bytes": int(sum(net.layer_bytes)),
            "dense_gradient_floats": int(sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))),
        })
        r = rows[-1]
        print(f"{name} {search}: open {opened:.4f} s, gather {gather:.4f} s/batch, update "
              f"{updated:.3f} s = {update:.3f} s = {100 * r['share_of_epoch']:.1f} % of a "
              f"{epoch:.2f} s epoch; window {size / 2**20:.1f} MiB (model "
              f"{r['model_bytes'] / 2**20:.0f} MiB)", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| workload | search | epoch s | one update s (open + gather 1 batch + update) | share of "
             "epoch | per epoch at ΔT=100 | window MiB | model MiB | dense gradient |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['search']} | {r['epoch_seconds']:.2f}"
            f"{' (scaled)' if r['epoch_scaled_from_batches'] else ''} | {r['rigl_update_seconds']:.3f} "
            f"({r['open_seconds']:.3f} + {r['gather_seconds_per_batch']:.3f} + {r['update_seconds']:.3f}) | "
            f"{100 * r['share_of_epoch']:.1f} % | {100 * r['share_at_every_100_steps']:.2f} % | "
            f"{r['window_bytes'] / 2**20:.2f} | {r['model_bytes'] / 2**20:.0f} | "
            f"{r['dense_gradient_floats'] / 1e9:.3g} G floats |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--gather-batches", type=int, default=10)
    p.add_argument("--w4-batches", type=int, default=10)
    p.add_argument("--out", default=os.path.join(HERE, "rigl_cost_results.jsonl"))
    p.add_argument("--smoke", action="store_true", help="tiny shapes, one repeat, results not kept")
    args = p.parse_args()
    sm.set_num_threads(args.threads)
    shapes = SMOKE if args.smoke else WORKLOADS
    if args.smoke:
        args.repeats, args.out = 1, os.devnull
    rows = []
    for name in args.workloads:
        if name in shapes:
            rows += measure(name, *shapes[name], args)
    with open(args.out, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(table(rows))


if __name__ == "__main__":
    sys.exit(main())
