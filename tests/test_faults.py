"""Faults: a training run SIGKILLed again and again, at random moments and
while it writes its checkpoint, always leaves a loadable checkpoint, and
resuming it reaches the weights of a run that was never interrupted."""

import os
import random
import subprocess
import sys
import time

import numpy as np

import sparse_mlp as sm
from conftest import assert_same_training_state, training_state

JOB = os.path.join(os.path.dirname(__file__), "kill_job.py")
EPOCHS = 150  # long enough that the kill loop never runs out of epochs


def _temporaries(folder):
    return [n for n in os.listdir(folder) if n.endswith(".tmp")]


def _run_until_killed(path, folder, mode, rng):
    """Starts the job and SIGKILLs it: after a random delay, or as soon as a
    checkpoint is being written. Returns (killed, during_a_write)."""
    proc = subprocess.Popen([sys.executable, JOB, path, str(EPOCHS)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + (rng.uniform(0.4, 1.2) if mode == "random" else 60)
        while time.monotonic() < deadline and proc.poll() is None:
            if mode == "write" and _temporaries(folder):
                break
            time.sleep(0.0005 if mode == "write" else 0.01)
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
            return False, False
        proc.kill()
        proc.wait()
        return True, bool(_temporaries(folder))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_twenty_kills_at_random_moments_and_during_writes_lose_nothing(tmp_path):
    reference = tmp_path / "reference"
    reference.mkdir()
    done = subprocess.run([sys.executable, JOB, str(reference / "run.npz"), str(EPOCHS)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = sm.SparseMLP.load(reference / "run.npz.final.npz")

    folder = tmp_path / "killed"
    folder.mkdir()
    path = str(folder / "run.npz")
    rng = random.Random(0)
    kills, during_writes, progress = 0, 0, []
    for attempt in range(200):
        mode = "write" if attempt % 2 else "random"
        killed, in_write = _run_until_killed(path, folder, mode, rng)
        if not killed:
            break
        kills += 1
        during_writes += in_write
        # after every kill: the checkpoint (once there is one) loads and is a
        # run in progress; a half-written file never replaced it
        if os.path.exists(path):
            saved = sm.SparseMLP.load(path)
            progress.append(saved._config["fit"]["done"])
            assert all(np.isfinite(st["values"]).all() for st in training_state(saved)[0])
        if kills >= 24:
            break
    else:
        raise AssertionError("the job never finished")
    print(f"{kills} kills, {during_writes} during a checkpoint write; epochs saved: {progress}")
    assert kills >= 20 and during_writes >= 3, (kills, during_writes)
    assert progress == sorted(progress)  # never back to an older checkpoint
    if os.path.exists(path + ".final.npz"):
        os.remove(path + ".final.npz")
    # the last start (after the kills) runs to the end
    finish = subprocess.run([sys.executable, JOB, path, str(EPOCHS)], capture_output=True,
                            text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr
    final = sm.SparseMLP.load(path + ".final.npz")
    assert final.epochs_trained == expected.epochs_trained == EPOCHS
    assert_same_training_state(final, expected)
    same = ("epoch", "loss", "accuracy", "n_connections", "recycled")
    assert [[r.get(k) for k in same] for r in final.history] == \
        [[r.get(k) for k in same] for r in expected.history]
    # killed writes leave no temporary files behind once the run has written again
    assert not _temporaries(folder)


def test_a_full_disk_during_a_checkpoint_write_loses_nothing(tmp_path):
    # a run stopped after epoch 2; resumed where no file may grow beyond half
    # the checkpoint's size (RLIMIT_FSIZE, as on a full disk), its first
    # write fails: fit raises OSError saying which checkpoint, the one on
    # disk is untouched and no temporary file is left; resumed with room
    # again, it reaches the weights of a run that was never interrupted
    epochs = 5
    reference = tmp_path / "reference.npz"
    subprocess.run([sys.executable, JOB, str(reference), str(epochs)], check=True, timeout=600)
    path = tmp_path / "run.npz"
    env = dict(os.environ, KILL_JOB_EXIT_AFTER="2")
    subprocess.run([sys.executable, JOB, str(path), str(epochs)], check=True, timeout=600, env=env)
    saved = path.read_bytes()
    env = dict(os.environ, KILL_JOB_FILE_LIMIT=str(len(saved) // 2))
    r = subprocess.run([sys.executable, JOB, str(path), str(epochs)], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode != 0
    assert "OSError" in r.stderr and "File too large" in r.stderr, r.stderr[-3000:]
    assert f"writing the checkpoint {path} failed" in r.stderr, r.stderr[-3000:]
    assert path.read_bytes() == saved and not _temporaries(tmp_path)
    subprocess.run([sys.executable, JOB, str(path), str(epochs)], check=True, timeout=600)
    assert_same_training_state(sm.SparseMLP.load(f"{reference}.final.npz"),
                               sm.SparseMLP.load(f"{path}.final.npz"))
