"""Neuron recycling (SPEC §7): the study's comparison and the cost in time.

``study`` (default): Madelon with W6's settings (500-400-100-400-2, ε 10,
All-ReLU 0.5, SET ζ 0.3, batch 32, 500 epochs), the same seeds and data with
no recycling and with each strategy; prints the table of final and best test
accuracy, seconds per run and how recycling spread over the first hidden
layer's neurons (total recycles, distinct neurons, the most any neuron was
recycled, share of recycles that went to the 10 % most-recycled neurons, mean
overlap of an event's selection with the previous event's).

``overhead``: W1's epoch (784-1000-1000-1000-10, ε 20, 10,000 samples,
batch 128, SET at the end) with recycling off and with each strategy firing
during the epoch; median epoch seconds and the ratio to "off".

    python benches/recycling.py [--seeds 3] [--epochs 500] [--json out.json] [--plots DIR]
    python benches/recycling.py --mode overhead [--repeats 7] [--strategies off]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

import sparse_mlp as sm
from sparse_mlp.datasets import load_madelon, make_classification, standardize

HERE = os.path.dirname(os.path.abspath(__file__))


def study_strategies(every: int, fraction: float) -> dict:
    def nr(**kw):
        return sm.NeuronRecycling(every_steps=every, fraction=fraction, **kw)

    return {
        "none": None,
        "magnitude, initial": nr(),
        "magnitude, initial, immunity 5": nr(immunity=5),
        "magnitude, matrix_normal": nr(reinit="matrix_normal"),
        "magnitude, copy": nr(reinit="copy"),
        "magnitude, interpolate 200": nr(interpolate_steps=200),
        "random, initial (control)": nr(select="random"),
        "largest, initial (control)": nr(select="largest"),
        "ReDo tau 0.025": sm.ReDo(tau=0.025, every_steps=every),
        "ContinualBackprop 1e-4": sm.ContinualBackprop(replacement_rate=1e-4, maturity=100),
        "MidpointLoss mean l2": sm.MidpointLoss(weight=1.0),
    }


def study(args: argparse.Namespace) -> None:
    data = load_madelon(args.data_dir)
    strategies = study_strategies(args.every, args.fraction)
    if args.only:
        strategies = {k: v for k, v in strategies.items() if k in args.only.split(";")}

    def build(seed: int) -> sm.SparseMLP:
        return sm.SparseMLP([500, 400, 100, 400, 2], activation=sm.AllReLU(0.5), epsilon=10,
                            init="normal", dropout=0.3, seed=seed)

    print(f"Madelon 500-400-100-400-2, {args.epochs} epochs, seeds {list(range(args.seeds))}, "
          f"events every {args.every} steps, fraction {args.fraction} (~{2000 // 32 + 1} steps per epoch), "
          f"{sm.get_num_threads()} threads", flush=True)
    rows = []
    for name, strategy in strategies.items():
        row = sm.recycling.compare(
            build, data.X_train, data.y_train, {name: strategy}, seeds=range(args.seeds),
            validation_data=(data.X_test, data.y_test), epochs=args.epochs, batch_size=32,
            learning_rate=0.01, momentum=0.9, weight_decay=2e-4, topology=sm.SET(zeta=0.3),
            verbose=0)[0]
        rows.append(row)
        print(sm.recycling.format_table([row]).splitlines()[-1], flush=True)
    print()
    print(sm.recycling.format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.plots:
        os.makedirs(args.plots, exist_ok=True)
        for row in rows:
            for seed, summary in enumerate(row.get("summaries", [])):
                slug = "".join(c if c.isalnum() else "_" for c in row["name"])
                sm.recycling.plot_summary(summary, os.path.join(args.plots, f"{slug}_seed{seed}.png"))


def overhead(args: argparse.Namespace) -> None:
    X, y = make_classification(10_000, 784, n_classes=10, n_informative=50, seed=0)
    X = standardize(X)[0]
    every = 20  # several events inside the ~79 steps of the epoch
    # built lazily, so "--strategies off" also runs on builds without recycling (A/B runs)
    makers = {
        "off": lambda: None,
        "NeuronRecycling every 20": lambda: sm.NeuronRecycling(every_steps=every, probe=0),
        "ReDo every 20 (activity tracking)": lambda: sm.ReDo(every_steps=every, probe=0),
        "ContinualBackprop every 10 (utility)": lambda: sm.ContinualBackprop(maturity=10),
        "MidpointLoss every step": lambda: sm.MidpointLoss(weight=1.0),
    }
    wanted = args.strategies.split(",") if args.strategies else None
    strategies = {k: make() for k, make in makers.items() if wanted is None or k.split()[0] in wanted}
    print(f"W1 epoch (784-1000-1000-1000-10, eps 20, 10,000 samples, batch 128, SET), "
          f"median of {args.repeats}, {sm.get_num_threads()} threads, sparse_mlp {sm.__version__}")
    models = {name: sm.SparseMLP([784, 1000, 1000, 1000, 10], activation=sm.AllReLU(0.6),
                                 epsilon=20, dropout=0.3, seed=0) for name in strategies}
    times: dict[str, list[float]] = {name: [] for name in strategies}
    for _ in range(args.repeats):  # interleaved, so drifts of the machine hit all alike
        for name, strategy in strategies.items():
            kw = {} if strategy is None else {"recycling": strategy}
            t0 = time.perf_counter()
            models[name].fit(X, y, epochs=1, batch_size=128, learning_rate=0.01, momentum=0.9,
                             weight_decay=2e-4, topology=sm.SET(zeta=0.3), verbose=0, **kw)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["off"]) if "off" in times else None
    for name, ts in times.items():
        med = statistics.median(ts)
        ratio = f"  {med / base:.3f}x off" if base else ""
        print(f"{name:<40} {med:.4f} s  (min {min(ts):.4f}){ratio}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["study", "overhead"], default="study")
    p.add_argument("--data-dir", default=os.path.join(HERE, "..", "..", "shared", "data", "madelon"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--every", type=int, default=1000, help="steps between recycling events")
    p.add_argument("--fraction", type=float, default=0.01, help="NeuronRecycling's fraction")
    p.add_argument("--only", default="", help="';'-separated strategy names to run")
    p.add_argument("--json", default="")
    p.add_argument("--plots", default="", help="directory for per-run histogram plots")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--strategies", default="", help="overhead: first words of the strategies to run")
    args = p.parse_args()
    np.seterr(all="ignore")
    if args.mode == "study":
        study(args)
    else:
        overhead(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
