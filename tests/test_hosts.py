"""WASAP-SGD across hosts: every rank on a host of its own (a Linux network
namespace with its own link, see scripts/netns_hosts.py), so that messages
cross a network instead of shared memory, and faults that only exist across
hosts: a link taken down, a host's processes killed, a link slowed to a crawl.

The links' byte counters show the traffic really crossed them: MPICH's default
netmod would silently move it through shared memory between namespaces."""

import json
import os
import re
import subprocess
import sys
import time

import pytest
from test_wasap import JOB, mpiexec, target_nnz

import sparse_mlp as sm
from doc_commands import commands

SCRIPTS = os.path.join(os.path.dirname(__file__), "..", "scripts")
GUIDE = os.path.join(os.path.dirname(__file__), "..", "docs", "guide.md")
README = os.path.join(os.path.dirname(__file__), "..", "README.md")
sys.path.insert(0, SCRIPTS)
from netns_hosts import NamespaceHosts, unavailable  # noqa: E402

WHY = unavailable()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"no namespace hosts here: {WHY}")

LAUNCHER_LIMIT = 120  # MPIEXEC_TIMEOUT: the bound on any job, whatever happens to it


@pytest.fixture
def hosts():
    with NamespaceHosts(4) as h:  # one server and three workers, a host each
        yield h


def start(hosts, out, *options, ranks_per_host=None):
    env = hosts.env(MPIEXEC_TIMEOUT=str(LAUNCHER_LIMIT), PYTHONUNBUFFERED="1")
    return subprocess.Popen(hosts.mpiexec([sys.executable, JOB, str(out), *options], ranks_per_host,
                                          mpiexec=mpiexec()),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def results(out, n=4):
    found = {}
    for r in range(n):
        if os.path.exists(f"{out}.{r}.json"):
            with open(f"{out}.{r}.json") as fh:
                found[r] = json.load(fh)
    return found


def rank_processes(hosts):
    """The job's rank processes still alive, per host."""
    alive = []
    for name in hosts.names:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        count = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    argv = fh.read().split(b"\0")
            except OSError:
                continue
            count += any(a.endswith(b"wasap_job.py") for a in argv[1:2])
        alive.append(count)
    return alive


def test_the_probe_of_the_guide_reports_the_bytes_that_crossed():
    proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, "netns_hosts.py")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sent = int(re.search(r"host 0 sent ([\d,]+) bytes", proc.stdout).group(1).replace(",", ""))
    assert sent >= 2**24, proc.stdout


def test_the_guides_cluster_recipe_runs_on_namespace_hosts(hosts, tmp_path, madelon_dir, monkeypatch):
    """The guide's hostfile, settings and command, on four namespace hosts
    (the launcher flags stand in for ssh; the hostfile names their addresses)."""
    with open(GUIDE) as fh:
        guide = fh.read()
    command = next(c for c in commands(guide) if c.startswith("mpiexec -f hosts"))
    recipe = guide[guide.index("### Across machines"):]
    assert "".join(f"    node{i}:1\n" for i in range(4)) in recipe
    exports = re.search(r"^ +export (.*)$", recipe, flags=re.M).group(1).split()
    env = hosts.env(netmod=False, **dict(e.split("=", 1) for e in exports))
    assert env["MPIR_CVAR_CH4_NETMOD"] == "ofi" and env["FI_TCP_IFACE"] == "eth0"
    env["MPIEXEC_TIMEOUT"] = str(LAUNCHER_LIMIT)
    monkeypatch.chdir(tmp_path)
    os.symlink(os.path.dirname(os.path.dirname(os.path.abspath(madelon_dir))), tmp_path.parent / "shared")
    launcher = hosts.mpiexec([], mpiexec=mpiexec())
    argv = launcher[:launcher.index("-f")] + command.split()[1:] + ["--epochs", "3", "--verbose", "0"]
    with open("hosts", "w") as fh:
        fh.writelines(f"{a}:1\n" for a in hosts.addresses)
    before = hosts.tx_bytes(0)
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = bin_dir + os.pathsep + env["PATH"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=LAUNCHER_LIMIT + 30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "final test accuracy" in proc.stdout
    assert hosts.tx_bytes(0) - before > 2**20
    saved = sm.SparseMLP.load("runs/cluster/checkpoint.npz")
    assert saved._config["fit"]["finished"] and saved.epochs_trained == 3
    assert sm.SparseMLP.load("runs/cluster/model.npz").epochs_trained == 3
    assert [r["phase"] for r in sm.read_metrics("runs/cluster")][-1] == "average"


def test_the_wasap_benchmark_commands_of_the_readme_and_guide_run(tmp_path, madelon_dir):
    """Each ``benches/wasap.py --hosts`` command, shortened to one seed and one epoch."""
    found = []
    for doc in (README, GUIDE):
        with open(doc) as fh:
            text = fh.read()
        found += [c for c in commands(text) if c.startswith("python benches/wasap.py") and "--hosts" in c]
    assert len(found) == 4
    bench = os.path.join(os.path.dirname(__file__), "..", "benches", "wasap.py")
    results = tmp_path / "results.jsonl"
    for command in found:
        argv = [sys.executable, bench, *command.split()[2:], "--seeds", "1", "--epochs", "1",
                "--data-dir", madelon_dir, "--results", str(results)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
        assert "failed" not in proc.stdout, proc.stdout
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert {r["rate"] for r in rows} >= {"none", "1gbit", "100mbit"}
    assert {r["placement"] for r in rows} == {"hosts", "one host"}
    assert all(r["parallel"][0]["host0_tx_bytes"] > 0 for r in rows if r["placement"] == "hosts")


def test_latency_where_the_kernel_has_netem(hosts, tmp_path):
    """A WASAP run over links with 20 ms of latency each way (netem), where
    the kernel has it; where not, the reason is reported."""
    try:
        for i in range(4):
            hosts.delay(i, "20ms")
    except NotImplementedError as e:
        pytest.skip(str(e))
    out = tmp_path / "slow"
    proc = start(hosts, out, "--epochs", "3", "--samples", "300")
    output, _ = proc.communicate(timeout=LAUNCHER_LIMIT + 30)
    assert proc.returncode == 0, output
    assert len({r["sha"] for r in results(out).values()}) == 1


def test_a_16_mib_message_crosses_the_link(hosts):
    code = ("from mpi4py import MPI; import numpy as np; c = MPI.COMM_WORLD; a = np.ones(2**22, np.float32)\n"
            "c.Send(a, dest=1) if c.rank == 0 else c.Recv(a, source=0)")
    before = [hosts.tx_bytes(i) for i in range(4)]
    proc = subprocess.run(hosts.mpiexec([sys.executable, "-c", code], [1, 1, 0, 0], mpiexec=mpiexec()),
                          env=hosts.env(MPIEXEC_TIMEOUT="60"), capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sent = [hosts.tx_bytes(i) - b for i, b in enumerate(before)]
    assert sent[0] >= 2**24, f"host 0 sent only {sent[0]} bytes over its link: not over the network"
    assert hosts.rx_bytes(1) >= 2**24
    assert max(sent[2:]) < 2**20, "hosts without ranks only see broadcast chatter"


@pytest.mark.parametrize("sync, transport", [(False, "float32"), (True, "float32"), (False, "bfloat16")],
                         ids=["wasap", "wassp", "wasap-bfloat16"])
def test_a_run_across_hosts_trains_and_its_messages_cross_the_links(hosts, tmp_path, sync, transport):
    out = tmp_path / "run"
    before = [hosts.tx_bytes(i) for i in range(4)]
    proc = start(hosts, out, "--epochs", "6", "--transport", transport, *(["--sync"] if sync else []))
    output, _ = proc.communicate(timeout=LAUNCHER_LIMIT + 30)
    assert proc.returncode == 0, output
    sent = [hosts.tx_bytes(i) - b for i, b in enumerate(before)]
    res = results(out)
    assert sorted(res) == [0, 1, 2, 3]
    assert len({r["sha"] for r in res.values()}) == 1, "every rank holds the same final model"
    assert res[0]["nnz"] == target_nnz() and res[0]["accuracy"] > 0.9
    h = res[0]["history"]
    phase1 = [rec for rec in h if rec["phase"] == 1]
    assert [rec["phase"] for rec in h] == [1] * 4 + [2] * 2 + ["average"]
    assert all(rec["n_connections"] == sum(target_nnz()) for rec in phase1)
    if sync:  # every update waits for all three: none is stale
        assert all(rec["max_staleness"] == 0 for rec in phase1)
    # What the server sent (answers, models) and received (gradients, replicas)
    # went over the links: its own, and the three workers'.
    assert sent[0] >= sum(rec["bytes_sent"] for rec in phase1)
    assert sum(sent[1:]) >= sum(rec["bytes_received"] for rec in phase1)
    assert min(sent[1:]) > 0, "each worker host sent its gradients over its link"


def interrupt(hosts, tmp_path, fault, timeout):
    """Starts a run that checkpoints, breaks worker host 2 after the
    server's second epoch and returns (exit code, output, seconds from the
    fault until mpiexec ended, seconds until no rank was left, checkpoint)."""
    ckpt = tmp_path / "server.npz"
    out = tmp_path / "broken"
    proc = start(hosts, out, "--epochs", "40", "--samples", "3000", "--timeout", str(timeout),
                 "--checkpoint", str(ckpt))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.exists() and sm.SparseMLP.load(ckpt)._config["fit"]["done"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the fault: " + proc.communicate()[0]
    fault()
    t0 = time.monotonic()
    output, _ = proc.communicate(timeout=LAUNCHER_LIMIT + 30)
    ended = time.monotonic() - t0
    while sum(rank_processes(hosts)) and time.monotonic() - t0 < LAUNCHER_LIMIT:
        time.sleep(0.2)
    gone = time.monotonic() - t0
    assert sum(rank_processes(hosts)) == 0, "a rank outlived the job"
    assert not any("sha" in r for r in results(out).values()), "no rank may finish a broken run"
    return proc.returncode, output, ended, gone, ckpt, out


def resumes(hosts, tmp_path, ckpt):
    """The server's checkpoint of the broken run resumes to the end."""
    out = tmp_path / "resumed"
    proc = start(hosts, out, "--epochs", "40", "--samples", "3000", "--checkpoint", str(ckpt), "--resume")
    output, _ = proc.communicate(timeout=LAUNCHER_LIMIT + 30)
    assert proc.returncode == 0, output
    res = results(out)
    assert len({r["sha"] for r in res.values()}) == 1 and res[0]["nnz"] == target_nnz()
    assert [rec["epoch"] for rec in res[0]["history"] if rec["phase"] == 1] == list(range(1, 29))
    assert sm.SparseMLP.load(ckpt)._config["fit"]["finished"]


def causes(out):
    """Each rank's log: what it said before it stopped."""
    named = {}
    for r in range(4):
        path = f"{out}.{r}.log"
        named[r] = open(path).read() if os.path.exists(path) else ""
    return named


@pytest.mark.parametrize("how", ["link_down", "crawl"])
def test_a_cut_or_crawling_link_ends_every_rank_with_its_cause(hosts, tmp_path, how):
    """No message can cross (or one takes longer than the silence limit):
    every rank, on both sides of the link, says what it waited for and
    aborts; a rank cut off from the launcher ends itself after the abort's
    grace period, and the launcher ends with an error."""
    fault = ((lambda: hosts.set_link(2, False)) if how == "link_down"
             else (lambda: hosts.throttle(2, "2kbit")))
    rc, output, ended, gone, ckpt, out = interrupt(hosts, tmp_path, fault, timeout=5)
    assert rc != 0, output
    limit = 5 + sm.parallel.transport.ABORT_GRACE + 15
    assert gone < limit, f"ranks were left for {gone:.0f} s"
    assert ended < limit, f"mpiexec ended {ended:.0f} s after the fault"
    for rank, log in causes(out).items():
        assert "heard nothing for 5 s while waiting for" in log, (rank, log, output[-3000:])
    hosts.set_link(2, True)
    hosts.throttle(2, None)
    resumes(hosts, tmp_path, ckpt)


def test_a_host_whose_processes_are_killed_ends_the_job(hosts, tmp_path):
    """Its proxy dies with its rank: the launcher sees it at once, ends the
    job with an error and the other hosts' ranks with it."""
    rc, output, ended, gone, ckpt, _ = interrupt(hosts, tmp_path, lambda: hosts.kill(2), timeout=30)
    assert rc != 0, output
    assert gone < 20 and ended < 20, (ended, gone)
    resumes(hosts, tmp_path, ckpt)
