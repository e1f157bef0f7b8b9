"""W4 of ../shared/BENCHMARKS.md: the paper's extreme models on this machine.

65536 features, 7,000 training and 3,000 test samples, 2 classes
(``sm.datasets.make_classification``, the Madelon algorithm, written once to a
memory-mapped ``.npy`` in ``--data``). Each model is built and trained for
``--epochs`` epochs with SET (zeta 0.3), dropout 0.4, eta 0.01, momentum 0.9,
in a process of its own so that its peak memory is its own. Recorded: init
time, memory estimate, peak memory, time per epoch (training, evaluation of
the 3,000 test samples, one SET evolution step), inference time, bytes per
connection. "peak GB" is the peak of anonymous resident memory (the model,
its buffers, Python; sampled every 0.1 s), without the data file's pages,
which the kernel can drop; "B/conn" is that peak, less what the process
held before the model was built, per connection.

    python benches/w4.py                       # all four models, largest last
    python benches/w4.py --models w4a w4b      # some of them
    python benches/w4.py --batch 128           # the paper's batch (w4d does not fit it)
    python benches/w4.py --models sweep        # w4a's architecture at epsilon 5, 10, 20, 40
    python benches/w4.py --inference-only      # build each model, time predict_proba, save, load
    python benches/w4.py --models w4d --precision bfloat16   # bfloat16 activations: a larger batch
    python benches/w4.py --smoke               # the same on tiny models, to check the script

The batch size is the paper's 128 or, when the memory estimate says that does
not fit, the largest that does (the script says so). Results go to
``--out`` (JSON Lines) and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

import numpy as np

import sparse_mlp as sm
from sparse_mlp.memory import available_bytes, format_bytes

FEATURES, TRAIN, TEST = 65536, 7000, 3000
MODELS = {
    # name: (hidden layer sizes, epsilon)
    "w4a": ([500_000, 500_000], 10),
    "w4b": ([2_500_000, 2_500_000], 5),
    "w4c": ([5_000_000, 5_000_000], 5),
    "w4d": ([5_000_000] * 10, 1),
    # w4a's architecture with other densities: nnz varies at fixed neurons
    "w4a-e5": ([500_000, 500_000], 5),
    "w4a-e20": ([500_000, 500_000], 20),
    "w4a-e40": ([500_000, 500_000], 40),
}
W4 = ["w4a", "w4b", "w4c", "w4d"]


def smoke() -> None:
    """--smoke: the same models at 1/1000 of the width, on 256 features and
    400 samples, in seconds (the tests run the README's commands this way)."""
    global FEATURES, TRAIN, TEST
    FEATURES, TRAIN, TEST = 256, 300, 100
    for name, (hidden, epsilon) in MODELS.items():
        MODELS[name] = ([h // 1000 for h in hidden], epsilon)
SWEEP = ["w4a-e5", "w4a", "w4a-e20", "w4a-e40"]


def data(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """X (memory-mapped) and y of the 10,000 samples, generated once."""
    os.makedirs(folder, exist_ok=True)
    xp, yp = os.path.join(folder, "X.npy"), os.path.join(folder, "y.npy")
    if not (os.path.exists(xp) and os.path.exists(yp)):
        t = time.perf_counter()
        _, y = sm.datasets.make_classification(
            TRAIN + TEST, FEATURES, n_informative=64, n_redundant=64, n_classes=2, seed=0,
            out=xp + ".tmp.npy")
        np.save(yp, y)
        os.replace(xp + ".tmp.npy", xp)
        print(f"generated {TRAIN + TEST} x {FEATURES} samples in {time.perf_counter() - t:.1f} s "
              f"({os.path.getsize(xp) / 1e9:.2f} GB at {xp})", flush=True)
    return np.load(xp, mmap_mode="r"), np.load(yp)


def peak_rss() -> int:
    """Peak resident memory; it includes the pages of the memory-mapped data read."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class AnonymousPeak:
    """Peak of the process's anonymous resident memory (``RssAnon``: the
    model, its buffers and Python, without the data file's cached pages),
    sampled every 0.1 s."""

    def __init__(self) -> None:
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            self.peak = max(self.peak, self.now())

    @staticmethod
    def now() -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return 0

    def close(self) -> int:
        self.stop.set()
        self.thread.join()
        return max(self.peak, self.now())


def batch_that_fits(model: sm.SparseMLP, wanted: int) -> int:
    available = available_bytes()
    if available is None:
        return wanted
    est = model.memory_estimate(1)
    fixed = est["training_total"] - est["training_buffers"] - model.memory_bytes
    per_sample = est["training_buffers"]
    # 10 % of what is left stays free for the data's pages and the allocator
    return max(1, min(wanted, int((0.9 * available - fixed) // per_sample)))


def save_and_load(model: sm.SparseMLP, folder: str) -> dict:
    """Times ``save`` and ``load`` (the model is released before loading) and
    records the file size and how much memory each added to the process."""
    path = os.path.join(folder, "model.npz")
    base, sampler = AnonymousPeak.now(), AnonymousPeak()
    t = time.perf_counter()
    model.save(path)
    save_seconds, save_extra = time.perf_counter() - t, sampler.close() - base
    size = os.path.getsize(path)
    del model
    base, sampler = AnonymousPeak.now(), AnonymousPeak()
    t = time.perf_counter()
    loaded = sm.SparseMLP.load(path)
    load_seconds, load_peak = time.perf_counter() - t, sampler.close() - base
    held = AnonymousPeak.now() - base
    del loaded
    os.remove(path)
    return {"save_seconds": save_seconds, "save_extra_bytes": save_extra, "file_bytes": size,
            "load_seconds": load_seconds, "load_peak_bytes": load_peak, "loaded_bytes": held}


def one(name: str, args: argparse.Namespace) -> dict:
    """Builds, trains and measures one model (in this process)."""
    X, y = data(args.data)
    hidden, epsilon = MODELS[name]
    sizes = [FEATURES, *hidden, 2]
    anon0 = AnonymousPeak.now()
    sampler = AnonymousPeak()
    t = time.perf_counter()
    model = sm.SparseMLP(sizes, epsilon=epsilon, activation=sm.AllReLU(0.6), dropout=0.4,
                         init="he_uniform", seed=0, precision=args.precision)
    init_seconds = time.perf_counter() - t
    batch = batch_that_fits(model, args.batch)
    if batch < args.batch:
        print(f"{name}: batch {args.batch} does not fit in the available memory; using {batch}",
              flush=True)
    est = model.memory_estimate(batch)
    nnz = model.n_connections
    print(f"{name}: {'-'.join(map(str, sizes))}, {nnz:,} connections, built in "
          f"{init_seconds:.1f} s; training needs {format_bytes(est['training_total'])} at batch {batch}",
          flush=True)
    X_train, y_train, X_test, y_test = X[:TRAIN], y[:TRAIN], X[TRAIN:], y[TRAIN:]
    if args.inference_only:
        # a model that has not trained has no training buffers: inference
        # uses its own chunk (as many samples as fit in 256 MB, at least 32)
        chunk = model._net.inference_batch()
        t = time.perf_counter()
        model.predict_proba(X_test)
        inference_seconds = time.perf_counter() - t
        anon_peak = sampler.close()
        return {"model": name, "sizes": sizes, "epsilon": epsilon, "neurons": sum(hidden),
                "connections": nnz, "init_seconds": init_seconds, "inference_only": True,
                "inference_chunk": chunk, "inference_seconds": inference_seconds,
                "inference_samples": TEST, "estimate": est, "peak_anonymous": anon_peak,
                "anonymous_before_model": anon0, "threads": sm.get_num_threads(),
                **save_and_load(model, args.data)}
    history = model.fit(X_train, y_train, epochs=args.epochs, batch_size=batch,
                        learning_rate=0.01, momentum=0.9, weight_decay=2e-4,
                        topology=sm.SET(0.3), validation_data=(X_test, y_test), verbose=2)
    t = time.perf_counter()
    model.predict_proba(X_test)
    inference_seconds = time.perf_counter() - t
    # SET does not run after a run's last epoch; one step, timed on its own
    t = time.perf_counter()
    regrown = sm.SET(0.3).on_epoch_end(model, 1, 2)["set_regrown"]
    evolution_seconds = time.perf_counter() - t
    anon_peak = sampler.close()
    last = history[-1]
    return {
        "model": name, "sizes": sizes, "epsilon": epsilon, "neurons": sum(hidden),
        "connections": nnz, "batch": batch, "threads": sm.get_num_threads(),
        "precision": args.precision,
        "init_seconds": init_seconds,
        "epoch_seconds": last["seconds"] + evolution_seconds,
        "train_seconds": last["train_seconds"], "eval_seconds": last["eval_seconds"],
        "evolution_seconds": evolution_seconds, "set_regrown": regrown,
        "inference_seconds": inference_seconds, "inference_samples": TEST,
        "estimate": est, "peak_rss": peak_rss(), "peak_anonymous": anon_peak,
        "anonymous_before_model": anon0,
        "parameter_bytes_per_connection": est["parameters"] / nnz,
        "peak_bytes_per_connection": (anon_peak - anon0) / nnz,
        "test_accuracy": last["val_accuracy"], "loss": last["loss"],
        "epochs": args.epochs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=W4, choices=[*MODELS, "sweep"],
                   help="models to run; 'sweep' is w4a at epsilon 5, 10, 20 and 40")
    p.add_argument("--inference-only", action="store_true",
                   help="build each model and time predict_proba on the test samples, no training")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                   help="what activations and errors are stored as (bfloat16: half the buffers)")
    p.add_argument("--data", default=os.path.join(os.path.expanduser("~"), ".cache", "sparse_mlp_w4"))
    p.add_argument("--out", default="w4_results.jsonl")
    p.add_argument("--smoke", action="store_true", help="tiny models: check that the script runs")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one model here
    args = p.parse_args()
    if args.smoke:
        smoke()
        if args.data == p.get_default("data"):
            args.data = os.path.join(os.path.expanduser("~"), ".cache", "sparse_mlp_w4_smoke")
    if args.one:
        print("RESULT " + json.dumps(one(args.one, args)), flush=True)
        return
    data(args.data)
    rows = []
    names = [m for name in args.models for m in (SWEEP if name == "sweep" else [name])]
    for name in names:
        cmd = [sys.executable, __file__, "--one", name, "--epochs", str(args.epochs),
               "--batch", str(args.batch), "--data", args.data, "--precision", args.precision]
        if args.inference_only:
            cmd.append("--inference-only")
        if args.smoke:
            cmd.append("--smoke")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        result = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("RESULT "):
                result = json.loads(line[7:])
            else:
                print(line, end="", flush=True)
        if proc.wait() != 0 or result is None:
            result = {"model": name, "error": f"exit code {proc.returncode}"}
        rows.append(result)
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")
    if args.inference_only:
        print(f"\n{'model':<8} {'neurons':>11} {'connections':>12} {'chunk':>5} {'infer s':>8} "
              f"{'ms/sample':>9} {'peak GB':>8} {'save s':>7} {'+GB':>5} {'file GB':>8} "
              f"{'load s':>7} {'peak GB':>8} {'held GB':>8}")
        for r in rows:
            if "error" not in r:
                print(f"{r['model']:<8} {r['neurons']:>11,} {r['connections']:>12,} "
                      f"{r['inference_chunk']:>5} {r['inference_seconds']:>8.1f} "
                      f"{r['inference_seconds'] / r['inference_samples'] * 1e3:>9.2f} "
                      f"{r['peak_anonymous'] / 1e9:>8.2f} {r['save_seconds']:>7.1f} "
                      f"{r['save_extra_bytes'] / 1e9:>5.2f} {r['file_bytes'] / 1e9:>8.2f} "
                      f"{r['load_seconds']:>7.1f} {r['load_peak_bytes'] / 1e9:>8.2f} "
                      f"{r['loaded_bytes'] / 1e9:>8.2f}")
        return
    print(f"\n{'model':<6} {'neurons':>11} {'connections':>12} {'batch':>5} {'init s':>7} "
          f"{'epoch s':>8} {'train s':>8} {'SET s':>6} {'infer s':>8} {'peak GB':>8} "
          f"{'B/conn':>7} {'train s per 1M conn':>20}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<6} failed: {r['error']}")
            continue
        print(f"{r['model']:<6} {r['neurons']:>11,} {r['connections']:>12,} {r['batch']:>5} "
              f"{r['init_seconds']:>7.1f} {r['epoch_seconds']:>8.1f} {r['train_seconds']:>8.1f} "
              f"{r['evolution_seconds']:>6.1f} {r['inference_seconds']:>8.1f} "
              f"{r['peak_anonymous'] / 1e9:>8.2f} {r['peak_bytes_per_connection']:>7.1f} "
              f"{r['train_seconds'] / r['connections'] * 1e6:>20.3f}")


if __name__ == "__main__":
    main()
