"""Comparing recycling strategies: the same model and seeds trained with each
(:func:`compare`), a table of the results (:func:`format_table`) and the
histograms of a run (:func:`plot_summary`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import InvalidInputError


def compare(
    build: Callable[[int], Any],
    X: Any,
    y: Any,
    strategies: dict[str, Any],
    seeds: Sequence[int] = (0, 1, 2),
    validation_data: tuple[Any, Any] | None = None,
    **fit_kwargs: Any,
) -> list[dict[str, Any]]:
    """Trains ``build(seed)`` on the same data for every seed and every
    strategy (``None`` = no recycling; the baseline belongs in the dict) and
    returns one row per strategy: final and best validation accuracy (mean,
    std, per seed), seconds per run, and the recycling statistics of the
    first hidden layer it recycles, averaged over seeds (total recycles,
    distinct neurons, the largest count, the share of recycles that went to
    the 10 % most-recycled neurons, the mean overlap of an event's selection
    with the previous one).

    >>> import numpy as np, sparse_mlp as sm
    >>> X = np.random.default_rng(0).normal(size=(200, 10)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> rows = sm.recycling.compare(
    ...     lambda seed: sm.SparseMLP([10, 32, 2], epsilon=4, seed=seed), X, y,
    ...     {"none": None, "magnitude": sm.NeuronRecycling(fraction=0.1, every_steps=5)},
    ...     seeds=[0], validation_data=(X, y), epochs=3, verbose=0)
    >>> [r["name"] for r in rows]
    ['none', 'magnitude']
    """
    if validation_data is None:
        raise InvalidInputError("compare needs validation_data to report accuracies")
    rows = []
    for name, strategy in strategies.items():
        runs = []
        for seed in seeds:
            model = build(seed)
            t0 = time.perf_counter()
            hist = model.fit(X, y, validation_data=validation_data, recycling=strategy, **fit_kwargs)
            runs.append({"seconds": time.perf_counter() - t0,
                         "final": hist[-1]["val_accuracy"],
                         "best": max(r["val_accuracy"] for r in hist),
                         "summary": model.recycling_summary})
        rows.append(_row(name, strategy, runs))
    return rows


def _row(name: str, strategy: Any, runs: list[dict[str, Any]]) -> dict[str, Any]:
    def spread(v: list[float]) -> float:
        return statistics.stdev(v) if len(v) > 1 else 0.0

    final = [r["final"] for r in runs]
    best = [r["best"] for r in runs]
    row: dict[str, Any] = {
        "name": name, "strategy": repr(strategy),
        "final": statistics.mean(final), "final_std": spread(final),
        "best": statistics.mean(best), "best_std": spread(best),
        "best_per_seed": best, "seconds": statistics.mean(r["seconds"] for r in runs),
    }
    layers = [r["summary"]["layers"][0] for r in runs if r["summary"] and r["summary"]["layers"]]
    if layers:
        for key in ("recycled", "distinct_neurons", "max_count", "top_decile_share", "neurons"):
            row[key] = statistics.mean(layer[key] for layer in layers)
        overlaps = [layer["mean_overlap"] for layer in layers if layer["mean_overlap"] is not None]
        row["mean_overlap"] = statistics.mean(overlaps) if overlaps else None
        row["layer"] = layers[0]["layer"]
        row["summaries"] = [r["summary"] for r in runs]
    return row


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`compare` as a plain-text table (accuracies in %)."""
    head = (f"{'strategy':<32} {'final acc':>14} {'best acc':>14} {'s/run':>7} "
            f"{'recycled':>9} {'distinct':>9} {'max':>5} {'top10%':>7} {'overlap':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = f"{100 * r['final']:6.2f} ± {100 * r['final_std']:4.2f}"
        best = f"{100 * r['best']:6.2f} ± {100 * r['best_std']:4.2f}"
        rec = ""
        if "recycled" in r:
            overlap = "" if r["mean_overlap"] is None else f"{100 * r['mean_overlap']:>7.1f}%"
            rec = (f"{r['recycled']:>9.1f} {r['distinct_neurons']:>9.1f} {r['max_count']:>5.1f} "
                   f"{100 * r['top_decile_share']:>6.1f}% {overlap:>8}")
        lines.append(f"{r['name']:<32} {acc:>14} {best:>14} {r['seconds']:>7.1f} {rec}")
    return "\n".join(lines)


def plot_summary(summary: dict[str, Any], path: str) -> None:
    """Saves the recycle-count and magnitude histograms of a run's
    ``model.recycling_summary`` as an image (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidInputError("plot_summary needs matplotlib: pip install matplotlib") from None
    layers = summary["layers"]
    fig, axes = plt.subplots(2, len(layers), figsize=(4 * len(layers), 6), squeeze=False)
    for c, layer in enumerate(layers):
        hist = layer["recycle_count_histogram"]
        axes[0][c].bar(range(len(hist)), hist)
        axes[0][c].set_yscale("log")
        axes[0][c].set_title(f"hidden layer {layer['layer']}")
        axes[0][c].set_xlabel("times recycled")
        axes[0][c].set_ylabel("neurons")
        m = layer["magnitude_histogram"]
        if m["counts"]:
            edges = np.asarray(m["edges"])
            axes[1][c].bar(edges[:-1], m["counts"], width=np.diff(edges), align="edge")
        axes[1][c].set_xlabel("magnitude ‖in‖·‖out‖")
        axes[1][c].set_ylabel("neurons")
    fig.suptitle(summary["strategy"], fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
