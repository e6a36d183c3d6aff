"""The server under test: a running one (``--url``), or a subprocess the bench starts.

A spawned server gets a free port, a temporary data directory, its soft file limit
raised to the hard one, and (with two or more cores) its own cores: the driver
processes are pinned to the others, so the two never fight over a CPU.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

BASELINE_SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "baseline_server.py"
READY_TIMEOUT = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def split_cpus(procs: int | None) -> tuple[list[int] | None, list[int] | None]:
    """(server cores, driver cores): the server gets one core, the driver the rest."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None
    if len(cpus) < 2:
        return None, None
    return cpus[:1], cpus[1:]


@dataclass
class Target:
    """Where the driver connects, and the server's pid when the bench can watch it."""

    kind: str  # "cfm-sqlite", "cfm-memory", "baseline", "url", "cfm-clusterN"
    host: str
    port: int
    path: str = "/ws"
    pid: int | None = None
    process: subprocess.Popen[bytes] | None = None
    data_dir: Path | None = None
    cpus: list[int] | None = None
    # A cluster (cluster.py): every node's port (clients are dealt over them), and the
    # pids watched together — the nodes and Redis — with a name each.
    ports: list[int] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    extra_processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.path}"

    def watched(self) -> list[int | None]:
        return list(self.pids) if self.pids else [self.pid]

    def stop(self) -> None:
        for process in [self.process, *self.extra_processes]:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def from_url(url: str, pid: int | None = None) -> Target:
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"--url must look like ws://host:port/ws, not {url!r}")
    return Target("url", parts.hostname, parts.port or 80, parts.path or "/ws", pid=pid)


def _preexec(cpus: list[int] | None) -> Any:
    def setup() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if cpus:
            # Before exec: every thread the server starts (SQLite's too) inherits it.
            os.sched_setaffinity(0, cpus)

    return setup


def _wait_listening(process: subprocess.Popen[bytes], host: str, port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the server did not listen on {host}:{port} within {READY_TIMEOUT} s")


def spawn_cfm(store: str, cpus: list[int] | None, extra: list[str] | None = None) -> Target:
    """``cfm serve --no-rate-limits --no-ai`` on a free port with a temporary data dir."""
    host, port = "127.0.0.1", free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="cfm-bench-"))
    command = [
        sys.executable, "-m", "cfm_server", "--host", host, "--port", str(port),
        "--data-dir", str(data_dir), "--store", store, "--no-ai", "--no-rate-limits",
        "--log-level", "warning", *(extra or []),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, preexec_fn=_preexec(cpus))
    target = Target(f"cfm-{store}", host, port, pid=process.pid, process=process,
                    data_dir=data_dir, cpus=cpus)
    try:
        _wait_listening(process, host, port)
    except BaseException:
        target.stop()
        raise
    return target


def spawn_baseline(cpus: list[int] | None, script: Path | None = None) -> Target:
    """The bare websockets server of ``benchmarks/baseline_server.py``."""
    script = script or BASELINE_SCRIPT
    if not script.is_file():
        raise RuntimeError(
            f"the baseline server {script} is not here: run the bench from a source "
            "checkout of cfm, or pass --baseline-script"
        )
    host, port = "127.0.0.1", free_port()
    command = [sys.executable, str(script), "--host", host, "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, preexec_fn=_preexec(cpus))
    target = Target("baseline", host, port, pid=process.pid, process=process, cpus=cpus)
    try:
        _wait_listening(process, host, port)
    except BaseException:
        target.stop()
        raise
    return target


class ServerWatch:
    """CPU seconds and RSS of the server process (all its threads) and of its child
    processes (single-node's search indexer, a cluster node's), when its pid is known.

    Given several pids (a cluster's nodes and Redis), the figures are their sums. The
    children are looked for at each reading (an indexer starts with the server, a Redis
    fork for an AOF rewrite comes and goes). Each process counts its own CPU and that of
    its children it has reaped (``children_user``/``children_system``): a child that
    exited between two readings is counted once its parent has waited for it, under
    the parent's name.
    """

    def __init__(self, pid: int | list[int | None] | None,
                 names: list[str] | None = None) -> None:
        pids = pid if isinstance(pid, list) else [pid]
        self.processes: list[Any] = []
        self.names = names or []
        # Every process seen, watched or a child: pid -> (name, process).
        self._seen: dict[int, tuple[str, Any]] = {}
        for one in pids:
            if one is None:
                continue
            try:
                import psutil

                self.processes.append(psutil.Process(one))
            except Exception as exc:  # psutil missing, or the pid gone
                log.warning("cannot watch server pid %s: %s", one, exc)
                self.processes = []
                break
        tops = self.names if len(self.names) >= len(self.processes) else ["server"]
        for name, process in zip(tops, self.processes, strict=False):
            self._seen[process.pid] = (name, process)

    def _refresh(self) -> None:
        """Take in the children started since the last reading."""
        for process in self.processes:
            parent = self._seen[process.pid][0]
            try:
                children = process.children(recursive=True)
            except Exception:  # the server is gone: its last figures stand
                continue
            for child in children:
                if child.pid not in self._seen:
                    self._seen[child.pid] = (f"{parent}.{_child_name(child)}", child)

    def _cpu_by_pid(self) -> dict[int, tuple[str, float]]:
        self._refresh()
        found: dict[int, tuple[str, float]] = {}
        for pid, (name, process) in list(self._seen.items()):
            try:
                t = process.cpu_times()
            except Exception:  # exited: its parent counts it once reaped
                if process not in self.processes:
                    del self._seen[pid]
                continue
            found[pid] = (name, float(t.user + t.system + t.children_user
                                      + t.children_system))
        return found

    def cpu(self) -> float | None:
        if not self.processes:
            return None
        return sum(cpu for _, cpu in self._cpu_by_pid().values())

    def cpu_each(self) -> dict[str, float]:
        """CPU seconds by process name (``node1``, ``node1.indexer``, ``redis``...)."""
        each: dict[str, float] = {}
        for name, cpu in self._cpu_by_pid().values():
            each[name] = each.get(name, 0.0) + cpu
        return each

    def rss_each(self) -> dict[str, int]:
        self._refresh()
        each: dict[str, int] = {}
        for name, process in list(self._seen.values()):
            try:
                each[name] = each.get(name, 0) + int(process.memory_info().rss)
            except Exception:  # exited: it holds no memory now
                continue
        return each

    def run_queue_wait(self) -> float | None:
        """Seconds the server's threads were ready to run but waited for a CPU (Linux).

        On a shared machine this is the time other processes took from the server: a
        figure measured while it is large says more about the neighbours than about cfm.
        (The server's own processes only: a nice-19 indexer waits by design.)
        """
        if not self.processes:
            return None
        waits = [run_queue_wait(p.pid) for p in self.processes]
        return None if None in waits else sum(w for w in waits if w is not None)

    def rss(self) -> int | None:
        if not self.processes:
            return None
        return sum(self.rss_each().values())


def _child_name(process: Any) -> str:
    """A child's name in the figures: ``indexer`` for a search indexer (a Python process
    whose command line names it), else its process name (``redis-aof-rewrite``...)."""
    try:
        if any("indexer" in part for part in process.cmdline()):
            return "indexer"
        return str(process.name()) or f"pid{process.pid}"
    except Exception:
        return f"pid{process.pid}"


def run_queue_wait(pid: int) -> float | None:
    """Sum of the run-queue wait of every thread of ``pid`` from /proc, in seconds."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                total += int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9
