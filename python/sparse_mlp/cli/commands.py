"""``sparse-mlp evaluate``, ``predict``, ``bench``, ``info`` and ``plot``."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Sequence

import numpy as np

from .. import _core, datasets, labels
from ..files import atomic_write, check_writable
from ..memory import available_bytes, format_bytes
from ..model import SparseMLP
from ..training.progress import format_record
from . import data as cli_data
from .settings import IMAGE_SHAPES


def evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    model = SparseMLP.load(args.model)
    X, y = cli_data.evaluation_data(args, model._config.get("data", {}))
    result = model.evaluate(X, y)
    result["samples"] = int(X.shape[0])
    print(json.dumps(result) if args.json else
          f"test loss {result['loss']:.4f}  accuracy {result['accuracy']:.4f}  ({X.shape[0]} samples)")
    return 0


def predict(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    model = SparseMLP.load(args.model)
    if args.output:
        check_writable(args.output, "--output")
    X, _ = datasets.read_table(args.input, cli_data.label(args.label) if args.label is not None else None)
    X = cli_data.scale(np.asarray(X, dtype=np.float64), model._config.get("data", {}))
    names = [labels.text(c) for c in model._output_labels()]
    if args.proba:
        result = model.predict_proba(X)
        rows = [[f"{v:.6g}" for v in row] for row in result]
        header = names
    else:
        result = model.predict(X)
        rows = [[labels.text(v)] for v in result]
        header = ["prediction"]
    if args.output and args.output.endswith(".npy"):
        atomic_write(args.output, lambda f: np.save(f, result, allow_pickle=False))
        return 0
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if args.output or args.proba:
        writer.writerow(header)
    writer.writerows(rows)
    if args.output:
        atomic_write(args.output, lambda f: f.write(text.getvalue().encode()))
    else:
        sys.stdout.write(text.getvalue())
    return 0


def bench(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:

    if args.threads:
        _core.set_num_threads(args.threads)
    sizes = args.sizes
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.samples, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], size=args.samples)
    t0 = time.perf_counter()
    model = SparseMLP(sizes, epsilon=args.epsilon, seed=0, precision=args.precision)
    init = time.perf_counter() - t0
    model._net.set_profiling(args.profile)
    history = model.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
    profile = model._net.profile
    train = sorted(r["train_seconds"] for r in history)
    median = train[len(train) // 2]
    t0 = time.perf_counter()
    model.predict(X)
    infer = time.perf_counter() - t0
    useful = 6.0 * model.n_connections * args.samples / median / 1e9
    dense = np.ones((1024, 1024), dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(10):
        dense @ dense
    gemm = 10 * 2 * 1024**3 / (time.perf_counter() - t0) / 1e9
    result = {"sizes": sizes, "connections": model.n_connections, "threads": _core.get_num_threads(),
              "init_seconds": init, "epoch_seconds": median, "samples_per_second": args.samples / median,
              "useful_gflops": useful, "numpy_gemm_gflops": gemm, "inference_seconds": infer,
              "memory_bytes": model.memory_bytes, "precision": args.precision}
    if profile is not None:
        result["profile"] = profile_rows(profile, model._net.layer_nnz, args.samples, args.epochs,
                                         sum(r["topology_seconds"] for r in history))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"model {'-'.join(map(str, sizes))}: {model.n_connections} connections, "
              f"{model.memory_bytes / 1e6:.1f} MB, {_core.get_num_threads()} threads, "
              f"{args.precision} activations ({_core.simd_level()} kernels)")
        print(f"training epoch of {args.samples} samples (median of {args.epochs}): {median:.3f} s, "
              f"{args.samples / median:,.0f} samples/s, {useful:.1f} GFLOP/s of sparse work")
        print(f"inference: {infer:.3f} s; numpy dense GEMM here: {gemm:.0f} GFLOP/s "
              f"(sparse work at {useful / gemm:.1%} of its rate)")
        if profile is not None:
            print(profile_table(result["profile"]))
    return 0


def profile_rows(profile: dict, nnz: list[int], samples: int, epochs: int,
                 set_seconds: float) -> list[dict]:
    """The parts of an epoch (the core's profile, SET's time from the
    history), as rows of milliseconds per epoch, share of the measured time
    and, for the kernels, GFLOP/s of their useful work (2·nnz flops per
    sample forward, 4·nnz backward, 2·nnz for the first layer's weight
    gradient alone)."""
    parts: list[tuple[str, float, float]] = [("input gather and targets", profile["gather"], 0.0)]
    for k, n in enumerate(nnz):
        parts.append((f"forward, layer {k + 1} (activation, dropout folded in)", profile["forward"][k],
                      2.0 * n * samples * epochs))
    parts.append(("loss and output deltas", profile["loss"], 0.0))
    for k in reversed(range(len(nnz))):
        parts.append((f"backward, layer {k + 1}", profile["backward"][k],
                      (4.0 if k else 2.0) * nnz[k] * samples * epochs))
    parts += [("bias gradients", sum(profile["bias"]), 0.0),
              ("optimizer step (all connections, biases)", profile["step"], 0.0),
              ("other (loop, recycling, blends)", profile["other"], 0.0),
              ("SET (between epochs)", set_seconds, 0.0)]
    total = sum(t for _, t, _ in parts)
    return [{"part": name, "ms_per_epoch": 1e3 * t / epochs, "share": t / total if total else 0.0,
             "gflops": flops / t / 1e9 if flops and t else None} for name, t, flops in parts]


def profile_table(rows: list[dict]) -> str:
    lines = ["| part | ms per epoch | share | GFLOP/s |", "|---|---|---|---|"]
    for r in rows:
        rate = f"{r['gflops']:.1f}" if r["gflops"] else ""
        lines.append(f"| {r['part']} | {r['ms_per_epoch']:.1f} | {100 * r['share']:.1f} % | {rate} |")
    return "\n".join(lines)


def info(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    model = SparseMLP.load(args.model)
    layers = [{"index": layer.index, "shape": list(layer.shape), "nnz": layer.nnz,
               "density": layer.density} for layer in model.layers]
    scored = [r for r in model.history if "val_accuracy" in r]
    result = {"sizes": model.sizes, "connections": model.n_connections,
              "memory_bytes": model.memory_bytes, "layers": layers,
              "epochs_trained": model.epochs_trained, "seed": model.seed,
              "data": model._config.get("data", {}).get("name")}
    if scored:
        result["best_val_accuracy"] = max(r["val_accuracy"] for r in scored)
        result["last_val_accuracy"] = scored[-1]["val_accuracy"]
    checkpoint = model._config.get("fit")
    if checkpoint:
        result["checkpoint"] = {"done": checkpoint["done"], "epochs": checkpoint["plan"]["epochs"]}
    batch = args.batch_size or (checkpoint or {}).get("plan", {}).get("batch_size", 32)
    estimate = model.memory_estimate(batch)
    result["training_memory"] = {"batch_size": batch, **estimate,
                                 "available": available_bytes()}
    if args.json:
        print(json.dumps(result))
        return 0
    print(repr(model))
    print(model.summary())
    if model.history:
        print(f"trained {model.epochs_trained} epochs; last: {format_record(model.history[-1])}")
    if scored:
        print(f"best validation accuracy {result['best_val_accuracy']:.4f}")
    if checkpoint:
        print(f"checkpoint of a run at epoch {checkpoint['done']} of {checkpoint['plan']['epochs']}")
    available = result["training_memory"]["available"]
    print(f"training at batch {batch} needs {format_bytes(estimate['training_total'])} "
          f"({format_bytes(estimate['parameters'])} parameters, "
          f"{format_bytes(estimate['training_buffers'])} buffers, "
          f"{format_bytes(estimate['topology_change'])} for SET); inference "
          f"{format_bytes(estimate['inference_total'])}"
          + (f"; {format_bytes(available)} available" if available is not None else ""))
    return 0


def plot(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    from ..plots import plot_run  # (matplotlib is an optional extra)

    model = SparseMLP.load(args.model)
    shape = tuple(args.image_shape) if args.image_shape else IMAGE_SHAPES.get(
        model._config.get("data", {}).get("name", ""))
    for path in plot_run(model, args.out, image_shape=shape):
        print(path)
    return 0
