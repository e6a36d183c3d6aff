"""``cfm bench --cluster N``: a ``redis-server`` (AOF, fsync always) and N ``cfm serve --redis``
nodes on free loopback ports, as one target.

The driver deals each room's members over the nodes (member k of a room on node k mod N),
so every message crosses Redis to reach most of its room. The server's CPU and RSS are
the sum over the nodes *and* Redis: a cluster's cost per delivery includes the part that
does not scale out.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cfm_bench.target import READY_TIMEOUT, Target, _preexec, _wait_listening, free_port

MISSING = "redis-server is not installed (Debian: apt-get install redis-server)"


def _wait_redis(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not answer on port {port} within {READY_TIMEOUT} s")


FSYNC_POLICIES = ("always", "everysec", "no")


def spawn_cluster(nodes: int, cpus: list[int] | None, fsync: str = "always") -> Target:
    """Redis, then ``nodes`` cfm serve processes on it; the Target's first port is node 1's.

    ``fsync`` is Redis's ``appendfsync``: ``always`` (the durable default, an ack survives a
    SIGKILL of Redis) or ``everysec``/``no``, to show what the fsync per pipeline costs.
    """
    if fsync not in FSYNC_POLICIES:
        raise ValueError(f"appendfsync is one of {', '.join(FSYNC_POLICIES)}")
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(MISSING)
    data_dir = Path(tempfile.mkdtemp(prefix="cfm-bench-cluster-"))
    (data_dir / "redis").mkdir()
    redis_port = free_port()
    redis = subprocess.Popen(
        [binary, "--port", str(redis_port), "--bind", "127.0.0.1",
         "--dir", str(data_dir / "redis"), "--appendonly", "yes", "--appendfsync", fsync,
         "--save", "", "--maxmemory-policy", "noeviction", "--protected-mode", "no",
         "--logfile", "redis.log"],
        stdout=subprocess.DEVNULL, preexec_fn=_preexec(cpus))
    name = f"cfm-cluster{nodes}" + ("" if fsync == "always" else f"-{fsync}")
    target = Target(name, "127.0.0.1", 0, data_dir=data_dir, cpus=cpus)
    target.extra_processes.append(redis)
    target.pids.append(redis.pid)
    target.names.append("redis")
    try:
        _wait_redis(redis, redis_port)
        url = f"redis://127.0.0.1:{redis_port}/0"
        for n in range(1, nodes + 1):
            port = free_port()
            command = [
                sys.executable, "-m", "cfm_server", "--host", "127.0.0.1", "--port", str(port),
                "--data-dir", str(data_dir / f"node{n}"), "--redis", url,
                "--node-id", f"bench{n}", "--no-ai", "--no-rate-limits",
                "--log-level", "warning",
            ]
            node = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                    preexec_fn=_preexec(cpus))
            # Nodes stop before Redis (stop() goes in order): no reconnect storms at the end.
            target.extra_processes.insert(n - 1, node)
            target.pids.insert(n - 1, node.pid)
            target.names.insert(n - 1, f"node{n}")
            target.ports.append(port)
            _wait_listening(node, "127.0.0.1", port)
    except BaseException:
        target.stop()
        raise
    target.port = target.ports[0]
    return target
