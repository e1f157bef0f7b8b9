"""The training features on real data: SGD vs Adam, a constant learning rate
vs a cosine schedule, with and without early stopping, on the paper's
networks (Madelon 500-400-100-400-2, Fashion-MNIST 784-1000-1000-1000-10,
All-ReLU, SET).

Every run holds out 10 % of the training data as validation data (seeded)
and measures the test accuracy of the model at every epoch's evaluation, so
one run gives both rows: without early stopping (best and final test
accuracy over all its epochs) and with it (``EarlyStopping(patience)`` on
the validation loss: where it stops, and the test accuracy of the epoch it
restores), watching the validation loss (Keras's default) or the
validation accuracy. Early stopping changes nothing before it stops, so
this is the run it would make; ``--check`` runs one with the real callback
and compares.

    python benches/features.py --dataset madelon --seeds 3
    python benches/features.py --dataset fashion_mnist --epochs 100
    python benches/features.py --table
    python benches/features.py --smoke
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paper import NETWORKS, PAPER_TRAINING, SHARED, cpu, load  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = {  # optimizer, learning rate (Adam: its default 1e-3), schedule, weight decay
    "sgd": ("sgd", 0.01, "constant", 2e-4),
    "sgd + cosine": ("sgd", 0.01, "cosine", 2e-4),
    "adam": ("adam", 1e-3, "constant", 2e-4),
    "adam + cosine": ("adam", 1e-3, "cosine", 2e-4),
    # AdamW decays by η·λ per step: λ 0.2 at η 1e-3 is SGD's 2e-4 per step
    "adamw (λ 0.2)": ("adamw", 1e-3, "constant", 0.2),
}
# The early-stopping rows derived from each run: (monitor, patience).
STOPPING = (("val_loss", 20), ("val_accuracy", 100))


def split_validation(data, seed: int):
    """10 % of the training set, seeded, as validation data."""
    n = data.y_train.size
    order = np.random.default_rng([seed, 0xF00D]).permutation(n)
    val, fit = np.sort(order[: n // 10]), np.sort(order[n // 10:])
    return (data.X_train[fit], data.y_train[fit]), (data.X_train[val], data.y_train[val])


class TestCurve(sm.callbacks.Callback):
    """The test accuracy of the model each epoch's metrics were measured on."""

    def __init__(self, X, y):
        self.X, self.y, self.curve = X, y, []

    def on_evaluated(self, run, record):
        self.curve.append(run.model.evaluate(self.X, self.y)["accuracy"])


def early_stop(history, patience: int, monitor: str = "val_loss"):
    """(stopping epoch, restored epoch) of EarlyStopping(monitor, patience)."""
    sign = -1 if monitor.endswith("accuracy") else 1
    best, best_epoch, wait = None, 0, 0
    for r in history:
        if best is None or sign * r[monitor] < sign * best:
            best, best_epoch, wait = r[monitor], r["epoch"], 0
        else:
            wait += 1
            if wait >= patience:
                return r["epoch"], best_epoch
    return history[-1]["epoch"], best_epoch


def run(data, dataset: str, config: str, epochs: int, seed: int, patience: int,
        callbacks=()) -> dict:
    s = {**NETWORKS[dataset], **PAPER_TRAINING}
    optimizer, rate, schedule, decay = CONFIGS[config]
    lr = sm.schedules.Cosine(rate) if schedule == "cosine" else rate
    (X, y), val = split_validation(data, seed)
    model = sm.SparseMLP([X.shape[1], *s["hidden"], int(y.max()) + 1], activation=sm.AllReLU(s["alpha"]),
                         epsilon=s["epsilon"], init=s["init"], dropout=s["dropout"], seed=seed)
    test = TestCurve(data.X_test, data.y_test)
    t0 = time.perf_counter()
    history = model.fit(X, y, epochs=epochs, batch_size=s["batch_size"], learning_rate=lr,
                        optimizer=optimizer, momentum=s["momentum"], weight_decay=decay,
                        topology=sm.SET(s["zeta"]), validation_data=val, verbose=0,
                        callbacks=[test, *callbacks])
    seconds = time.perf_counter() - t0
    row = {"dataset": dataset, "config": config, "seed": seed, "epochs": epochs, "patience": patience,
           "test": test.curve, "val_loss": [r["val_loss"] for r in history],
           "val_accuracy": [r["val_accuracy"] for r in history],
           "epoch_seconds": [r["seconds"] for r in history], "seconds": seconds,
           "best": max(test.curve), "final": test.curve[-1], "cpu": cpu(), "threads": sm.get_num_threads(),
           "model_test": model.evaluate(data.X_test, data.y_test)["accuracy"]}
    row["val_loss_stop"] = stopped(row, "val_loss", patience)
    return row


def stopped(row: dict, monitor: str, patience: int) -> dict:
    """Where EarlyStopping(monitor, patience) stops the run of ``row``, the
    epoch it restores and that epoch's test accuracy."""
    history = [{"epoch": e + 1, monitor: v} for e, v in enumerate(row[monitor])]
    stop, restored = early_stop(history, patience, monitor)
    return {"stop_epoch": stop, "restored_epoch": restored, "restored_test": row["test"][restored - 1],
            "minutes": sum(row["epoch_seconds"][:stop]) / 60}


def table(rows: list[dict]) -> str:
    lines = ["| data set | optimizer, schedule | early stopping | best test % | final (restored) test % "
             "| epochs run | minutes |", "|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["config"], r["epochs"], r["patience"]), []).append(r)

    def stat(values, scale=1.0, digits=2):
        v = scale * np.array(values, dtype=float)
        return f"{v.mean():.{digits}f}" if v.size == 1 else f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"

    for (dataset, config, epochs, _), rs in groups.items():
        n = f" ({len(rs)} seeds)" if len(rs) > 1 else ""
        lines.append(f"| {dataset}{n} | {config} | no | {stat([r['best'] for r in rs], 100)} | "
                     f"{stat([r['final'] for r in rs], 100)} | {epochs} | "
                     f"{stat([r['seconds'] / 60 for r in rs], digits=1)} |")
        for monitor, patience in STOPPING:
            st = [stopped(r, monitor, patience) for r in rs]
            lines.append(f"| {dataset}{n} | {config} | {monitor}, patience {patience} | — | "
                         f"{stat([s['restored_test'] for s in st], 100)} | "
                         f"{stat([s['stop_epoch'] for s in st], digits=0)} | "
                         f"{stat([s['minutes'] for s in st], digits=1)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="madelon", choices=["madelon", "fashion_mnist"])
    p.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--threads", type=int)
    p.add_argument("--data-root", default=SHARED)
    p.add_argument("--out", default=os.path.join(HERE, "features_results.jsonl"))
    p.add_argument("--table", action="store_true", help="print the table of --out and exit")
    p.add_argument("--check", action="store_true",
                   help="one run with the real EarlyStopping callback, compared with the derived row")
    p.add_argument("--smoke", action="store_true", help="2 epochs, one config, into a temp file")
    args = p.parse_args()
    if args.smoke:
        args.configs, args.epochs, args.patience, args.check = ["adam + cosine"], 3, 1, True
        args.out = os.path.join(tempfile.mkdtemp(), "features.jsonl")
    if args.table:
        with open(args.out) as f:
            print(table([json.loads(line) for line in f]))
        return
    if args.threads:
        sm.set_num_threads(args.threads)
    data = load(args.dataset, args)
    done = set()
    if os.path.exists(args.out):
        with open(args.out) as f:
            for line in f:
                r = json.loads(line)
                done.add((r["dataset"], r["config"], r["seed"], r["epochs"]))
    for seed in range(args.seeds):
        for config in args.configs:
            if (args.dataset, config, seed, args.epochs) in done:
                continue
            r = run(data, args.dataset, config, args.epochs, seed, args.patience)
            with open(args.out, "a") as f:
                f.write(json.dumps(r) + "\n")
            es = r["val_loss_stop"]
            print(f"{args.dataset} {config} seed {seed}: best {100 * r['best']:.2f} %, final "
                  f"{100 * r['final']:.2f} %; early stopping at {es['stop_epoch']} restores epoch "
                  f"{es['restored_epoch']}: {100 * es['restored_test']:.2f} %; {r['seconds']:.0f} s",
                  flush=True)
            if args.check:
                stop = sm.callbacks.EarlyStopping(patience=args.patience)
                checked = run(data, args.dataset, config, args.epochs, seed, args.patience, [stop])
                real = (stop.stopped_epoch or args.epochs, stop.best_epoch, checked["model_test"])
                derived = (es["stop_epoch"], es["restored_epoch"], es["restored_test"])
                print(f"  EarlyStopping itself: stops at {real[0]}, restores {real[1]}, test "
                      f"{100 * real[2]:.2f} % ({'same' if real == derived else 'DIFFERENT'})", flush=True)
                if real != derived:
                    raise SystemExit(f"the derived early-stopping row differs: {real} vs {derived}")
    print(table([r for r in map(json.loads, open(args.out))]))


if __name__ == "__main__":
    main()
