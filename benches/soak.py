"""Soak test (not run in CI): W1 trained for many epochs with every topology
mechanism on, checking that memory does not grow and results stay finite.

784-1000-1000-1000-10, ε 20, All-ReLU 0.6, dropout 0.3, batch 128, η 0.01,
μ 0.9, λ 2e-4 on 10,000 synthetic samples (W1 of ../shared/BENCHMARKS.md),
with SET (ζ 0.3) after every epoch, Importance Pruning (5 % of each hidden
layer every 10 epochs from epoch 20, until 800 of the 1000 neurons are left),
neuron recycling (1 % of each hidden layer every 500 steps, interpolated over
50 steps) and a checkpoint every 10 epochs. Records, per epoch: time
(including checkpoint writes), loss, validation accuracy, connections, and
the process's anonymous resident memory (read after ``malloc_trim``, so that
pages glibc keeps after frees do not count; ``--no-trim`` reads it raw);
every ``--size-every`` epochs also the size of ``model.history``, which
holds a record per epoch by design (about 1.3 KB each). Then checks

- every loss, accuracy and weight is finite;
- the connection count stays what SET keeps, except at pruning epochs,
  where it can only fall;
- memory other than the history does not grow after the warm-up epochs:
  the least-squares slope of RssAnon minus the history's size over the
  epochs after the first ``--warmup`` is below ``--max-growth`` bytes per
  epoch, and its last value is within ``--max-growth-total`` of the first.

It reports the raw RssAnon slope too, the history's size, the checkpoint's
size and the median epoch time early and late in the run.

    python benches/soak.py                     # 1000 epochs (about 3 minutes on 2 cores)
    python benches/soak.py --epochs 20000 --out soak.jsonl
    python benches/soak.py --smoke             # 25 epochs: every check but memory growth

Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import tempfile
import time

import numpy as np

import sparse_mlp as sm


def anonymous_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def release_free_memory() -> None:
    """Hands the pages glibc's allocator keeps after frees back to the system
    (``malloc_trim``), so that RssAnon is memory in use: without it, a large
    buffer freed once (a checkpoint's serialized history) can stay resident
    and look like growth. Leaked memory is in use, so it still shows."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def deep_size(obj: object, seen: set[int] | None = None) -> int:
    """Bytes of ``obj`` and everything it holds (dicts, lists, scalars)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        size += sum(deep_size(v, seen) for v in obj)
    return size


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100,
                   help="epochs before memory is judged (pruning has ended by then)")
    p.add_argument("--max-growth", type=float, default=64 * 1024,
                   help="largest allowed slope of memory, bytes per epoch")
    p.add_argument("--max-growth-total", type=float, default=16 * 2**20,
                   help="largest allowed rise of memory from the warm-up to the end, bytes")
    p.add_argument("--size-every", type=int, default=100,
                   help="epochs between measurements of model.history's size")
    p.add_argument("--no-trim", dest="trim", action="store_false",
                   help="measure RssAnon without releasing the allocator's free pages first")
    p.add_argument("--out", default="soak_results.jsonl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true",
                   help="25 epochs (through the first pruning), too few to judge memory growth")
    args = p.parse_args()
    if args.smoke:
        args.epochs, args.size_every = 25, 5
        args.warmup = args.epochs - 3
        args.max_growth = args.max_growth_total = float("inf")

    # W1's generator, with a class separation the model can learn in a few epochs
    X, y = sm.datasets.make_classification(12_000, 784, n_informative=64, n_redundant=32,
                                           n_classes=10, class_sep=4.0, seed=args.seed)
    (X,) = sm.datasets.standardize(X)
    X_train, y_train, X_val, y_val = X[:10_000], y[:10_000], X[10_000:], y[10_000:]
    model = sm.SparseMLP([784, 1000, 1000, 1000, 10], epsilon=20, activation=sm.AllReLU(0.6),
                         dropout=0.3, seed=args.seed)
    connections = model.n_connections
    # the script's own records are preallocated columns, so that the memory
    # measured is the library's; model.history is measured separately
    n = args.epochs
    cols = {k: np.full(n, np.nan) for k in (
        "loss", "accuracy", "val_loss", "val_accuracy", "n_connections", "seconds", "wall",
        "rss_anon", "history_bytes", "recycled")}
    t_start = last = time.perf_counter()
    checkpoint = os.path.join(tempfile.mkdtemp(prefix="sparse_mlp_soak-"), "soak.npz")

    def watch(m: sm.SparseMLP, record: dict) -> bool:
        nonlocal last
        now = time.perf_counter()
        i = record["epoch"] - 1
        for k in ("loss", "accuracy", "val_loss", "val_accuracy", "n_connections", "seconds"):
            cols[k][i] = record[k]
        # wall time from the previous epoch's end: includes the checkpoint writes
        cols["wall"][i], last = now - last, now
        if args.trim:
            release_free_memory()
        cols["rss_anon"][i] = anonymous_rss()
        cols["recycled"][i] = sum(record.get("recycled", []) or [])
        if (i + 1) % args.size_every == 0:
            cols["history_bytes"][i] = deep_size(m.history)
            if (i + 1) % (10 * args.size_every) == 0:
                print(f"epoch {i + 1:>5}  RssAnon without the history "
                      f"{(cols['rss_anon'][i] - cols['history_bytes'][i]) / 2**20:.1f} MiB "
                      f"(history {cols['history_bytes'][i] / 2**20:.1f} MiB)", flush=True)
        if (i + 1) % 10 == 0 or i == 0:
            print(f"epoch {i + 1:>5}  loss {record['loss']:.4f}  val_acc "
                  f"{record['val_accuracy']:.4f}  nnz {record['n_connections']}  RssAnon "
                  f"{cols['rss_anon'][i] / 2**20:.1f} MiB  {cols['wall'][i]:.2f} s", flush=True)
        return False

    model.fit(X_train, y_train, epochs=args.epochs, batch_size=128, learning_rate=0.01,
              momentum=0.9, weight_decay=2e-4, topology=sm.SET(0.3),
              pruning=sm.ImportancePruning(start_epoch=20, every=10, percentile=5.0,
                                           min_neurons=800, shrink=True),
              recycling=sm.NeuronRecycling(fraction=0.01, every_steps=500, interpolate_steps=50),
              validation_data=(X_val, y_val), verbose=0, callbacks=[watch],
              checkpoint=checkpoint, checkpoint_every=10)
    seconds = time.perf_counter() - t_start

    failures = []
    if not (np.isfinite(cols["loss"]).all() and np.isfinite(cols["accuracy"]).all()
            and np.isfinite(cols["val_loss"]).all() and np.isfinite(cols["val_accuracy"]).all()
            and all(np.isfinite(layer.to_scipy().data).all() for layer in model.layers)):
        failures.append("a loss, accuracy or weight is not finite")
    # SET keeps the count; pruning (at the end of epochs 20, 30, ...; seen in
    # the next epoch's record) removes connections
    epochs = np.arange(1, n + 1)
    nnz = cols["n_connections"]
    change = np.diff(np.concatenate([[connections], nnz]))
    pruning = (epochs > 20) & ((epochs - 1) % 10 == 0)
    bad = np.flatnonzero((change > 0) | ((change < 0) & ~pruning))
    if bad.size:
        i = bad[0]
        failures.append(f"the connection count went from {nnz[i] - change[i]:.0f} to "
                        f"{nnz[i]:.0f} at epoch {i + 1}")
    judged = epochs > args.warmup
    rss = cols["rss_anon"]
    slope = growth = net_slope = net_growth = 0.0
    if judged.sum() >= 2:
        slope = float(np.polyfit(epochs[judged], rss[judged], 1)[0])
        growth = float(rss[judged][-1] - rss[judged][0])
    # without model.history, which grows with the run by design (a record per epoch)
    sampled = judged & np.isfinite(cols["history_bytes"])
    if sampled.sum() >= 2:
        net = rss[sampled] - cols["history_bytes"][sampled]
        net_slope = float(np.polyfit(epochs[sampled], net, 1)[0])
        net_growth = float(net[-1] - net[0])
        if net_slope > args.max_growth:
            failures.append(f"memory other than the history grows by {net_slope / 1024:.1f} "
                            "KiB per epoch")
        if net_growth > args.max_growth_total:
            failures.append(f"memory other than the history rose by {net_growth / 2**20:.1f} "
                            "MiB after the warm-up")
    # epoch times early and late (checkpoints carry the growing history)
    window = max(1, min(1000, (n - args.warmup) // 4))
    early = float(np.median(cols["wall"][args.warmup:args.warmup + window]))
    late = float(np.median(cols["wall"][-window:]))
    history_bytes = deep_size(model.history)
    summary = {
        "epochs": n, "seconds": seconds, "trim": args.trim, "connections": connections,
        "connections_final": int(nnz[-1]), "hidden_neurons_final": sum(model.sizes[1:-1]),
        "recycled": int(np.nansum(cols["recycled"])),
        "final_val_accuracy": float(cols["val_accuracy"][-1]),
        "best_val_accuracy": float(np.nanmax(cols["val_accuracy"])),
        "rss_anon_first_judged": float(rss[judged][0]) if judged.any() else None,
        "rss_anon_last": float(rss[-1]), "rss_anon_max": float(rss.max()),
        "memory_slope_bytes_per_epoch": slope, "memory_growth_bytes": growth,
        "history_bytes": history_bytes, "history_bytes_per_epoch": history_bytes / n,
        "memory_slope_without_history_bytes_per_epoch": net_slope,
        "memory_growth_without_history_bytes": net_growth,
        "median_epoch_seconds_early": early, "median_epoch_seconds_late": late,
        "epoch_window": window,
        "checkpoint_bytes": os.path.getsize(checkpoint),
        "checkpoint_loads": sm.SparseMLP.load(checkpoint).epochs_trained,
        "failures": failures,
    }
    stride = max(1, n // 2000)  # at most about 2000 rows in the file
    with open(args.out, "w") as f:
        for i in range(stride - 1, n, stride):
            row = {"epoch": i + 1, **{k: (None if np.isnan(v[i]) else float(v[i]))
                                      for k, v in cols.items()}}
            f.write(json.dumps(row) + "\n")
        f.write(json.dumps({"summary": summary}) + "\n")
    print(json.dumps(summary, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
