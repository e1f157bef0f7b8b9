"""A training run for the SIGKILL tests: ``python kill_job.py CHECKPOINT [EPOCHS]``.

Trains with SET, Importance Pruning and neuron recycling, checkpointing every
epoch, resuming from CHECKPOINT when it exists. The model is large next to
the data, so a good share of the run is spent writing checkpoints. Writes the
final model to CHECKPOINT + ".final.npz".
"""

import os
import resource
import signal
import sys

import numpy as np

import sparse_mlp as sm

path = sys.argv[1]
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 12
# KILL_JOB_FILE_LIMIT=BYTES: no file may grow beyond that, as on a full disk
# (writes fail with EFBIG instead of the default SIGXFSZ)
limit = int(os.environ.get("KILL_JOB_FILE_LIMIT", "0"))
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
# KILL_JOB_EXIT_AFTER=N: the process ends (as if killed) in epoch N + 1
exit_after = int(os.environ.get("KILL_JOB_EXIT_AFTER", "0"))


def exit_when_due(model, record):
    if exit_after and record["epoch"] == exit_after + 1:
        os._exit(0)


rng = np.random.default_rng(0)
y = rng.integers(0, 3, 600)
X = (rng.normal(size=(3, 40))[y] + rng.normal(size=(600, 40))).astype(np.float32)
model = sm.SparseMLP([40, 1500, 1500, 3], epsilon=60, seed=5)
model.fit(X, y, epochs=epochs, batch_size=16, learning_rate=0.02, verbose=0,
          topology=sm.SET(0.2), pruning=sm.ImportancePruning(3, 3, 10.0, shrink=False),
          recycling=sm.NeuronRecycling(fraction=0.05, every_steps=5, interpolate_steps=4),
          checkpoint=path, resume=True, callbacks=[exit_when_due])
model.save(path + ".final.npz")
