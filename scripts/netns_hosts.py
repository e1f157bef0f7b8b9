"""Hosts on one machine: Linux network namespaces joined by a bridge, for
running MPI jobs whose messages really cross a network link.

    with NamespaceHosts(3, rate="100mbit") as hosts:
        subprocess.run(hosts.mpiexec(["python", "job.py"]), env=hosts.env())
        print(hosts.tx_bytes(0))

Each host is a namespace with its own ``lo`` and a veth ``eth0``
(10.77.0.10, .11, ...) plugged into a bridge in a "switch" namespace. Hydra
(mpiexec) runs inside host 0 and reaches the others through a launcher that
stands in for ssh: it runs the proxy command inside the host's namespace.
MPICH's default netmod (UCX) would still use shared memory between namespaces,
so :meth:`env` selects libfabric's TCP provider on ``eth0``; tests check the
links' byte counters to be sure the traffic crossed them.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); :func:`unavailable` says why
namespaces cannot be made here. Every namespace and link is removed on exit
(and namespaces left by a killed run of an earlier process are removed too).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import weakref

PREFIX = "smlp"
SUBNET = "10.77.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def unavailable() -> str | None:
    """Why namespace hosts cannot be made on this machine, or None."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)"
    name = f"{PREFIX}probe{os.getpid()}"
    try:
        made = _ip("netns", "add", name, check=False)
    except FileNotFoundError:
        return "the `ip` command (iproute2) is not installed"
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    try:
        veth = _ip("-n", name, "link", "add", "a0", "type", "veth", "peer", "name", "b0", check=False)
        if veth.returncode != 0:
            return f"veth links cannot be made: {veth.stderr.strip()}"
    finally:
        _ip("netns", "del", name, check=False)
    return None


def _kill_namespace(name: str) -> None:
    """Kills every process inside namespace ``name``, then deletes it."""
    for _ in range(20):
        pids = _ip("netns", "pids", name, check=False).stdout.split()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        time.sleep(0.05)
    _ip("netns", "del", name, check=False)


def remove_stale() -> None:
    """Removes the namespaces of earlier runs whose process is gone (a run
    killed before its own cleanup)."""
    listed = _ip("-j", "netns", "list", check=False).stdout or "[]"
    for entry in json.loads(listed):
        name = entry.get("name", "")
        if not name.startswith(PREFIX):
            continue
        owner = name[len(PREFIX):].split("x")[0]
        if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            _kill_namespace(name)


class NamespaceHosts:
    """``n`` hosts on a bridge; a context manager that removes them all."""

    def __init__(self, n: int, rate: str | None = None) -> None:
        if not 1 <= n <= 50:
            raise ValueError(f"between 1 and 50 hosts, got {n}")
        self.n = n
        self.tag = f"{PREFIX}{os.getpid()}x{id(self) % 100000}"
        self.switch = f"{self.tag}sw"
        self.names = [f"{self.tag}h{i}" for i in range(n)]
        self.addresses = [f"{SUBNET}.{10 + i}" for i in range(n)]
        self.dir = tempfile.mkdtemp(prefix="netns-hosts-")
        self.launcher = os.path.join(self.dir, "launch")
        self._made: list[str] = []
        self._finalizer = weakref.finalize(self, _cleanup, self._made, self.dir)
        try:
            remove_stale()
            self._build()
            if rate is not None:
                for i in range(n):
                    self.throttle(i, rate)
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        _ip("netns", "add", self.switch)
        self._made.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        _ip("-n", self.switch, "link", "set", "lo", "up")
        for i, (ns, addr) in enumerate(zip(self.names, self.addresses)):
            _ip("netns", "add", ns)
            self._made.append(ns)
            # made inside the switch (no name clash with other runs), one end moved out
            _ip("-n", self.switch, "link", "add", f"port{i}", "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            _ip("-n", self.switch, "link", "set", f"port{i}", "master", "br0")
            _ip("-n", self.switch, "link", "set", f"port{i}", "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        cases = "\n".join(f"  {a}) ns={n} ;;" for a, n in zip(self.addresses, self.names))
        with open(self.launcher, "w") as fh:
            fh.write(
                "#!/bin/sh\n"
                "# stands in for ssh: launch [options] HOST COMMAND...\n"
                'while [ "${1#-}" != "$1" ]; do shift; done\n'
                'host=$1; shift\n'
                f'case $host in\n{cases}\n'
                '  *) echo "launch: unknown host $host" >&2; exit 255 ;;\n'
                "esac\n"
                'exec ip netns exec "$ns" sh -c "$*"\n')
        os.chmod(self.launcher, 0o755)
        self.hostfile = os.path.join(self.dir, "hosts")

    def __enter__(self) -> NamespaceHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._finalizer()

    # ---- running on the hosts

    def env(self, netmod: bool = True, **extra: str) -> dict[str, str]:
        """The environment for :meth:`mpiexec`: Hydra's launcher settings,
        MPICH over libfabric's TCP provider on ``eth0`` (unless ``netmod`` is
        False: the caller's settings then), and ``extra``."""
        env = dict(os.environ, HYDRA_LAUNCHER_AUTOFORK="0")
        if netmod:
            env.update(MPIR_CVAR_CH4_NETMOD="ofi", FI_PROVIDER="tcp", FI_TCP_IFACE="eth0")
        return dict(env, **extra)

    def mpiexec(self, argv: list[str], ranks_per_host: list[int] | None = None,
                mpiexec: str = "mpiexec") -> list[str]:
        """The command that runs ``argv`` with ``ranks_per_host[i]`` ranks on
        host i (default one each), ranks numbered host by host: rank 0 on host 0."""
        counts = ranks_per_host if ranks_per_host is not None else [1] * self.n
        if len(counts) != self.n or min(counts) < 0 or counts[0] < 1:
            raise ValueError(f"ranks per host: {counts}")
        used = [(a, c) for a, c in zip(self.addresses, counts) if c > 0]
        with open(self.hostfile, "w") as fh:
            fh.writelines(f"{a}:{c}\n" for a, c in used)
        return ["ip", "netns", "exec", self.names[0], mpiexec, "-launcher", "ssh",
                "-launcher-exec", self.launcher, "-localhost", self.addresses[0],
                "-f", self.hostfile, "-n", str(sum(counts)), *argv]

    def run(self, i: int, command: str) -> subprocess.CompletedProcess:
        """Runs a shell command on host ``i``."""
        return subprocess.run(["ip", "netns", "exec", self.names[i], "sh", "-c", command],
                              capture_output=True, text=True)

    # ---- the links

    def _counters(self, i: int) -> dict:
        out = _ip("-n", self.names[i], "-j", "-s", "link", "show", "eth0").stdout
        return json.loads(out)[0]["stats64"]

    def tx_bytes(self, i: int) -> int:
        """Bytes host ``i`` has sent over its link."""
        return int(self._counters(i)["tx"]["bytes"])

    def rx_bytes(self, i: int) -> int:
        return int(self._counters(i)["rx"]["bytes"])

    def throttle(self, i: int, rate: str | None) -> None:
        """Limits host ``i``'s link to ``rate`` (tc syntax: "100mbit") both
        ways: token buckets on its eth0 and on its switch port; None lifts it."""
        for ns, dev in ((self.names[i], "eth0"), (self.switch, f"port{i}")):
            if rate is None:
                _ip("netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root", check=False)
            else:
                _ip("netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate",
                    rate, "burst", "256kbit", "latency", "500ms")

    def delay(self, i: int, latency: str) -> None:
        """Adds ``latency`` (tc syntax: "20ms") to host ``i``'s outgoing
        packets. Needs the kernel's netem scheduler, which some kernels lack:
        raises :class:`NotImplementedError` with tc's message then."""
        done = _ip("netns", "exec", self.names[i], "tc", "qdisc", "replace", "dev", "eth0", "root",
                   "netem", "delay", latency, check=False)
        if done.returncode != 0:
            raise NotImplementedError(f"netem is not available: {done.stderr.strip()}")

    def set_link(self, i: int, up: bool) -> None:
        """Takes host ``i``'s link down (its cable pulled) or back up."""
        _ip("-n", self.names[i], "link", "set", "eth0", "up" if up else "down")

    def kill(self, i: int) -> int:
        """Kills every process on host ``i`` (SIGKILL); returns how many."""
        pids = _ip("netns", "pids", self.names[i], check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def describe(self) -> str:
        return " ".join(f"{n}={a}" for n, a in zip(self.names, self.addresses))


def _cleanup(made: list[str], folder: str) -> None:
    for name in reversed(made):
        _kill_namespace(name)
    made.clear()
    for entry in os.listdir(folder) if os.path.isdir(folder) else []:
        os.unlink(os.path.join(folder, entry))
    if os.path.isdir(folder):
        os.rmdir(folder)


if __name__ == "__main__":  # a 16 MB probe: python scripts/netns_hosts.py
    why = unavailable()
    if why:
        sys.exit(f"netns_hosts: {why}")
    code = ("from mpi4py import MPI; import numpy as np; c = MPI.COMM_WORLD; a = np.ones(2**22, np.float32)\n"
            "c.Send(a, dest=1) if c.rank == 0 else c.Recv(a, source=0)")
    with NamespaceHosts(2) as hosts:
        before = hosts.tx_bytes(0)
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        proc = subprocess.run(hosts.mpiexec([sys.executable, "-c", code], mpiexec=mpiexec),
                              env=hosts.env(MPIEXEC_TIMEOUT="60"), capture_output=True, text=True)
        sent = hosts.tx_bytes(0) - before
        print(f"exit {proc.returncode}; host 0 sent {sent:,} bytes over eth0 for a 16 MiB message")
        print(proc.stdout + proc.stderr, end="")
