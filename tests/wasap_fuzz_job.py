"""Random WASAP.fit calls under MPI: ``mpiexec -n 3 python wasap_fuzz_job.py CASES SEED OUT``.

Each case draws arguments that are mostly valid from a generator every rank
seeds alike, corrupts up to two of them on every rank, and sometimes one
more on one rank only (other data, NaN, another learning rate...). Every
rank then calls ``WASAP.fit``. The ranks must agree: all finish with the same
history and model, or all raise a documented exception (``SparseMLPError``,
or ``TypeError`` for an argument of the wrong kind). No rank may hang:
WASAP's timeout is short, and a hang aborts the job (the test then fails on
its exit status). Rank 0 writes a JSON summary to OUT.
"""

import hashlib
import json
import math
import os
import random
import sys

import numpy as np

import sparse_mlp as sm

n_cases, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

from mpi4py import MPI  # noqa: E402

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
rng = np.random.default_rng(0)
n, f, c = 160, 8, 3
centers = rng.normal(scale=2.0, size=(c, f))
Y = rng.integers(0, c, n)
X = (centers[Y] + rng.normal(size=(n, f))).astype(np.float32)

WEIRD = [0, -1, 2**64, -(2**70), math.nan, math.inf, -math.inf, 1e30, "x", None, [1, 2], True, 1.5]
GOOD = {
    "epochs": lambda r: r.randint(1, 3),
    "batch_size": lambda r: r.choice([1, 8, 16, 40, 500]),
    "learning_rate": lambda r: r.uniform(1e-3, 0.1),
    "momentum": lambda r: r.uniform(0, 0.95),
    "weight_decay": lambda r: r.uniform(0, 1e-3),
    "nesterov": lambda r: r.random() < 0.5,
    "topology": lambda r: r.choice([None, sm.SET(0.3), sm.SET(0.1, every=2)]),
    "pruning": lambda r: r.choice([None, sm.ImportancePruning(1, 1, 10.0, shrink=True)]),
    "validation_data": lambda r: r.choice([None, (X[:30], Y[:30])]),
    "verbose": lambda r: 0,
}
BAD = {
    "epochs": [0, -1, 1.5, "2", None, -(2**64), math.nan],  # (a huge count is valid: it runs)
    "batch_size": [0, -1, 1.5, None, -(2**64), "x"],
    "learning_rate": [-1.0, math.nan, math.inf, "x", None, 1e300],
    "momentum": [-0.1, 1.0, 2.0, math.nan, "x"],
    "weight_decay": [-1.0, math.nan, math.inf, "x"],
    "nesterov": ["yes", None, 2, 1.5],
    "topology": ["SET", 3, sm.ImportancePruning(1, 1, 10.0)],
    "pruning": ["prune", 1, sm.SET(0.3)],
    "validation_data": [(X[:5], Y[:4]), (X[:5, :3], Y[:5]), "x", (X[:5],),
                        (np.full((5, f), np.nan, np.float32), Y[:5]), (X[:5], Y[:5] + 10)],
    "verbose": ["loud", None, 1.5],
}
TRAINER_BAD = {  # settings of WASAP itself, bad on every rank alike
    "phase2_fraction": [-0.1, 1.5, math.nan, "x"],
    "sync": ["yes", 2, None],
    "warmup_epochs": [-1, math.nan, "x"],
    "threads": [0, -1, 5000, "x", 1.5],
    "chunk_mb": [0, -1, math.nan, math.inf, "x"],
    "timeout": [0, -1, math.nan, "x"],
}


def data_variant(r, kind):
    """Training data: as given, or spoiled on this rank."""
    if kind == "nan":
        Xb = X.copy()
        Xb[r.randrange(n), r.randrange(f)] = math.nan
        return Xb, Y
    if kind == "shifted":
        return X + 1.0, Y
    if kind == "labels":
        return X, (Y + 1) % c
    if kind == "narrow":
        return X[:, :-1], Y
    if kind == "fewer":
        return X[:-7], Y[:-7]
    if kind == "labels out of range":
        return X, Y + c
    if kind == "list":
        return X.tolist(), Y.tolist()
    return X, Y


summary = {"cases": 0, "ok": 0, "refused": 0, "errors": {}, "one_rank_only": 0}
for case in range(int(os.environ.get("WASAP_FUZZ_FIRST", "0")), n_cases):
    common = random.Random(seed * 100_003 + case)
    mine = random.Random((seed * 100_003 + case) * 7919 + rank)
    kw = {k: g(common) for k, g in GOOD.items()}
    trainer = {"timeout": 10.0}
    for k in common.sample(sorted(BAD) + sorted(TRAINER_BAD), common.choice([0, 0, 1, 2])):
        if k in BAD:
            kw[k] = common.choice(BAD[k])
        else:
            trainer[k] = common.choice(TRAINER_BAD[k])
    data = common.choice(["as given"] * 4 + ["nan", "narrow", "labels out of range", "list"])
    # sometimes one rank alone differs: spoiled data, or another option
    odd_rank = common.randrange(3) if common.random() < 0.3 else None
    if odd_rank == rank:
        what = mine.choice(["nan", "shifted", "labels", "fewer", "epochs", "learning_rate",
                            "batch_size", "topology", "bad value"])
        if what in ("epochs", "learning_rate", "batch_size", "topology"):
            # (values GOOD never draws, so that this rank surely differs)
            kw[what] = {"epochs": 4, "learning_rate": 0.5, "batch_size": 7,
                        "topology": sm.SET(0.25)}[what]
        elif what == "bad value":
            k = mine.choice(sorted(BAD))
            kw[k] = mine.choice(BAD[k])
        else:
            data = what
    Xc, Yc = data_variant(mine if odd_rank == rank else common, data)
    model = sm.SparseMLP([f, 24, c], epsilon=3, seed=case)
    if os.environ.get("WASAP_FUZZ_TRACE"):
        print(f"rank {rank} case {case}: {kw} {trainer} data {data} odd rank {odd_rank}",
              file=sys.stderr, flush=True)
    outcome = None
    try:
        # a bad WASAP setting is refused by the constructor on every rank alike
        wasap = sm.parallel.WASAP(**trainer)
        history = wasap.fit(model, Xc, Yc, **kw)
        params = np.empty(model._net.packed_len, np.float32)
        model._net.pack_params(params)
        finite = bool(np.isfinite(params).all())
        outcome = ["ok", hashlib.sha256(params.tobytes()).hexdigest(),
                   json.dumps(history, default=float), finite]
    except (sm.SparseMLPError, TypeError) as e:
        outcome = ["refused", f"{type(e).__name__}: {e}"[:300]]
    outcomes = comm.allgather(outcome)
    kinds = {o[0] for o in outcomes}
    if rank == 0:
        summary["cases"] += 1
        summary["one_rank_only"] += odd_rank is not None
        agreed = kinds == {"refused"} or (kinds == {"ok"} and len({tuple(o[1:]) for o in outcomes}) == 1
                                          and outcomes[0][3])
        if not agreed:
            print(f"case {case}: the ranks disagree: {outcomes} (arguments {kw}, {trainer}, data "
                  f"{data}, odd rank {odd_rank})", file=sys.stderr, flush=True)
            comm.Abort(3)
        if kinds == {"ok"}:
            summary["ok"] += 1
        else:
            summary["refused"] += 1
            reason = outcomes[0][1].split(":")[0]
            summary["errors"][reason] = summary["errors"].get(reason, 0) + 1
    comm.Barrier()

if rank == 0:
    # communicators kept because a run failed with messages possibly in flight
    summary["retired"] = len(sm.parallel._RETIRED)
    with open(out, "w") as fh:
        json.dump(summary, fh)
