"""WASAP-SGD and WASSP-SGD under real MPI processes (``mpiexec -n 3``:
one parameter server and two workers), and the pieces they rest on."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import blobs
from sparse_mlp.parallel.server import Packing

JOB = os.path.join(os.path.dirname(__file__), "wasap_job.py")


def mpiexec():
    exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = exe if os.path.exists(exe) else shutil.which("mpiexec")
    assert found, "mpiexec not found: pip install mpi4py mpich (the test extras)"
    return found


def run_job(tmp_path, *options, n=3, timeout=180, name="run", env=None):
    """Runs the job on ``n`` ranks; returns (exit code, per-rank results, output, seconds)."""
    out = str(tmp_path / name)
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    t0 = time.monotonic()
    proc = subprocess.run([mpiexec(), "-n", str(n), sys.executable, JOB, out, *options],
                          capture_output=True, text=True, timeout=timeout, env=env)
    seconds = time.monotonic() - t0
    results = {}
    for r in range(n):
        path = f"{out}.{r}.json"
        if os.path.exists(path):
            with open(path) as fh:
                results[r] = json.load(fh)
    return proc.returncode, results, proc.stdout + proc.stderr, seconds


def target_nnz():
    return sm.connection_counts([30, 48, 48, 4], epsilon=4)


def test_async_run_trains_and_every_rank_ends_with_the_averaged_model(tmp_path):
    rc, res, output, _ = run_job(tmp_path, "--epochs", "6", "--metrics", tmp_path / "metrics")
    assert rc == 0, output
    assert sorted(res) == [0, 1, 2]
    assert len({r["sha"] for r in res.values()}) == 1, "all ranks hold the same final model"
    r0 = res[0]
    assert r0["nnz"] == target_nnz(), "averaging prunes back to exactly the target nnz"
    assert r0["accuracy"] > 0.9
    h = r0["history"]
    phase1 = [rec for rec in h if rec["phase"] == 1]
    phase2 = [rec for rec in h if rec["phase"] == 2]
    assert len(phase1) == 4 and len(phase2) == 2 and h[-1]["phase"] == "average"
    assert all(rec["updates"] == -(-1200 // 16) for rec in phase1)
    assert all(rec["bytes_sent"] > 0 and rec["bytes_received"] > 0 for rec in phase1)
    assert all(rec["mean_staleness"] >= 0 for rec in phase1)
    assert [rec["topology_version"] for rec in phase1] == [1, 2, 3, 4]
    assert all(rec["n_connections"] == sum(target_nnz()) for rec in phase1)
    assert any(rec["dropped_gradient_entries"] > 0 for rec in phase1[1:]), \
        "gradients computed before a SET step reach the server after it"
    assert all(u >= t for u, t in zip(h[-1]["union_connections"], target_nnz()))
    assert h[-1]["val_accuracy"] == pytest.approx(r0["accuracy"])
    # The server's callbacks saw each record as it was made, not at the end.
    assert r0["seen"] == list(range(1, len(h) + 1))
    assert res[1]["seen"] == [] == res[2]["seen"]
    logged = sm.read_metrics(tmp_path / "metrics")
    assert [(r["epoch"], r["phase"]) for r in logged] == [(r["epoch"], r["phase"]) for r in h]


def test_sync_run_is_deterministic_and_chunking_changes_nothing(tmp_path):
    rc, big, output, _ = run_job(tmp_path, "--sync", "--epochs", "4", name="big")
    assert rc == 0, output
    rc, small, output, _ = run_job(tmp_path, "--sync", "--epochs", "4", "--chunk-mb", "0.001",
                                   name="small")
    assert rc == 0, output
    # 0.001 MiB chunks split every value array into many messages
    assert big[0]["sha"] == small[0]["sha"] == small[2]["sha"]
    h = big[0]["history"]
    assert big[0]["nnz"] == target_nnz()
    assert all(rec["mean_staleness"] == 0 for rec in h if rec["phase"] == 1)
    # learning rate x K (= 2) after a linear warm-up over 5 epochs, step by step
    # (the records hold each epoch's first step: 38 updates of 2 x 16 samples)
    lrs = [rec["learning_rate"] for rec in h if rec["phase"] == 1]
    assert lrs == pytest.approx([0.01 * (1 + (e + 1 / 38) / 5) for e in range(3)], rel=1e-6)
    assert big[0]["accuracy"] > 0.9


def test_overlap_adds_one_step_of_staleness_and_a_synchronous_run_stays_deterministic(tmp_path):
    """With overlap each worker sends a gradient computed on the values it
    had before the previous answer: in WASSP every gradient but the first is
    exactly one update stale, and the run is still the same every time."""
    runs = []
    for name in ("a", "b"):
        rc, res, output, _ = run_job(tmp_path, "--sync", "--overlap", "on", "--epochs", "4", name=name)
        assert rc == 0, output
        runs.append(res)
    assert len({r["sha"] for res in runs for r in res.values()}) == 1
    phase1 = [rec for rec in runs[0][0]["history"] if rec["phase"] == 1]
    assert all(rec["max_staleness"] == 1 for rec in phase1)
    assert all(rec["mean_staleness"] == 1 for rec in phase1[1:])
    assert 0.9 < phase1[0]["mean_staleness"] < 1
    # without overlap (the default) nothing is stale
    rc, res, output, _ = run_job(tmp_path, "--sync", "--epochs", "4", name="c")
    assert rc == 0, output
    assert all(rec["max_staleness"] == 0 for rec in res[0]["history"] if rec["phase"] == 1)
    assert res[0]["sha"] != runs[0][0]["sha"]


@pytest.mark.parametrize("overlap", ["on", "off"])
def test_asynchronous_runs_train_with_and_without_overlap(tmp_path, overlap):
    rc, res, output, _ = run_job(tmp_path, "--overlap", overlap, "--epochs", "6")
    assert rc == 0, output
    assert len({r["sha"] for r in res.values()}) == 1 and res[0]["accuracy"] > 0.9
    h = res[0]["history"]
    assert 0 <= h[-1]["worker_comm_share_phase1"] < 1
    assert all(rec["n_connections"] == sum(target_nnz()) for rec in h if rec["phase"] == 1)


def test_bfloat16_transport_halves_the_values_bytes_and_trains(tmp_path):
    runs = {}
    for transport in ("float32", "bfloat16"):
        rc, res, output, _ = run_job(tmp_path, "--sync", "--epochs", "4", "--transport", transport,
                                     name=transport)
        assert rc == 0, output
        assert len({r["sha"] for r in res.values()}) == 1 and res[0]["accuracy"] > 0.9
        runs[transport] = [rec for rec in res[0]["history"] if rec["phase"] == 1]
    # after the first epoch only values travel (models when SET changed the topology)
    full, half = (sum(rec["bytes_received"] for rec in runs[t]) for t in ("float32", "bfloat16"))
    assert 0.45 < half / full < 0.55, (half, full)
    assert runs["float32"][-1]["loss"] != runs["bfloat16"][-1]["loss"], "rounding changes the run"


def test_bfloat16_transport_rounds_as_the_cores_activations():
    from sparse_mlp.parallel.transport import from_bfloat16, to_bfloat16

    rng = np.random.default_rng(5)
    scale = 10.0 ** rng.integers(-30, 30, 20000)
    x = np.concatenate([(rng.standard_normal(20000) * scale).astype(np.float32),
                        np.float32([0.0, -0.0, np.inf, -np.inf, 3.3895314e38, 1e-45, 1.0000001]),
                        rng.integers(0, 2**32, 5000, dtype=np.uint32).view(np.float32)])
    x = x[np.isfinite(x) | np.isinf(x)].astype(np.float32)
    got = from_bfloat16(to_bfloat16(x), np.empty_like(x))
    # the two bfloat16 neighbours of each value, and the nearer one (ties: even last bit)
    low = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    high = ((x.view(np.uint32) >> 16) + np.uint32(1)).astype(np.uint32) << 16
    high = high.view(np.float32)
    # (above the largest bfloat16, the next one up is infinity: 2**128 as a distance)
    with np.errstate(invalid="ignore"):  # infinities: their own low neighbour, at distance 0
        up = np.where(np.isinf(high) & np.isfinite(x), np.sign(x).astype(np.float64) * 2.0**128,
                      high.astype(np.float64))
        d_low, d_high = np.abs(x.astype(np.float64) - low), np.abs(up - x)
    d_low[np.isinf(x)], d_high[np.isinf(x)] = 0, np.inf
    low_even = ((low.view(np.uint32) >> 16) & 1) == 0
    want = np.where((d_low < d_high) | ((d_low == d_high) & low_even), low, high)
    # as the core's bfloat16 activations (and vcvtneps2bf16): subnormals become signed zeros
    subnormal = (x.view(np.uint32) & np.uint32(0x7F800000)) == 0
    want[subnormal] = np.copysign(np.float32(0), x[subnormal])
    assert subnormal.sum() > 10
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    with pytest.raises(sm.InvalidInputError):
        from_bfloat16(to_bfloat16(x[:3]), np.empty(2, np.float32))
    nan = from_bfloat16(to_bfloat16(np.float32([np.nan, -np.nan])), np.empty(2, np.float32))
    assert np.isnan(nan).all()


def test_adam_a_cosine_schedule_class_weights_and_early_stopping_under_mpi(tmp_path):
    rc, res, output, _ = run_job(tmp_path, "--epochs", "6", "--optimizer", "adam", "--lr", "0.003",
                                 "--cosine", "--balanced", "--early-stopping", "1")
    assert rc == 0, output
    assert len({r["sha"] for r in res.values()}) == 1 and res[0]["accuracy"] > 0.9
    h = res[0]["history"]
    lrs = [rec["learning_rate"] for rec in h if rec["phase"] in (1,)]
    cosine = sm.schedules.Cosine(0.003, final=0.00003)
    # the server's epochs follow the schedule over the run's 6 epochs
    assert lrs == pytest.approx([float(cosine.rates(e, 75, 6, 1200, {})[0]) for e in (1, 2, 3, 4)],
                                rel=1e-6)
    assert len([rec for rec in h if rec["phase"] == 2]) == 2  # a WASAP run does not stop early


def test_the_datas_own_labels_train_the_same_model(tmp_path):
    rc, numbers, output, _ = run_job(tmp_path, "--sync", "--epochs", "3", name="numbers")
    assert rc == 0, output
    rc, words, output, _ = run_job(tmp_path, "--sync", "--epochs", "3", "--word-labels", name="words")
    assert rc == 0, output
    assert words[0]["sha"] == words[1]["sha"] == numbers[0]["sha"]
    assert [r["classes"] for r in words.values()] == [["ant", "bee", "cat", "dog"]] * 3
    assert words[2]["predicted"] == [["ant", "bee", "cat", "dog"][k] for k in numbers[2]["predicted"]]


def test_the_ranks_compare_the_same_things_as_checkpoints(tmp_path):
    # (each of these was a drift between WASAP and fit, fixed by the redesign)
    # the data: one value of one row differs on one rank (the old sampled
    # fingerprint did not look at that row)
    rc, res, output, _ = run_job(tmp_path, "--epochs", "2", "--other-row-rank", "2", name="row")
    assert rc != 0 and all("different training data" in r["error"] for r in res.values()), output
    # strategies by their registered names and fields, not by repr (a
    # dataclass without a repr has a different one on every rank)
    rc, res, output, _ = run_job(tmp_path, "--epochs", "3", "--custom-topology", name="custom")
    assert rc == 0, output
    assert res[0]["history"][1]["set_regrown"] > 0 and "set_regrown" not in res[0]["history"][0]
    # the batch size is capped at 2**32 - 1 as in fit, not refused
    rc, res, output, _ = run_job(tmp_path, "--epochs", "2", "--batch", str(2**40), name="batch")
    assert rc == 0, output
    # a resumed run must match every option of the saved one, not only epochs and sync
    path = tmp_path / "ck.npz"
    rc, res, output, _ = run_job(tmp_path, "--epochs", "3", "--checkpoint", path, name="first")
    assert rc == 0, output
    rc, res, output, _ = run_job(tmp_path, "--epochs", "3", "--checkpoint", path, "--resume",
                                 "--lr", "0.02", name="other")
    assert rc != 0 and all("learning_rate: saved 0.01, given 0.02" in r["error"] for r in res.values())
    rc, res, output, _ = run_job(tmp_path, "--epochs", "3", "--checkpoint", path, "--resume", name="same")
    assert rc == 0, output  # finished: nothing to train, the saved run's history on every rank
    assert [r["epoch"] for r in res[2]["history"]] == [r["epoch"] for r in res[0]["history"]]


def test_importance_pruning_on_the_server_reaches_the_workers(tmp_path):
    rc, res, output, _ = run_job(tmp_path, "--epochs", "6", "--pruning")
    assert rc == 0, output
    r0 = res[0]
    pruned = [rec["pruned_neurons"] for rec in r0["history"] if "pruned_neurons" in rec]
    assert pruned, "pruning ran on the server"
    assert r0["sizes"][1] < 48 and len({r["sha"] for r in res.values()}) == 1
    assert r0["accuracy"] > 0.85


@pytest.mark.parametrize("rank, when", [
    (2, "GRAD:30"),       # a worker, in phase 1 (its 30th gradient)
    (2, "PROGRESS:3"),    # a worker, in phase 2 (after its 2nd local epoch)
    (0, "PARAMS:40"),     # the server, in phase 1
    (0, None),            # the server, at a random moment
])
def test_a_killed_rank_ends_the_job_with_an_error_in_bounded_time(tmp_path, rank, when):
    how = ["--kill-on", when] if when else ["--kill-after", "1.5"]
    epochs = "30" if when else "400"  # long enough to be running after 1.5 s
    rc, res, output, seconds = run_job(tmp_path, "--epochs", epochs, "--phase2", "0.5",
                                       "--kill-rank", str(rank), *how, timeout=120)
    assert rc != 0
    assert seconds < 60
    assert not any("sha" in r for r in res.values()), "no rank may finish a run with a dead rank"
    # the launcher names the rank that died and how
    assert "KILLED BY SIGNAL: 9" in output or "signal 9" in output.lower(), output[-3000:]


def test_a_slow_worker_does_not_confuse_the_local_phase(tmp_path):
    """Worker 2 sleeps before its last phase-1 gradient (the one the server
    answers with the local phase), so worker 1 reports its local epochs and
    sends its replica first: the server takes the messages as they come."""
    rc, res, output, _ = run_job(tmp_path, "--epochs", "6", "--phase2", "0.5", "--samples", "600",
                                 "--kill-rank", "2", "--kill-on", "GRAD:37", "--pause", "4")
    assert rc == 0, output
    assert len({r["sha"] for r in res.values()}) == 1
    phases = [r["phase"] for r in res[0]["history"]]
    assert phases == [1, 1, 1, 2, 2, 2, "average"]


@pytest.mark.parametrize("rank, when", [(2, "GRAD:30"), (2, "PROGRESS:3"), (0, "PARAMS:40")])
def test_a_hung_rank_ends_the_job_after_the_timeout(tmp_path, rank, when):
    """A rank that stops answering without dying (SIGSTOP: a hung node, a
    deadlock) is not noticed by the launcher; the ranks waiting on it give up
    after WASAP's timeout, say why and abort the job."""
    rc, res, output, seconds = run_job(tmp_path, "--epochs", "30", "--phase2", "0.5",
                                       "--kill-rank", str(rank), "--kill-on", when, "--hang",
                                       "--timeout", "3", timeout=120)
    assert rc != 0 and seconds < 60
    assert not any("sha" in r for r in res.values())
    assert "heard nothing for 3 s while waiting for" in output, (rc, seconds, output[-3000:])
    assert "Aborting the MPI job" in output


def test_a_failing_worker_stops_every_rank_with_the_reason(tmp_path):
    rc, res, output, seconds = run_job(tmp_path, "--epochs", "20", "--lr", "1e9", timeout=120)
    assert rc != 0 and seconds < 60
    assert sorted(res) == [0, 1, 2], output
    for r in res.values():
        assert r["error"].startswith("ParallelError"), r
        assert "diverged" in r["error"] or "DivergenceError" in r["error"], r


@pytest.mark.parametrize("epoch", [2, 5])  # phase 1, phase 2
def test_a_failing_callback_stops_every_rank(tmp_path, epoch):
    rc, res, output, seconds = run_job(tmp_path, "--epochs", "6", "--callback-fails", str(epoch),
                                       timeout=120)
    assert rc != 0 and seconds < 60
    assert sorted(res) == [0, 1, 2], output
    for r in res.values():
        assert r["error"].startswith("ParallelError") and "the callback broke" in r["error"], r


def test_ranks_with_different_data_are_refused_on_every_rank(tmp_path):
    rc, res, output, _ = run_job(tmp_path, "--other-data-rank", "1")
    assert rc != 0
    assert sorted(res) == [0, 1, 2]
    assert all("different training data" in r["error"] for r in res.values())


def test_a_server_that_cannot_write_its_checkpoint_stops_every_rank(tmp_path):
    # its 3rd checkpoint write fails as on a full disk: every rank raises at
    # once (not after the silence timeout) and the 2nd checkpoint is intact
    path = tmp_path / "server.npz"
    rc, res, output, seconds = run_job(tmp_path, "--epochs", "8", "--checkpoint", path,
                                       "--full-disk-at", "3", "--timeout", "600", timeout=120)
    assert rc != 0 and seconds < 60, output
    assert sorted(res) == [0, 1, 2], output
    for r in res.values():
        assert r["error"].startswith("ParallelError") and "No space left on device" in r["error"], r
    assert sm.SparseMLP.load(path)._config["fit"]["done"] == 2


def test_ranks_with_different_options_are_refused_on_every_rank(tmp_path):
    rc, res, output, _ = run_job(tmp_path, "--other-lr-rank", "2")
    assert rc != 0
    assert sorted(res) == [0, 1, 2]
    for r in res.values():
        assert "different options" in r["error"] and "learning_rate: rank 0 0.01, rank 1 0.01, " \
            "rank 2 0.02" in r["error"], r


def test_a_rank_that_never_calls_fit_ends_the_job_after_the_timeout(tmp_path):
    # rank 2's WASAP(...) raises, so it never reaches fit; the others would
    # wait in fit's first collective forever
    rc, res, output, seconds = run_job(tmp_path, "--bad-trainer-rank", "2", "--timeout", "3",
                                       timeout=120)
    assert rc != 0 and seconds < 60, output
    assert "phase2_fraction" in res[2]["error"]
    assert "waiting for every rank to call WASAP.fit" in output and "Aborting" in output


FUZZ_JOB = os.path.join(os.path.dirname(__file__), "wasap_fuzz_job.py")


def test_random_fit_calls_end_alike_on_every_rank(tmp_path):
    # wasap_fuzz_job.py: many fit calls in one job, most with bad arguments
    # on every rank or on one rank only; the ranks must agree on each outcome,
    # and a failed run (a diverging worker) must not disturb the next ones
    from test_fuzz import CASES, EXAMPLES

    cases, out = 10 * EXAMPLES, tmp_path / "summary.json"
    proc = subprocess.run([mpiexec(), "-n", "3", sys.executable, FUZZ_JOB, str(cases), "0", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["cases"] == cases
    assert summary["ok"] > cases // 10 and summary["refused"] > cases // 2, summary
    assert summary["one_rank_only"] > cases // 10, summary
    # only runs that failed after messages were sent keep their communicator
    assert summary["retired"] == summary["errors"].get("ParallelError", 0), summary
    CASES["wasap.fit", "ok"] += summary["ok"]
    CASES["wasap.fit", "refused"] += summary["refused"]


def test_a_run_that_does_not_fit_in_memory_is_refused_on_every_rank(tmp_path):
    # 3 ranks on this host need about 0.9 MB together for this model; allow 0.5 MB
    rc, res, output, _ = run_job(tmp_path, env={"SPARSE_MLP_MEMORY_LIMIT": "500K"})
    assert rc != 0
    assert sorted(res) == [0, 1, 2]
    for r in res.values():
        assert r["error"].startswith("InsufficientMemoryError: WASAP with 2 workers needs")
        assert "ranks 0, 1, 2" in r["error"] and "500.0 kB is available" in r["error"]
    rc, res, output, _ = run_job(tmp_path, env={"SPARSE_MLP_MEMORY_LIMIT": "50M"})
    assert rc == 0, output


def test_memory_needs_add_up_per_host():
    from sparse_mlp.parallel import _memory_needs, _memory_problem
    from sparse_mlp.training.data import TrainingData
    model = sm.SparseMLP([30, 48, 48, 4], epsilon=4, seed=0)
    X = np.zeros((100, 30), np.float32)
    data = TrainingData(X, np.zeros(100, np.int64), None, np.arange(4))
    server, worker = _memory_needs(model, 16, data, 2)
    assert worker > model.memory_estimate(16)["training_total"] > 0 and server > 0
    # each host holds what its ranks need, however they are spread (2 workers)
    spread = [("a", server), ("b", 2 * worker), ("b", 2 * worker + 1)]
    assert _memory_problem(model, 16, data, spread) is None
    spread[1] = ("b", 2 * worker - 1)
    assert "host b (ranks 1, 2;" in _memory_problem(model, 16, data, spread)
    # the server's replicas grow with the workers: 3 workers on one host
    server, worker = _memory_needs(model, 16, data, 3)
    assert _memory_problem(model, 16, data, [("a", server + 3 * worker)] * 4) is None
    problem = _memory_problem(model, 16, data, [("a", server + 3 * worker - 1)] * 4)
    assert problem is not None and "host a (ranks 0, 1, 2, 3;" in problem
    assert _memory_problem(model, 16, data, [("a", None)] * 4) is None  # unknown: no refusal
    # the smallest figure a host's ranks report is the one that counts
    mixed = [("a", server + 3 * worker), ("a", server + 3 * worker), ("a", 10), ("a", None)]
    assert _memory_needs(model, 16, data, 3)[0] > _memory_needs(model, 16, data, 2)[0]
    assert _memory_problem(model, 16, data, mixed) is not None


def test_checkpoint_survives_a_killed_job_and_the_run_resumes(tmp_path):
    ckpt = tmp_path / "server.npz"
    out = str(tmp_path / "killed")
    proc = subprocess.Popen([mpiexec(), "-n", "3", sys.executable, JOB, out, "--epochs", "100",
                             "--samples", "3000", "--checkpoint", str(ckpt)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    done = 0
    deadline = time.monotonic() + 90
    try:
        while done < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if ckpt.exists():
                done = sm.SparseMLP.load(ckpt)._config["fit"]["done"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert done >= 3, "the job wrote checkpoints while running"
    saved = sm.SparseMLP.load(ckpt)  # loadable after the kill
    done = saved._config["fit"]["done"]
    assert saved.n_connections == sum(sm.connection_counts([30, 48, 48, 4], epsilon=4))

    rc, res, output, _ = run_job(tmp_path, "--epochs", "100", "--samples", "3000", "--checkpoint",
                                 str(ckpt), "--resume", name="resumed")
    assert rc == 0, output
    h = res[0]["history"]  # the whole run's, as a resumed fit's
    phase1 = [rec["epoch"] for rec in h if rec["phase"] == 1]
    assert phase1 == list(range(1, 71)), "phase 1 continues after the saved epoch"
    assert [rec["phase"] for rec in h[len(phase1):]] == [2] * 30 + ["average"]
    assert res[0]["seen"] == list(range(done + 1, 102)), "the callbacks saw the new records"
    final = sm.SparseMLP.load(ckpt)
    assert final._config["fit"]["finished"] and final.epochs_trained == 100
    assert res[0]["nnz"] == target_nnz()
    # a new run does not replace that checkpoint: every rank refuses, the file stays
    before = ckpt.read_bytes()
    rc, res, output, _ = run_job(tmp_path, "--epochs", "4", "--checkpoint", str(ckpt), name="again")
    assert rc != 0 and sorted(res) == [0, 1, 2]
    assert all("overwrite=True" in r["error"] and "resume=True" in r["error"] for r in res.values())
    assert ckpt.read_bytes() == before


# ------------------------------------------------------------ without MPI


def test_packed_stale_gradient_is_remapped_layer_by_layer():
    X, y = blobs(n=200, f=30, c=3)
    model = sm.SparseMLP([30, 60, 40, 3], epsilon=5, seed=2)
    model.fit(X, y, epochs=1, batch_size=20, topology=None, verbose=0)
    old = Packing(model._net)
    g = np.random.default_rng(1).standard_normal(old.length).astype(np.float32)
    model._net.evolve_set(0.3)
    new = Packing(model._net)
    out = np.full(new.length, np.nan, np.float32)
    dropped = new.remap(g, old, out)
    want_dropped = 0
    for (a, b, c), (oa, ob, oc), (ptr, rows), (optr, orows) in zip(
            new.spans, old.spans, new.topology, old.topology):
        mapped, lost = sm._core.remap_values(optr, orows, g[oa:ob], ptr, rows)
        np.testing.assert_array_equal(out[a:b], mapped)
        np.testing.assert_array_equal(out[b:c], g[ob:oc])  # biases keep their neurons
        want_dropped += lost
    assert dropped == want_dropped > 0
    # a layer whose shape changed (Importance Pruning with shrink) loses its entries
    model._net.remove_neurons(0, np.array([0, 5]), True)
    shrunk = Packing(model._net)
    out = np.full(shrunk.length, np.nan, np.float32)
    dropped = shrunk.remap(g[:new.length], new, out)
    a, _, c = shrunk.spans[0]
    assert np.all(out[a:c] == 0) and np.all(out[shrunk.spans[1][0]:shrunk.spans[1][2]] == 0)
    assert dropped == new.spans[1][2]  # layers 0 and 1 changed shape, layer 2 did not
    np.testing.assert_array_equal(out[shrunk.spans[2][1]:], g[new.spans[2][1]:new.length])


def test_union_average_binding_matches_a_dense_reference():
    models = [sm.SparseMLP([20, 15, 3], epsilon=3, seed=s) for s in range(3)]
    states = [m._net.layer_state(0) for m in models]
    dense = np.zeros((3, 20, 15))
    for d, s in zip(dense, states):
        cols = np.repeat(np.arange(15), np.diff(s["col_ptr"]))
        d[s["row_idx"], cols] = s["values"]
    target = states[0]["values"].size
    (ptr, rows, vals), union = sm._core.union_average(
        [(s["col_ptr"], s["row_idx"], s["values"]) for s in states], 20, target)
    present = (dense != 0).any(axis=0)
    assert union == present.sum() and vals.size == target
    cols = np.repeat(np.arange(15), np.diff(ptr))
    np.testing.assert_allclose(vals, dense.sum(axis=0)[rows, cols] / 3, rtol=1e-6)
    avg = dense.sum(axis=0) / 3
    kept = np.zeros_like(present)
    kept[rows, cols] = True
    gone = avg[present & ~kept]
    # what went is closer to zero than what stayed, within each sign
    assert gone[gone >= 0].max(initial=0) <= vals[vals >= 0].min()
    assert gone[gone < 0].min(initial=0) >= vals[vals < 0].max()
    with pytest.raises(sm.InvalidInputError):
        sm._core.union_average([(states[0]["col_ptr"], states[0]["row_idx"], vals[:-1])], 20, 5)


def test_bad_arguments_are_refused():
    for kwargs in ({"phase2_fraction": 1.5}, {"sync": "yes"}, {"chunk_mb": 0}, {"timeout": -1},
                   {"threads": 0}, {"overlap": "yes"}, {"transport": "float16"}):
        with pytest.raises(sm.InvalidInputError):
            sm.parallel.WASAP(**kwargs)


def test_a_single_process_is_told_to_use_mpiexec():
    code = ("import numpy as np, sparse_mlp as sm\n"
            "m = sm.SparseMLP([4, 8, 2], seed=0)\n"
            "try:\n"
            "    sm.parallel.WASAP().fit(m, np.zeros((4, 4), np.float32), np.array([0, 1, 0, 1]))\n"
            "except sm.InvalidInputError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "mpiexec -n K+1" in out.stdout, out.stdout + out.stderr


def test_command_line_trains_in_parallel(tmp_path):
    out = tmp_path / "model.npz"
    proc = subprocess.run([mpiexec(), "-n", "3", sys.executable, "-m", "sparse_mlp", "train",
                           "--parallel", "wassp", "--epochs", "3", "--hidden", "64,64",
                           "--save", str(out), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("final test accuracy") == 1, "only the server reports"
    model = sm.SparseMLP.load(out)
    assert model.epochs_trained == 3 and model.history[-1]["phase"] == "average"
    logged = sm.read_metrics(tmp_path / "run")
    assert [r["phase"] for r in logged] == [r["phase"] for r in model.history]


def test_an_unwritable_output_of_the_server_stops_every_rank_at_once(tmp_path):
    """Only the server writes the checkpoint and the model; when it cannot,
    every rank says so and exits, rather than waiting for the server."""
    proc = subprocess.run([mpiexec(), "-n", "3", sys.executable, "-m", "sparse_mlp", "train",
                           "--parallel", "wasap", "--epochs", "3", "--hidden", "64,64",
                           "--checkpoint", str(tmp_path / "missing" / "ck.npz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("cannot write the checkpoint") == 3, proc.stderr
    assert "Traceback" not in proc.stderr


def test_packed_parameter_calls_refuse_bad_buffers_and_change_nothing():
    model = sm.SparseMLP([10, 16, 3], epsilon=3, seed=0)
    net = model._net
    before = np.empty(net.packed_len, np.float32)
    net.pack_params(before)
    with pytest.raises(sm.InvalidInputError, match="packs"):
        net.unpack_params(np.zeros(3, np.float32))
    g = np.ones(net.packed_len, np.float32)
    g[5] = np.nan
    with pytest.raises(sm.InvalidInputError, match="NaN|nan"):
        net.apply_packed_gradient(g, 0.1, 0.9, 0.0)
    with pytest.raises(TypeError):
        net.pack_params(np.zeros(net.packed_len, np.float64))
    X, y = blobs(n=8, f=10, c=3)
    with pytest.raises(sm.InvalidInputError, match="packs"):
        net.gradient_step(X, y, np.zeros(4, np.float32))
    after = np.empty(net.packed_len, np.float32)
    net.pack_params(after)
    np.testing.assert_array_equal(before, after)
    # a packed gradient step is the step fit() takes from the same gradient
    grad = np.empty(net.packed_len, np.float32)
    loss_sum, correct = net.gradient_step(X, y, grad)
    assert np.isfinite(loss_sum) and 0 <= correct <= 8 and np.abs(grad).sum() > 0
