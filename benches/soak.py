"""Soak test (not run in CI): W1 trained for many epochs with every topology
mechanism on, checking that memory does not grow and results stay finite.

784-1000-1000-1000-10, ε 20, All-ReLU 0.6, dropout 0.3, batch 128, η 0.01,
μ 0.9, λ 2e-4 on 10,000 synthetic samples (W1 of ../shared/BENCHMARKS.md),
with SET (ζ 0.3) after every epoch, Importance Pruning (5 % of each hidden
layer every 10 epochs from epoch 20, until 800 of the 1000 neurons are left),
neuron recycling (1 % of each hidden layer every 500 steps, interpolated over
50 steps) and a checkpoint every 10 epochs. Records, per epoch: time, loss,
validation accuracy, connections, and the process's anonymous resident
memory; then checks

- every loss, accuracy and weight is finite;
- the connection count stays what SET keeps, except at pruning epochs,
  where it can only fall;
- memory after the warm-up epochs does not grow: the least-squares slope of
  RssAnon over the epochs after the first ``--warmup`` is below
  ``--max-growth`` bytes per epoch, and the last epoch's value is within
  ``--max-growth-total`` of the first measured one.

    python benches/soak.py                     # 1000 epochs (about 4 minutes on 2 cores)
    python benches/soak.py --epochs 20000 --out soak.jsonl

Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100,
                   help="epochs before memory is judged (pruning has ended by then)")
    p.add_argument("--max-growth", type=float, default=64 * 1024,
                   help="largest allowed slope of memory, bytes per epoch")
    p.add_argument("--max-growth-total", type=float, default=16 * 2**20,
                   help="largest allowed rise of memory from the warm-up to the end, bytes")
    p.add_argument("--out", default="soak_results.jsonl")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    # W1's generator, with a class separation the model can learn in a few epochs
    X, y = sm.datasets.make_classification(12_000, 784, n_informative=64, n_redundant=32,
                                           n_classes=10, class_sep=4.0, seed=args.seed)
    (X,) = sm.datasets.standardize(X)
    X_train, y_train, X_val, y_val = X[:10_000], y[:10_000], X[10_000:], y[10_000:]
    model = sm.SparseMLP([784, 1000, 1000, 1000, 10], epsilon=20, activation=sm.AllReLU(0.6),
                         dropout=0.3, seed=args.seed)
    connections = model.n_connections
    records: list[dict] = []
    t_start = time.perf_counter()
    checkpoint = os.path.join(tempfile.mkdtemp(prefix="sparse_mlp_soak-"), "soak.npz")

    def watch(m: sm.SparseMLP, record: dict) -> bool:
        row = {k: record[k] for k in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                                      "n_connections", "seconds") if k in record}
        row["rss_anon"] = anonymous_rss()
        row["recycled"] = sum(record.get("recycled", []) or [])
        records.append(row)
        if row["epoch"] % 10 == 0 or row["epoch"] == 1:
            print(f"epoch {row['epoch']:>5}  loss {row['loss']:.4f}  val_acc {row['val_accuracy']:.4f}"
                  f"  nnz {row['n_connections']}  RssAnon {row['rss_anon'] / 2**20:.1f} MiB"
                  f"  {row['seconds']:.2f} s", flush=True)
        return False

    model.fit(X_train, y_train, epochs=args.epochs, batch_size=128, learning_rate=0.01,
              momentum=0.9, weight_decay=2e-4, topology=sm.SET(0.3),
              pruning=sm.ImportancePruning(start_epoch=20, every=10, percentile=5.0,
                                           min_neurons=800),
              recycling=sm.NeuronRecycling(fraction=0.01, every_steps=500, interpolate_steps=50),
              validation_data=(X_val, y_val), verbose=0, callbacks=[watch],
              checkpoint=checkpoint, checkpoint_every=10)
    seconds = time.perf_counter() - t_start

    failures = []
    finite = all(np.isfinite([r["loss"], r["accuracy"], r["val_loss"], r["val_accuracy"]]).all()
                 for r in records)
    weights = all(np.isfinite(layer.to_scipy().data).all() for layer in model.layers)
    if not (finite and weights):
        failures.append("a loss, accuracy or weight is not finite")
    # SET keeps the count; pruning (at the end of epochs 20, 30, ...; seen in
    # the next epoch's record) removes connections
    pruning_epochs = {e + 1 for e in range(20, args.epochs + 1, 10)}
    for before, r in zip([{"n_connections": connections}, *records], records):
        if r["n_connections"] > before["n_connections"] or (
                r["n_connections"] < before["n_connections"] and r["epoch"] not in pruning_epochs):
            failures.append(f"the connection count went from {before['n_connections']} to "
                            f"{r['n_connections']} at epoch {r['epoch']}")
            break
    judged = [r for r in records if r["epoch"] > args.warmup]
    slope = growth = 0.0
    if len(judged) >= 2:
        e = np.array([r["epoch"] for r in judged], float)
        m = np.array([r["rss_anon"] for r in judged], float)
        slope = float(np.polyfit(e, m, 1)[0])
        growth = float(m[-1] - m[0])
        if slope > args.max_growth:
            failures.append(f"memory grows by {slope / 1024:.1f} KiB per epoch")
        if growth > args.max_growth_total:
            failures.append(f"memory rose by {growth / 2**20:.1f} MiB after the warm-up")
    summary = {
        "epochs": args.epochs, "seconds": seconds, "connections": connections,
        "recycled": sum(r["recycled"] for r in records),
        "final_val_accuracy": records[-1]["val_accuracy"],
        "best_val_accuracy": max(r["val_accuracy"] for r in records),
        "rss_anon_first_judged": judged[0]["rss_anon"] if judged else None,
        "rss_anon_last": records[-1]["rss_anon"], "rss_anon_max": max(r["rss_anon"] for r in records),
        "memory_slope_bytes_per_epoch": slope, "memory_growth_bytes": growth,
        "checkpoint_loads": sm.SparseMLP.load(checkpoint).epochs_trained,
        "failures": failures,
    }
    with open(args.out, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.write(json.dumps({"summary": summary}) + "\n")
    print(json.dumps(summary, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
