"""WASAP-SGD (1 server + K workers over MPI) against sequential training, side
by side on this machine: best test accuracy over seeds at the same number of
epochs, throughput, the workers' share of time spent communicating, and bytes
per update.

    python benches/wasap.py                                # Madelon and W1 shape, 3 seeds
    python benches/wasap.py --workloads w1 --seeds 1 --epochs 10 --sync
    python benches/wasap.py --hosts 3 --rates none,1gbit,100mbit --overlap on,off

The sequential run uses all cores (``--threads``, default 2) in this process;
the parallel one is started with ``mpiexec -n K+1`` and one thread per rank.

``--hosts N`` (root only) puts the ranks on N hosts made of network
namespaces (scripts/netns_hosts.py): the server on host 0, the workers spread
over the others, every message over a link limited to each of ``--rates``
(tc syntax; ``none``: unlimited). ``--one-host`` adds the same ranks all on
host 0 (no link crossed), which separates what the network costs from what
sharing the CPU costs. Each result is also appended to ``--results``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import sparse_mlp as sm
from sparse_mlp.datasets import Split, load_madelon, standardize

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
MADELON = os.path.join(HERE, "..", "..", "shared", "data", "madelon")

# SPEC §8 / BENCHMARKS W6 for Madelon; W1's network and batch on synthetic data of
# its shape, with η 0.05: at W1's 0.01 this deep, sparse He-initialized network
# barely leaves chance level in 30 epochs, sequential or parallel.
WORKLOADS = {
    "madelon": dict(sizes=[500, 400, 100, 400, 2], epsilon=10, alpha=0.5, init="normal",
                    batch_size=32, learning_rate=0.01, epochs=500),
    "w1": dict(sizes=[784, 1000, 1000, 1000, 10], epsilon=20, alpha=0.6, init="he_uniform",
               batch_size=128, learning_rate=0.05, epochs=30),
}


def load(workload: str, data_dir: str) -> Split:
    if workload == "madelon":
        return load_madelon(data_dir)
    # 10 Gaussian classes whose means differ by 0.12 standard deviations per
    # feature (about 4.8 between two classes over the 784 features).
    rng = np.random.default_rng(7)
    centers = rng.normal(scale=0.12, size=(10, 784))
    y = rng.integers(0, 10, 12_000)
    X = centers[y] + rng.standard_normal((12_000, 784))
    Xtr, Xte = standardize(X[:10_000], X[10_000:])
    return Split(Xtr, y[:10_000], Xte, y[10_000:])


def model_for(workload: str, seed: int) -> sm.SparseMLP:
    w = WORKLOADS[workload]
    return sm.SparseMLP(w["sizes"], activation=sm.AllReLU(w["alpha"]), epsilon=w["epsilon"],
                        init=w["init"], dropout=0.3, seed=seed)


def fit_options(workload: str, epochs: int) -> dict:
    w = WORKLOADS[workload]
    return dict(epochs=epochs, batch_size=w["batch_size"], learning_rate=w["learning_rate"],
                momentum=0.9, weight_decay=2e-4, topology=sm.SET(zeta=0.3), verbose=0)


def sequential(workload: str, data: Split, seed: int, epochs: int) -> dict:
    model = model_for(workload, seed)
    t0 = time.perf_counter()
    h = model.fit(data.X_train, data.y_train, validation_data=(data.X_test, data.y_test),
                  **fit_options(workload, epochs))
    seconds = time.perf_counter() - t0
    train = sum(r["train_seconds"] + r["topology_seconds"] for r in h)
    return {"best": max(r["val_accuracy"] for r in h), "last": h[-1]["val_accuracy"],
            "seconds": seconds, "samples_per_second": data.y_train.size * epochs / train}


def rank_job(args: argparse.Namespace) -> None:
    """Runs on every MPI rank; rank 0 writes the figures to ``args.out``."""
    data = load(args.workload, args.data_dir)
    model = model_for(args.workload, args.seed)
    t0 = time.perf_counter()
    h = sm.parallel.WASAP(phase2_fraction=args.phase2, sync=args.sync, threads=1,
                          overlap=args.overlap == "on", transport=args.transport).fit(
        model, data.X_train, data.y_train, validation_data=(data.X_test, data.y_test),
        **fit_options(args.workload, args.epochs))
    seconds = time.perf_counter() - t0
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() != 0:
        return
    p1 = [r for r in h if r["phase"] == 1]
    samples = sum(r["samples_per_second"] * r["seconds"] for r in p1)
    updates = sum(r["updates"] for r in p1)
    out = {
        "best": max(r["val_accuracy"] for r in h if "val_accuracy" in r),
        "last": h[-1]["val_accuracy"],
        "seconds": seconds,
        "samples_per_second": samples / sum(r["seconds"] for r in p1) if p1 else float("nan"),
        "bytes_per_update": sum(r["bytes_sent"] + r["bytes_received"] for r in p1) / max(updates, 1),
        "comm_share": h[-1]["worker_comm_share_phase1"],
        "mean_staleness": statistics.mean(r["mean_staleness"] for r in p1) if p1 else 0.0,
        "dropped_per_epoch": statistics.mean(r["dropped_gradient_entries"] for r in p1) if p1 else 0,
        "server_wait_share": sum(r["server_wait_seconds"] for r in p1) / sum(r["seconds"] for r in p1),
        "n_connections": model.n_connections,
    }
    with open(args.out, "w") as fh:
        json.dump(out, fh)


def parallel(args: argparse.Namespace, workload: str, seed: int, epochs: int, overlap: str,
             transport: str, rate: str | None = None, placement: str = "hosts") -> dict:
    """One WASAP run: on this machine's own MPI (``args.hosts`` 0), or on
    namespace hosts: a rank per host (``placement`` "hosts") or all on host 0."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        ranks = args.workers + 1
        argv = [sys.executable, __file__, "--rank-job", "--workload", workload, "--seed", str(seed),
                "--epochs", str(epochs), "--phase2", str(args.phase2), "--data-dir", args.data_dir,
                "--out", out, "--overlap", overlap, "--transport", transport]
        argv += ["--sync"] if args.sync else []
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        if not args.hosts:
            done = subprocess.run([mpiexec, "-n", str(ranks), *argv], capture_output=True, text=True)
            return finished(done, out)
        from netns_hosts import NamespaceHosts

        with NamespaceHosts(args.hosts, None if rate in (None, "none") else rate) as hosts:
            if placement == "hosts":  # the server alone on host 0, workers round-robin on the others
                per_host = [1] + [len(range(i, args.workers, args.hosts - 1)) for i in range(args.hosts - 1)]
            else:
                per_host = [ranks] + [0] * (args.hosts - 1)
            before = hosts.tx_bytes(0)
            done = subprocess.run(hosts.mpiexec(argv, per_host, mpiexec=mpiexec), capture_output=True,
                                  text=True, env=hosts.env(MPIEXEC_TIMEOUT="7200"))
            result = finished(done, out)
            result["host0_tx_bytes"] = hosts.tx_bytes(0) - before
        return result


def finished(done: subprocess.CompletedProcess, out: str) -> dict:
    """A run's figures, or why it failed (e.g. its training diverged)."""
    if done.returncode == 0:
        with open(out) as fh:
            return json.load(fh)
    errors = [line for line in done.stderr.splitlines() if "Error" in line]
    return {"failed": errors[-1] if errors else done.stderr[-500:]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default="madelon,w1")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, help="default: 500 for Madelon, 30 for W1")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads of the sequential run")
    p.add_argument("--phase2", type=float, default=0.3)
    p.add_argument("--sync", action="store_true", help="WASSP-SGD instead of WASAP-SGD")
    p.add_argument("--data-dir", default=MADELON)
    p.add_argument("--hosts", type=int, default=0, help="namespace hosts (root; 0: plain mpiexec)")
    p.add_argument("--rates", default="none", help="link rates with --hosts, e.g. none,1gbit,100mbit")
    p.add_argument("--overlap", default="on", help="on, off or on,off: workers overlap communication")
    p.add_argument("--transport", default="float32", help="float32, bfloat16 or both, comma-separated")
    p.add_argument("--one-host", action="store_true", help="with --hosts: also all ranks on host 0")
    p.add_argument("--results", default=os.path.join(HERE, "wasap_results.jsonl"))
    # internal: one MPI rank
    p.add_argument("--rank-job", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workload", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rank_job:
        rank_job(args)
        return
    if args.hosts and args.hosts < 2:
        p.error("--hosts needs at least 2 (the server's and a worker's)")
    if args.hosts:
        from netns_hosts import unavailable

        why = unavailable()
        if why:
            p.error(f"--hosts: {why}")
    name = "WASSP" if args.sync else "WASAP"
    setups = [(rate, "hosts") for rate in args.rates.split(",")] if args.hosts else [(None, "local")]
    if args.hosts and args.one_host:
        setups.append((None, "one host"))
    for workload in args.workloads.split(","):
        epochs = args.epochs or WORKLOADS[workload]["epochs"]
        data = load(workload, args.data_dir)
        print(f"{workload}: {WORKLOADS[workload]['sizes']}, {epochs} epochs, {args.seeds} seeds; "
              f"sequential on {args.threads} threads vs {name} 1 server + {args.workers} workers x 1 "
              f"thread, phase 2 = last {args.phase2:.0%}", flush=True)
        seq = []
        for seed in range(args.seeds):
            sm.set_num_threads(args.threads)
            seq.append(sequential(workload, data, seed, epochs))
            print(f"  seed {seed}: sequential best {100 * seq[-1]['best']:.2f} % in "
                  f"{seq[-1]['seconds']:.1f} s", flush=True)
        variants = [(s, o, t) for s in setups for o in args.overlap.split(",")
                    for t in args.transport.split(",")]
        for (rate, placement), overlap, transport in variants:
            where = {"local": "this machine's MPI", "one host": f"all ranks on host 0 of {args.hosts}",
                     "hosts": f"{args.hosts} hosts, links {rate}"}[placement]
            par = []
            for seed in range(args.seeds):
                par.append(parallel(args, workload, seed, epochs, overlap, transport, rate, placement))
                if "failed" in par[-1]:
                    print(f"  seed {seed}: {name} ({where}, overlap {overlap}, {transport}) failed: "
                          f"{par[-1]['failed']}", flush=True)
                    continue
                print(f"  seed {seed}: {name} ({where}, overlap {overlap}, {transport}) best "
                      f"{100 * par[-1]['best']:.2f} % (averaged model {100 * par[-1]['last']:.2f} %) in "
                      f"{par[-1]['seconds']:.1f} s", flush=True)
            report(name, seq, par)
            row = {"workload": workload, "epochs": epochs, "seeds": args.seeds, "sync": args.sync,
                   "workers": args.workers, "hosts": args.hosts, "placement": placement, "rate": rate,
                   "overlap": overlap, "transport": transport, "sequential": seq, "parallel": par,
                   "date": time.strftime("%Y-%m-%d")}
            with open(args.results, "a") as fh:
                fh.write(json.dumps(row) + "\n")


def report(name: str, seq: list[dict], par: list[dict]) -> None:
    par = [r for r in par if "failed" not in r]
    if not par:
        return
    def mean(rs, key):
        return statistics.mean(r[key] for r in rs)

    def spread(rs, key):
        return statistics.stdev(r[key] for r in rs) if len(rs) > 1 else 0.0

    print(f"  best test accuracy: sequential {100 * mean(seq, 'best'):.2f} ± "
          f"{100 * spread(seq, 'best'):.2f} %, {name} {100 * mean(par, 'best'):.2f} ± "
          f"{100 * spread(par, 'best'):.2f} % (difference "
          f"{100 * (mean(par, 'best') - mean(seq, 'best')):+.2f} points)")
    print(f"  whole run: sequential {mean(seq, 'seconds'):.1f} s, {name} {mean(par, 'seconds'):.1f} s "
          f"({mean(seq, 'seconds') / mean(par, 'seconds'):.2f}x)")
    print(f"  training throughput: sequential {mean(seq, 'samples_per_second'):,.0f} samples/s, "
          f"{name} phase 1 {mean(par, 'samples_per_second'):,.0f} samples/s "
          f"({mean(par, 'samples_per_second') / mean(seq, 'samples_per_second'):.2f}x)")
    print(f"  {name}: {mean(par, 'bytes_per_update') / 1e6:.3f} MB per update (both ways), workers "
          f"wait on communication {100 * mean(par, 'comm_share'):.1f} % of phase 1, server idle "
          f"{100 * mean(par, 'server_wait_share'):.1f} %, mean staleness "
          f"{mean(par, 'mean_staleness'):.2f}, {mean(par, 'dropped_per_epoch'):.0f} stale gradient "
          f"entries dropped per server epoch", flush=True)


if __name__ == "__main__":
    main()
