"""A WASAP run for the MPI tests: ``mpiexec -n 3 python wasap_job.py OUT [options]``.

Every rank writes ``OUT.<rank>.json``: its final packed parameters' checksum
and bytes, nnz per layer, the history, or the error it stopped with.
"""

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time

import numpy as np

import sparse_mlp as sm

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--sync", action="store_true")
p.add_argument("--epochs", type=int, default=6)
p.add_argument("--phase2", type=float, default=0.3)
p.add_argument("--chunk-mb", type=float, default=64.0)
p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--samples", type=int, default=1200)
p.add_argument("--checkpoint")
p.add_argument("--resume", action="store_true")
p.add_argument("--kill-rank", type=int, help="this rank kills itself (SIGKILL) after --kill-after s")
p.add_argument("--kill-after", type=float, default=1.0)
p.add_argument("--timeout", type=float, default=60.0, help="WASAP's silence timeout")
p.add_argument("--hang", action="store_true", help="--kill-on stops the rank (SIGSTOP) instead")
p.add_argument("--pause", type=float, help="--kill-on makes the rank sleep this long instead")
p.add_argument("--kill-on", help="KIND:N: --kill-rank kills itself (SIGKILL) as it is about to "
               "send its Nth message of KIND (GRAD: phase 1, PROGRESS: phase 2, PARAMS: server)")
p.add_argument("--other-data-rank", type=int, help="this rank gets different training data")
p.add_argument("--other-row-rank", type=int, help="this rank's X differs in one value of row 1")
p.add_argument("--batch", type=int, default=16)
p.add_argument("--overlap", choices=["on", "off"], default="off")
p.add_argument("--transport", default="float32", help="how gradients and values travel")
p.add_argument("--custom-topology", action="store_true",
               help="a registered strategy of the job's own, whose repr differs on every rank")
p.add_argument("--other-lr-rank", type=int, help="this rank passes another learning rate")
p.add_argument("--bad-trainer-rank", type=int,
               help="this rank's WASAP(...) is invalid, so it never calls fit")
p.add_argument("--full-disk-at", type=int,
               help="the server's Nth checkpoint write fails as on a full disk")
p.add_argument("--pruning", action="store_true")
p.add_argument("--rigl", type=int, metavar="EVERY", help="RigL every EVERY steps instead of SET")
p.add_argument("--rigl-mode", default="candidates")
p.add_argument("--metrics", help="a folder for a MetricsLogger callback")
p.add_argument("--callback-fails", type=int, help="a callback raises at this epoch's record")
p.add_argument("--word-labels", action="store_true", help="the labels are words, not 0..3")
p.add_argument("--optimizer", default="sgd")
p.add_argument("--cosine", action="store_true", help="a cosine learning-rate schedule")
p.add_argument("--balanced", action="store_true", help="class_weight='balanced'")
p.add_argument("--early-stopping", type=int, help="an EarlyStopping callback with this patience")
args = p.parse_args()

from mpi4py import MPI  # noqa: E402  (after argument errors, which need no MPI)

rank = MPI.COMM_WORLD.Get_rank()
# a rank on a host cut off from mpiexec cannot show its output: it goes to a file as well
logging.basicConfig(filename=f"{args.out}.{rank}.log", level=logging.WARNING)
rng = np.random.default_rng(0)
n, f, c = args.samples + 300, 30, 4
centers = rng.normal(scale=2.0, size=(c, f))
y = rng.integers(0, c, n)
X = (centers[y] + rng.normal(size=(n, f))).astype(np.float32)
Xt, yt, Xv, yv = X[:args.samples], y[:args.samples], X[args.samples:], y[args.samples:]
if rank == args.other_data_rank:
    Xt = Xt + 1.0
if rank == args.other_row_rank:
    Xt = Xt.copy()
    Xt[1, 3] += 0.5


@sm.strategies.register
@dataclasses.dataclass(frozen=True, repr=False)
class EveryOtherSET:
    """SET on even epochs; its repr (the default object repr) names its address."""

    zeta: float = 0.3

    def on_epoch_end(self, model, epoch, epochs):
        return sm.SET(self.zeta).on_epoch_end(model, epoch, epochs) if epoch % 2 == 0 else {}
if args.word_labels:  # sorted as 0..3 are, so the outputs mean the same
    yt, yv = (np.array(["ant", "bee", "cat", "dog"])[a] for a in (yt, yv))
model = sm.SparseMLP([f, 48, 48, c], epsilon=4, seed=3 + rank)  # the server's model is the one used
if rank == args.kill_rank and args.kill_on:
    kind, count = args.kill_on.split(":")
    code, sent, send_header = getattr(sm.parallel, kind), [0], sm.parallel.transport._Link.send_header

    def counting_send_header(link, dest, tag, k, *fields):
        """Dies at a known point of the protocol, as a crash would."""
        if int(k) == code and tag in (sm.parallel.TAG_HEADER, sm.parallel.TAG_REPLY):
            sent[0] += 1
            if sent[0] == int(count) and args.pause:
                time.sleep(args.pause)
            elif sent[0] == int(count):
                os.kill(os.getpid(), signal.SIGSTOP if args.hang else signal.SIGKILL)
        send_header(link, dest, tag, k, *fields)

    sm.parallel.transport._Link.send_header = counting_send_header
elif rank == args.kill_rank:
    threading.Timer(args.kill_after, os.kill, (os.getpid(), signal.SIGKILL)).start()
if rank == 0 and args.full_disk_at:
    from sparse_mlp.training.checkpoint import RunCheckpoint

    saves, save = [0], RunCheckpoint.write

    def failing_save(checkpoint, *args, **kwargs):
        saves[0] += 1
        if saves[0] == args_full_disk_at:
            raise OSError(28, "No space left on device", checkpoint.path)
        save(checkpoint, *args, **kwargs)

    args_full_disk_at = args.full_disk_at
    RunCheckpoint.write = failing_save
result = {"rank": rank, "seen": []}


def watch(model, record):
    """Notes how long the history was when each record arrived."""
    result["seen"].append(len(model.history))
    if record["epoch"] == args.callback_fails:
        raise RuntimeError("the callback broke")


callbacks = [watch] + ([sm.MetricsLogger(args.metrics)] if args.metrics else [])
if args.early_stopping is not None:
    callbacks.append(sm.callbacks.EarlyStopping(patience=args.early_stopping))
try:
    phase2 = 2.0 if rank == args.bad_trainer_rank else args.phase2
    lr = 2 * args.lr if rank == args.other_lr_rank else args.lr
    if args.cosine:
        lr = sm.schedules.Cosine(lr, final=lr / 100)
    history = sm.parallel.WASAP(phase2_fraction=phase2, sync=args.sync, chunk_mb=args.chunk_mb,
                                timeout=args.timeout,
                                overlap=args.overlap == "on",
                                transport=args.transport).fit(
        model, Xt, yt, epochs=args.epochs, batch_size=args.batch, learning_rate=lr,
        topology=(EveryOtherSET() if args.custom_topology else
                  sm.RigL(0.3, every_steps=args.rigl, accumulate=3, mode=args.rigl_mode) if args.rigl
                  else sm.SET()),
        validation_data=(Xv, yv),
        pruning=(sm.ImportancePruning(start_epoch=2, every=2, percentile=10, shrink=True)
                 if args.pruning else None),
        checkpoint=args.checkpoint, resume=args.resume, verbose=0, callbacks=callbacks,
        optimizer=args.optimizer, class_weight="balanced" if args.balanced else None)
except sm.SparseMLPError as e:
    result["error"] = f"{type(e).__name__}: {e}"
    print(f"rank {rank}: {result['error']}", file=sys.stderr, flush=True)
    with open(f"{args.out}.{rank}.json", "w") as fh:
        json.dump(result, fh)
    sys.exit(3)
params = np.empty(model._net.packed_len, np.float32)
model._net.pack_params(params)
result.update(
    sha=hashlib.sha256(params.tobytes()).hexdigest(),
    nnz=[layer.nnz for layer in model.layers],
    sizes=model.sizes,
    accuracy=model.score(Xv, yv),
    history=history,
    classes=model.classes_.tolist(),
    predicted=model.predict(Xv[:5]).tolist(),
)
with open(f"{args.out}.{rank}.json", "w") as fh:
    json.dump(result, fh, default=float)
