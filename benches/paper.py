"""W6/W7 of ../shared/BENCHMARKS.md: the paper's Table 2 on its real data sets.

Rows: sparse ReLU and All-ReLU, each with and without Importance Pruning, and
a dense MLP of the same shape (numpy, float32 BLAS) trained on the same rows
with the same settings. Data sets: Madelon, Fashion-MNIST, the HIGGS subset
(20,000 rows train, 5,971 test) and CIFAR-10 when ``--cifar-dir`` names its
batches. Settings: ``paper`` (the paper's Table 7 hyper-parameters) or
``preset`` (the command line's preset for the data set: the paper's network
and sparsity with our training settings).

Every finished run is a line of ``--out`` (JSON Lines: settings, best and
final test accuracy, the epoch of the best, parameters at start and end,
seconds of training, the learning curve); a run already there is not run
again, and a run cut short continues from its checkpoint in ``--out``'s
folder, so a long table can be built over several sessions. The table
printed at the end sets the mean and spread over seeds beside the paper's
numbers; ``--table`` prints it from the file alone.

    python benches/paper.py --datasets madelon --seeds 5
    python benches/paper.py --datasets fashion_mnist --rows all_relu --settings paper --seeds 3
    python benches/paper.py --datasets higgs --seeds 3 --threads 1
    python benches/paper.py --datasets madelon --rows all_relu --precision float32,bfloat16
    python benches/paper.py --datasets madelon --rows all_relu --topology set,rigl1,rigl4,rigl_exact
    python benches/paper.py --table
    python benches/paper.py --smoke            # every data set and row for 2 epochs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import sparse_mlp as sm
from sparse_mlp import datasets

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "data")

# The paper's Table 7 (SPEC §8): hidden layers, epsilon, init, All-ReLU slope, batch.
NETWORKS = {
    "madelon": dict(hidden=[400, 100, 400], epsilon=10.0, init="normal", alpha=0.5, batch_size=32),
    "fashion_mnist": dict(hidden=[1000, 1000, 1000], epsilon=20.0, init="he_uniform", alpha=0.6,
                          batch_size=128),
    "higgs": dict(hidden=[1000, 1000, 1000], epsilon=10.0, init="xavier", alpha=0.05, batch_size=128),
    "cifar10": dict(hidden=[4000, 1000, 4000], epsilon=20.0, init="he_uniform", alpha=0.75,
                    batch_size=128),
}
PAPER_TRAINING = dict(learning_rate=0.01, momentum=0.9, weight_decay=2e-4, dropout=0.3, zeta=0.3,
                      epochs=500, prune_start=200)
# Table 2 (best test accuracy, %), parameters with Importance Pruning, minutes on one core.
PAPER = {
    "madelon": {"relu": 68.50, "relu_ip": 75.00, "all_relu": 71.33, "all_relu_ip": 77.00,
                "dense": 59.66, "params": (19_000, 2_737)},
    "fashion_mnist": {"relu": 90.48, "relu_ip": 89.43, "all_relu": 91.38, "all_relu_ip": 90.12,
                      "dense": 90.85, "params": (126_302, 25_759), "minutes": 137.5},
    "cifar10": {"relu": 67.05, "relu_ip": 65.21, "all_relu": 69.83, "all_relu_ip": 68.55,
                "dense": 64.94, "minutes": 590.0},
    "higgs": {"relu": 73.59, "relu_ip": 73.50, "all_relu": 73.67, "all_relu_ip": 73.76,
              "dense": 70.59, "params": (50_165, 9_992), "minutes": 216.7},
}
ROWS = ["relu", "all_relu", "relu_ip", "all_relu_ip", "dense"]
# The topology strategies a sparse row can evolve with: SET (the paper's) or
# RigL, updating once an epoch as SET does, with RigL's cosine decay of zeta
# to zero at 75 % of training (Evci et al.'s default end), candidates
# γ = 1 or 4 per grown connection, or the exact search; ranked by the
# gradient of the mini-batch before the update, or ("_epoch") summed over the
# whole epoch's mini-batches.
TOPOLOGIES = ["set", "rigl1", "rigl4", "rigl_exact", "rigl4_epoch", "rigl_exact_epoch"]


def topology(name: str, s: dict, batches: int, epochs: int) -> object:
    if name == "set":
        return sm.SET(zeta=s["zeta"])
    base = name.removesuffix("_epoch")
    search = {"rigl1": dict(candidates=1.0), "rigl4": dict(candidates=4.0),
              "rigl_exact": dict(mode="exact")}[base]
    return sm.RigL(zeta=s["zeta"], every_steps=batches, stop_step=max(1, int(0.75 * batches * epochs)),
                   accumulate=batches if name.endswith("_epoch") else 1, **search)


def load(name: str, args: argparse.Namespace) -> datasets.Split:
    if name == "madelon":
        return datasets.load_madelon(os.path.join(args.data_root, "madelon"))
    if name == "fashion_mnist":
        return datasets.load_mnist(os.path.join(args.data_root, "fashion-mnist"))
    if name == "higgs":
        return datasets.load_higgs(os.path.join(args.data_root, "higgs-subset"), n_train=20_000,
                                   n_test=5_971)
    return datasets.load_cifar10(args.cifar_dir)


def settings(dataset: str, kind: str) -> dict:
    """The full settings of a run: the network of the paper, and the
    paper's training or the preset's (the command line's)."""
    if kind == "paper":
        return {**NETWORKS[dataset], **PAPER_TRAINING}
    from sparse_mlp.cli import PRESETS

    preset = PRESETS[dataset]
    return {**NETWORKS[dataset], **PAPER_TRAINING, **{k: v for k, v in preset.items() if k != "hidden"}}


def learning_rate(s: dict) -> float | sm.schedules.Schedule:
    """The settings' rate: a number, or the cosine schedule a preset names."""
    if s.get("schedule", "constant") == "cosine":
        return sm.schedules.Cosine(s["learning_rate"])
    return s["learning_rate"]


def pruning(s: dict) -> sm.ImportancePruning:
    return sm.ImportancePruning(start_epoch=s["prune_start"])


def sparse_run(data: datasets.Split, s: dict, row: str, seed: int, epochs: int, work: str,
               progress, precision: str = "float32", evolve: str = "set") -> dict:
    activation = sm.AllReLU(s["alpha"]) if row.startswith("all_relu") else "relu"
    model = sm.SparseMLP([data.X_train.shape[1], *s["hidden"], int(data.y_train.max()) + 1],
                         activation=activation, epsilon=s["epsilon"], init=s["init"],
                         dropout=s["dropout"], seed=seed, precision=precision)
    start = model.n_connections
    batches = -(-len(data.y_train) // s["batch_size"])
    history = model.fit(
        data.X_train, data.y_train, epochs=epochs, batch_size=s["batch_size"],
        learning_rate=learning_rate(s), momentum=s["momentum"], weight_decay=s["weight_decay"],
        topology=topology(evolve, s, batches, epochs), pruning=pruning(s) if row.endswith("_ip") else None,
        validation_data=(data.X_test, data.y_test), verbose=0, checkpoint=work, checkpoint_every=5,
        resume=True, callbacks=[lambda m, r: progress(r["epoch"], r["val_accuracy"])])
    os.remove(work)  # the run is in the results file now
    curve = [r["val_accuracy"] for r in history]
    return {"params_start": start, "params_end": model.n_connections, "sizes": model.sizes,
            "seconds": sum(r["seconds"] for r in history), "curve": curve,
            "loss": [r["loss"] for r in history],
            "topology_seconds": sum(r["topology_seconds"] + r.get("rigl_seconds", 0.0) for r in history)}


class DenseMLP:
    """A dense MLP of the same shape (numpy float32): the same activations,
    inverted dropout, softmax cross-entropy and momentum SGD with decoupled
    weight decay as the sparse model, initialized from the same
    distribution with the dense fan-in."""

    def __init__(self, sizes: list[int], s: dict, activation: str, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.W, self.b = [], []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            if s["init"] == "normal":
                w = self.rng.normal(0, 0.1, size=(n_in, n_out))
            else:
                limit = np.sqrt(6 / n_in) if s["init"] == "he_uniform" else np.sqrt(6 / (n_in + n_out))
                w = self.rng.uniform(-limit, limit, size=(n_in, n_out))
            self.W.append(w.astype(np.float32))
            self.b.append(np.zeros(n_out, np.float32))
        self.VW = [np.zeros_like(w) for w in self.W]
        self.Vb = [np.zeros_like(b) for b in self.b]
        n_hidden = len(sizes) - 2
        self.slopes = [(-s["alpha"] if k % 2 == 0 else s["alpha"]) if activation == "all_relu" else 0.0
                       for k in range(n_hidden)]
        self.s = s

    def forward(self, x: np.ndarray, train: bool):
        a, factors = [x], []
        p = self.s["dropout"]
        for k in range(len(self.W) - 1):
            z = a[-1] @ self.W[k] + self.b[k]
            d = np.where(z >= 0, np.float32(1), np.float32(self.slopes[k]))
            if train and p > 0:
                d = d * ((self.rng.random(z.shape, dtype=np.float32) >= p) / np.float32(1 - p))
            a.append(z * d)
            factors.append(d)
        return a, factors, a[-1] @ self.W[-1] + self.b[-1]

    def train_epoch(self, X: np.ndarray, y: np.ndarray, batch: int, rates: np.ndarray) -> float:
        """One epoch; ``rates`` holds the learning rate of each mini-batch (the
        sparse model's schedule), weight decay following it as the sparse
        model's SGD does."""
        mu, base = self.s["momentum"], self.s["learning_rate"]
        order = self.rng.permutation(len(y))
        total = 0.0
        for step, start in enumerate(range(0, len(order), batch)):
            lr = float(rates[step])
            wd = self.s["weight_decay"] * lr / base
            idx = order[start:start + batch]
            a, factors, z = self.forward(X[idx], True)
            z = z - z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            total -= float(np.log(p[np.arange(len(idx)), y[idx]] + 1e-12).sum())
            delta = p
            delta[np.arange(len(idx)), y[idx]] -= 1
            delta /= len(idx)
            for k in range(len(self.W) - 1, -1, -1):
                gW, gb = a[k].T @ delta, delta.sum(axis=0)
                if k > 0:
                    delta = (delta @ self.W[k].T) * factors[k - 1]
                # v = mu v - lr g; w = w + v - wd w, in place (the arrays are large)
                for w, v, g in ((self.W[k], self.VW[k], gW), (self.b[k], self.Vb[k], gb)):
                    v *= mu
                    g *= lr
                    v -= g
                    w *= 1 - wd
                    w += v
        return total / len(y)

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        hits = 0
        for start in range(0, len(y), 2048):
            hits += int((self.forward(X[start:start + 2048], False)[2].argmax(axis=1)
                         == y[start:start + 2048]).sum())
        return hits / len(y)


def dense_run(data: datasets.Split, s: dict, seed: int, epochs: int, progress) -> dict:
    sizes = [data.X_train.shape[1], *s["hidden"], int(data.y_train.max()) + 1]
    model = DenseMLP(sizes, s, "all_relu", seed)
    curve, losses, seconds = [], [], 0.0
    schedule = sm.schedules.learning_rate(learning_rate(s))
    batches = -(-len(data.y_train) // s["batch_size"])
    for epoch in range(epochs):
        t0 = time.perf_counter()
        rates = schedule.rates(epoch + 1, batches, epochs, len(data.y_train), {})
        losses.append(model.train_epoch(data.X_train, data.y_train, s["batch_size"], rates))
        curve.append(model.accuracy(data.X_test, data.y_test))
        seconds += time.perf_counter() - t0
        progress(epoch + 1, curve[-1])
    params = sum(w.size for w in model.W)
    return {"params_start": params, "params_end": params, "sizes": sizes, "seconds": seconds,
            "curve": curve, "loss": losses}


def key(r: dict) -> str:
    precision = r.get("precision", "float32")  # runs recorded before bfloat16 are float32
    return (f"{r['dataset']}/{r['row']}/{r['settings']}/seed{r['seed']}/epochs{r['epochs']}/"
            f"threads{r['threads']}" + ("" if precision == "float32" else f"/{precision}")
            + ("" if r.get("topology", "set") == "set" else f"/{r['topology']}"))


def read(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table(results: list[dict]) -> str:
    """Mean ± spread of the best accuracy per (data set, row, settings, epochs),
    beside the paper's; for Importance Pruning rows the best after pruning
    has started."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        kind = r["settings"] + ("" if r.get("precision", "float32") == "float32" else f", {r['precision']}")
        kind += "" if r.get("topology", "set") == "set" else f", {r['topology']}"
        groups.setdefault((r["dataset"], r["row"], kind, r["epochs"]), []).append(r)
    lines = ["| data set | row | settings | epochs | seeds | best acc % (paper) | final acc % | best epoch "
             "| parameters start → end (paper) | minutes per run, threads |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, row, kind, epochs), rs in sorted(groups.items(), key=lambda kv: (
            list(NETWORKS).index(kv[0][0]), ROWS.index(kv[0][1]), kv[0][2], kv[0][3])):
        # pruning rows: the best once pruning has started (the paper's sparse model)
        start = [r["settings_used"]["prune_start"] if row.endswith("_ip")
                 and r["settings_used"]["prune_start"] < len(r["curve"]) else 0 for r in rs]
        best = [100 * max(r["curve"][s:]) for r, s in zip(rs, start)]
        best_epoch = [s + int(np.argmax(r["curve"][s:])) + 1 for r, s in zip(rs, start)]
        final = [100 * r["final"] for r in rs]
        spread = statistics.stdev(best) if len(best) > 1 else 0.0
        paper = PAPER[dataset].get(row)
        params = f"{rs[0]['params_start']:,} → {round(statistics.mean(r['params_end'] for r in rs)):,}"
        if row.endswith("_ip") and "params" in PAPER[dataset]:
            params += " ({:,} → {:,})".format(*PAPER[dataset]["params"])
        threads = sorted({r["threads"] for r in rs})
        minutes = ", ".join(f"{statistics.mean(r['seconds'] for r in rs if r['threads'] == t) / 60:.1f} "
                            f"({t})" for t in threads)
        lines.append(f"| {dataset} | {row} | {kind} | {epochs} | {len(rs)} | {statistics.mean(best):.2f} ± "
                     f"{spread:.2f}" + (f" ({paper:.2f})" if paper else "") +
                     f" | {statistics.mean(final):.2f} | {statistics.mean(best_epoch):.0f} "
                     f"| {params} | {minutes} |")
    return "\n".join(lines)


def topology_table(results: list[dict], seeds: int = 3) -> str:
    """SET beside RigL on the same seeds (the first ``seeds``), settings and
    epochs, for every (data set, row, settings, epochs) that has a RigL run."""
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for r in results:
        if r["row"] == "dense" or r.get("precision", "float32") != "float32" or r["seed"] >= seeds:
            continue
        where = (r["dataset"], r["row"], r["settings"], r["epochs"])
        groups.setdefault(where, {}).setdefault(r.get("topology", "set"), []).append(r)
    lines = ["| data set | row, settings | epochs | topology | seeds | best acc % | final acc % | best epoch "
             "| minutes per run |", "|---|---|---|---|---|---|---|---|---|"]
    for (dataset, row, kind, epochs), by in sorted(groups.items(), key=lambda kv: (
            list(NETWORKS).index(kv[0][0]), kv[0][1], kv[0][2], kv[0][3])):
        if len(by) < 2 or "set" not in by:
            continue
        for name in [t for t in TOPOLOGIES if t in by]:
            rs = by[name]
            best = [100 * max(r["curve"]) for r in rs]
            spread = statistics.stdev(best) if len(best) > 1 else 0.0
            lines.append(f"| {dataset} | {row}, {kind} | {epochs} | {name} | {len(rs)} | "
                         f"{statistics.mean(best):.2f} ± {spread:.2f} | "
                         f"{statistics.mean(100 * r['final'] for r in rs):.2f} | "
                         f"{statistics.mean(r['best_epoch'] for r in rs):.0f} | "
                         f"{statistics.mean(r['seconds'] for r in rs) / 60:.1f} |")
    return "\n".join(lines)


def figure(results: list[dict], path: str, dataset: str = "fashion_mnist") -> None:
    """Test accuracy per epoch of each (row, settings) of ``dataset``, the
    mean over seeds, beside the paper's best (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[list[float]]] = {}
    for r in results:
        if r["dataset"] == dataset:
            groups.setdefault((r["row"], r["settings"]), []).append(r["curve"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (row, kind), curves in sorted(groups.items()):
        n = min(len(c) for c in curves)
        mean = 100 * np.mean([c[:n] for c in curves], axis=0)
        label = f"{row}, {'the paper' if kind == 'paper' else 'our recipe'}'s settings ({len(curves)} seeds)"
        ax.plot(np.arange(1, n + 1), mean, label=label, linewidth=1)
    for row, value in PAPER[dataset].items():
        if row in ("all_relu", "relu", "dense") and isinstance(value, float):
            ax.axhline(value, linestyle="--", linewidth=0.8, color="gray")
            ax.annotate(f"paper {row} {value:.2f}", (5, value + 0.05), fontsize=7, color="gray")
    ax.set(xlabel="epoch", ylabel="test accuracy %", ylim=(84, 92.5),
           title=f"{dataset}: 784-1000-1000-1000-10, ε 20, SET")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)


def run_one(r: dict, data: datasets.Split, s: dict, work: str, out: str) -> None:
    """Trains the run ``r`` describes and appends its result to ``out``."""
    name, t0 = key(r), time.monotonic()
    print(f"{name}: ...", flush=True)

    def progress(epoch: int, accuracy: float) -> None:
        if epoch % 25 == 0 or epoch == r["epochs"]:
            print(f"  {name} epoch {epoch}: test accuracy {accuracy:.4f} ({time.monotonic() - t0:.0f} s)",
                  flush=True)

    if r["row"] == "dense":
        result = dense_run(data, s, r["seed"], r["epochs"], progress)
    else:
        path = os.path.join(work, name.replace("/", "_") + ".npz")
        result = sparse_run(data, s, r["row"], r["seed"], r["epochs"], path, progress,
                            r.get("precision", "float32"), r.get("topology", "set"))
    curve = result["curve"]
    r.update(result, best=max(curve), final=curve[-1], best_epoch=int(np.argmax(curve)) + 1,
             settings_used=s, cpu=cpu())
    with open(out, "a") as f:
        f.write(json.dumps(r) + "\n")
    print(f"{name}: best {100 * r['best']:.2f} % at epoch {r['best_epoch']}, final {100 * r['final']:.2f} "
          f"%, {r['params_start']:,} → {r['params_end']:,} parameters, {r['seconds'] / 60:.1f} min",
          flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="madelon,fashion_mnist,higgs",
                   help="comma-separated: madelon, fashion_mnist, higgs, cifar10")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated: " + ", ".join(ROWS))
    p.add_argument("--settings", default="paper,preset", help="paper, preset or both")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="default: 500, the paper's")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default=SHARED, help="the folder holding madelon/, fashion-mnist/, ...")
    p.add_argument("--cifar-dir", help="a cifar-10-batches-py folder (CIFAR-10 is not shipped)")
    p.add_argument("--precision", default="float32",
                   help="float32, bfloat16 or both (comma-separated): the sparse rows' activations")
    p.add_argument("--topology", default="set",
                   help="comma-separated: " + ", ".join(TOPOLOGIES) + " (the sparse rows' topology strategy)")
    p.add_argument("--out", default=os.path.join(HERE, "paper_results.jsonl"))
    p.add_argument("--table", action="store_true", help="print the table of --out and stop")
    p.add_argument("--topology-table", action="store_true",
                   help="print SET beside RigL on the first 3 seeds of --out and stop")
    p.add_argument("--smoke", action="store_true", help="2 epochs of every run, 1 seed, into a temp file")
    p.add_argument("--figure", metavar="PNG",
                   help="draw the learning curves of --out's Fashion-MNIST runs and stop")
    args = p.parse_args()
    if args.smoke:
        import tempfile

        args.epochs, args.seeds = 2, 1
        if args.out == p.get_default("out"):
            args.out = os.path.join(tempfile.mkdtemp(prefix="paper-smoke-"), "paper.jsonl")
    if args.table:
        print(table(read(args.out)))
        return
    if args.topology_table:
        print(topology_table(read(args.out)))
        return
    if args.figure:
        figure(read(args.out), args.figure)
        print(args.figure)
        return
    sm.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", str(args.threads))
    work = args.out + ".work"
    os.makedirs(work, exist_ok=True)
    done = {key(r) for r in read(args.out)}
    names = [d for d in args.datasets.split(",") if d != "cifar10" or args.cifar_dir]
    print(f"machine: {cpu()}, {os.cpu_count()} CPUs; sparse_mlp {sm.__version__}, {args.threads} "
          f"threads; results in {args.out}", flush=True)
    for dataset in names:
        data = None
        for kind in args.settings.split(","):
            s = settings(dataset, kind)
            epochs = args.epochs or s["epochs"]
            for row in args.rows.split(","):
                if row == "dense" and kind != "paper":
                    continue  # the dense peer trains with the paper's settings
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    for precision in args.precision.split(","):
                        for evolve in args.topology.split(","):
                            if row == "dense" and (precision != "float32" or evolve != "set"):
                                continue  # the dense peer is numpy float32
                            r = {"dataset": dataset, "row": row, "settings": kind, "seed": seed,
                                 "epochs": epochs, "threads": args.threads}
                            if precision != "float32":
                                r["precision"] = precision
                            if evolve != "set":
                                r["topology"] = evolve
                            if key(r) in done:
                                continue
                            if data is None:
                                data = load(dataset, args)
                            run_one(r, data, s, work, args.out)
    print(table([r for r in read(args.out)]))


if __name__ == "__main__":
    sys.exit(main())
