"""What each training setting does to the paper's network: an ablation on a
real data set (default Fashion-MNIST, 784-1000-1000-1000-10, ε 20, All-ReLU
α 0.6), starting from the paper's settings and changing one factor at a
time, or several at once. Every run's curve goes to ``--out`` (JSON Lines;
runs already there are not run again); the table gives best and final test
accuracy, the epoch of the best and the accuracy at epochs 10/50/100.

    python benches/ablation.py                                   # the standard variants, 100 epochs
    python benches/ablation.py --variants "lr=0.05" "lr=0.05 init=he_uniform_sparse" --epochs 50
    python benches/ablation.py --table
    python benches/ablation.py --smoke

A variant is a list of ``key=value`` changes of the paper's settings; keys:
learning_rate (lr), init, bias_decay, weight_decay (wd), dropout, zeta,
set_every, set_output (false: SET on the hidden layers only), schedule
(constant or cosine: the rate falls to 0 over the run's epochs), batch_size
(batch), momentum, alpha, epsilon.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import sparse_mlp as sm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paper import NETWORKS, PAPER_TRAINING, SHARED, cpu, load  # noqa: E402

ALIASES = {"lr": "learning_rate", "wd": "weight_decay", "batch": "batch_size"}
# One factor at a time from the paper's settings, then from the best
# learning rate found (0.05).
FACTORS = ["bias_decay=false", "wd=1e-4", "wd=5e-5", "dropout=0.2", "dropout=0.4", "zeta=0.1",
           "set_every=5", "batch=64"]
STANDARD = ["", "lr=0.05", "lr=0.1", "lr=0.02", "lr=0.05 schedule=cosine", "set_output=false",
            "lr=0.05 set_output=false", "init=he_uniform_sparse",
            "init=he_uniform_sparse lr=0.05", *FACTORS, *(f"lr=0.05 {f}" for f in FACTORS)]


# Settings beyond the paper's, at their default.
EXTRA = {"bias_decay": True, "set_every": 1, "set_output": True, "schedule": "constant"}


def parse(variant: str) -> dict:
    changes = {}
    for item in variant.split():
        key, _, value = item.partition("=")
        key = ALIASES.get(key, key)
        if key not in {**NETWORKS["fashion_mnist"], **PAPER_TRAINING, **EXTRA}:
            raise SystemExit(f"unknown setting {key!r} in variant {variant!r}")
        if value.lower() in ("true", "false"):
            changes[key] = value.lower() == "true"
        elif key in ("init", "schedule"):
            changes[key] = value
        else:
            number = float(value)
            whole = number.is_integer() and key in ("batch_size", "set_every")
            changes[key] = int(number) if whole else number
    return changes


def run(data, dataset: str, variant: str, epochs: int, seed: int) -> dict:
    s = {**NETWORKS[dataset], **PAPER_TRAINING, **EXTRA, **parse(variant)}
    n_layers = len(s["hidden"]) + 1
    layers = None if s["set_output"] else tuple(range(n_layers - 1))
    rate = sm.schedules.Cosine(s["learning_rate"]) if s["schedule"] == "cosine" else s["learning_rate"]
    model = sm.SparseMLP([data.X_train.shape[1], *s["hidden"], int(data.y_train.max()) + 1],
                         activation=sm.AllReLU(s["alpha"]), epsilon=s["epsilon"], init=s["init"],
                         dropout=s["dropout"], seed=seed)
    t0 = time.perf_counter()
    diverged = None
    try:
        model.fit(data.X_train, data.y_train, epochs=epochs, batch_size=s["batch_size"],
                  learning_rate=rate, momentum=s["momentum"],
                  weight_decay=s["weight_decay"], bias_decay=s["bias_decay"],
                  topology=sm.SET(s["zeta"], s["set_every"], layers) if s["zeta"] > 0 else None,
                  validation_data=(data.X_test, data.y_test), verbose=0)
    except sm.DivergenceError as e:
        diverged = e.epoch  # the run so far is in model.history
    history = model.history
    curve = [r["val_accuracy"] for r in history] or [0.0]
    return {"dataset": dataset, "variant": variant, "epochs": epochs, "seed": seed, "settings": s,
            "curve": curve, "loss": [r["loss"] for r in history], "best": max(curve), "final": curve[-1],
            "best_epoch": int(np.argmax(curve)) + 1, "seconds": time.perf_counter() - t0, "cpu": cpu(),
            "diverged_at": diverged}


def table(rows: list[dict]) -> str:
    base = {(r["dataset"], r["epochs"], r["seed"]): r["best"] for r in rows if r["variant"] == ""}
    lines = ["| variant (changes to the paper's settings) | epochs | best % | vs paper's settings | final % "
             "| best at epoch | at 10 | at 50 | at 100 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = base.get((r["dataset"], r["epochs"], r["seed"]))
        at = [f"{100 * r['curve'][e - 1]:.2f}" if len(r["curve"]) >= e else "" for e in (10, 50, 100)]
        delta = f"{100 * (r['best'] - b):+.2f}" if b is not None else ""
        final = f"{100 * r['final']:.2f}" if not r.get("diverged_at") else f"diverged at {r['diverged_at']}"
        lines.append(f"| {r['variant'] or '(the paper: η 0.01, he_uniform, λ 2e-4 with biases)'} | "
                     f"{r['epochs']} | {100 * r['best']:.2f} | {delta} | {final} | "
                     f"{r['best_epoch']} | {' | '.join(at)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion_mnist", choices=list(NETWORKS))
    p.add_argument("--variants", nargs="*", default=STANDARD)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default=SHARED)
    p.add_argument("--cifar-dir")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "ablation_results.jsonl"))
    p.add_argument("--table", action="store_true")
    p.add_argument("--smoke", action="store_true", help="two variants, 2 epochs, into a temp file")
    args = p.parse_args()
    if args.smoke:
        import tempfile

        every_key = "init=he_uniform_sparse lr=0.05 bias_decay=false schedule=cosine set_output=false"
        args.variants, args.epochs = ["", every_key], 2
        args.out = os.path.join(tempfile.mkdtemp(prefix="ablation-smoke-"), "ablation.jsonl")
    rows = []
    if os.path.exists(args.out):
        with open(args.out) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    if not args.table:
        sm.set_num_threads(args.threads)
        data = load(args.dataset, args)
        for variant in args.variants:
            parse(variant)  # refuse unknown keys before a long run
            if any(r["variant"] == variant and r["epochs"] == args.epochs and r["seed"] == args.seed
                   and r["dataset"] == args.dataset for r in rows):
                continue
            r = run(data, args.dataset, variant, args.epochs, args.seed)
            rows.append(r)
            with open(args.out, "a") as f:
                f.write(json.dumps(r) + "\n")
            print(f"{variant or 'paper'}: best {100 * r['best']:.2f} % (epoch {r['best_epoch']}), final "
                  f"{100 * r['final']:.2f} %, {r['seconds']:.0f} s", flush=True)
    print(table([r for r in rows if r["dataset"] == args.dataset]))


if __name__ == "__main__":
    main()
