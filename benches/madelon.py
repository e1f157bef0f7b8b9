"""W6 of ../shared/BENCHMARKS.md: best test accuracy on Madelon over seeds,
with and without Importance Pruning, and the training time.

    python benches/madelon.py [--data-dir ../shared/data/madelon] [--seeds 5] [--epochs 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import sparse_mlp as sm
from sparse_mlp.datasets import load_madelon

HERE = os.path.dirname(os.path.abspath(__file__))


def run(data, seed: int, epochs: int, pruning, activation) -> dict:
    model = sm.SparseMLP([500, 400, 100, 400, 2], activation=activation, epsilon=10,
                         init="normal", dropout=0.3, seed=seed)
    start = time.perf_counter()
    history = model.fit(data.X_train, data.y_train, epochs=epochs, batch_size=32,
                        learning_rate=0.01, momentum=0.9, weight_decay=2e-4,
                        topology=sm.SET(zeta=0.3), pruning=pruning,
                        validation_data=(data.X_test, data.y_test), verbose=0)
    seconds = time.perf_counter() - start
    return {
        "best": max(r["val_accuracy"] for r in history),
        "last": history[-1]["val_accuracy"],
        "seconds": seconds,
        "connections": model.n_connections,
        "sizes": model.sizes,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", default=os.path.join(HERE, "..", "..", "shared", "data", "madelon"))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--prune-every", type=int, default=10, help="for the percentile rows")
    p.add_argument("--prune-percentile", type=float, default=20.0, help="for the percentile rows")
    p.add_argument("--activation", default="all_relu", choices=["all_relu", "relu"])
    args = p.parse_args()
    data = load_madelon(args.data_dir)
    activation = sm.AllReLU(0.5) if args.activation == "all_relu" else "relu"
    configs = {
        "SET": None,
        # the default: a budget of 15 % of the connections over 8 events, width kept
        "SET + IP (default)": sm.ImportancePruning(start_epoch=200),
        "SET + IP (budget, shrink=True)": sm.ImportancePruning(start_epoch=200, shrink=True),
        # the prototype's rule (a percentile every event), emptied slots reusable
        "SET + IP (percentile)": sm.ImportancePruning(
            start_epoch=200, every=args.prune_every, percentile=args.prune_percentile),
        "SET + IP (percentile, shrink=True)": sm.ImportancePruning(
            start_epoch=200, every=args.prune_every, percentile=args.prune_percentile, shrink=True),
    }
    print(f"Madelon 500-400-100-400-2, eps 10, {args.activation}, {args.epochs} epochs, "
          f"{sm.get_num_threads()} threads")
    for name, pruning in configs.items():
        results = [run(data, seed, args.epochs, pruning, activation) for seed in range(args.seeds)]
        best = [r["best"] for r in results]
        spread = statistics.stdev(best) if len(best) > 1 else 0.0
        print(f"{name:<24} best test acc {100 * statistics.mean(best):.2f} ± {100 * spread:.2f} % "
              f"(seeds: {', '.join(f'{100 * b:.2f}' for b in best)}); "
              f"last {100 * statistics.mean(r['last'] for r in results):.2f} %; "
              f"{statistics.mean(r['seconds'] for r in results):.1f} s per run; "
              f"connections {results[0]['connections']}, sizes {results[0]['sizes']}")


if __name__ == "__main__":
    main()
