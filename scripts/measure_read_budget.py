#!/usr/bin/env python3
"""What a reader costs the server per MB of stored messages it is sent, and what the
per-user read budget (``cfm_server/read_budget.py``) adds: docs/performance.md.

    .venv/bin/python scripts/measure_read_budget.py [--src DIR] [--cluster] [--runs N]
                                                    [--set KEY=VALUE ...]

Starts ``cfm serve`` from the source tree ``--src`` (this one by default; an export of
another commit compares before and after) on a free loopback port — with ``--cluster``
two nodes over a ``redis-server`` of its own, the reader's user on both (so its charges
go to Redis) — fills a room with 400 messages of 4,096 emoji (16 KiB each), then asks
for its replay (``join{since:0}``) ``--runs`` times and prints the serving node's CPU
(``/proc``, by psutil) and Redis's (``INFO commandstats``) per MB received.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from redis.asyncio import Redis

from tests.ports import free_port
from tests.wire import WireClient

ROOM = "#big"
MESSAGES = 400
TEXT = "\U0001F600" * 4096
# The writer stores fast; nothing here is about its limits.
WRITER = ("say_burst=100000", "user_say_burst=100000", "user_text_rate=1e12",
          "user_text_burst=1000000000000", "recv_rate=1e12", "recv_burst=1000000000000")


def serve(src: Path, port: int, data: Path, sets: list[str], redis: str | None,
          node: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-c", "from cfm_cli.main import main; main()", "serve",
            "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)]
    for item in (*WRITER, *sets):
        args += ["--set", item]
    if redis is not None:
        args += ["--redis", redis, "--node-id", node]
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=src)


async def ready(port: int) -> None:
    for _ in range(600):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit(f"no server on port {port}")


async def replay(client: WireClient, n: int) -> int:
    """Ask for the room's replay; the bytes of its messages received."""
    await client.send({"t": "join", "room": ROOM, "since": 0, "id": f"r{n}"})
    got = size = 0
    while got < MESSAGES:
        data = await asyncio.wait_for(client.ws.recv(), 30)
        size += len(data)
        if data[:8].find(b"\xa3msg") >= 0:
            got += 1
        elif b"error" in data[:32]:
            raise SystemExit(f"refused: {data!r}")
    return size


async def redis_cpu(url: str | None) -> float:
    if url is None:
        return 0.0
    client = Redis.from_url(url)
    stats = await client.info("commandstats")
    await client.aclose()
    return sum(v["usec"] for v in stats.values()) / 1e6


async def measure(args: argparse.Namespace, tmp: Path) -> None:
    redis_url = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if args.cluster:
            port = free_port()
            procs.append(subprocess.Popen(
                [shutil.which("redis-server") or "redis-server", "--port", str(port),
                 "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                stdout=subprocess.DEVNULL))
            redis_url = f"redis://127.0.0.1:{port}/0"
            await asyncio.sleep(0.3)
        ports = [free_port() for _ in range(2 if args.cluster else 1)]
        nodes = [serve(args.src, p, tmp / f"n{i}", args.set, redis_url, f"n{i}")
                 for i, p in enumerate(ports)]
        procs += nodes
        for p in ports:
            await ready(p)
        urls = [f"ws://127.0.0.1:{p}/ws" for p in ports]
        async with WireClient.connect(urls[0], max_size=None) as reader:
            welcome = await reader.hello("reader")
            async with WireClient.connect(urls[-1], max_size=None) as other:
                await other.hello("reader", token=welcome["token"])  # spread on a cluster
                await reader.send({"t": "join", "room": ROOM})
                await reader.recv_until("joined")
                for i in range(MESSAGES):
                    await reader.send({"t": "say", "room": ROOM, "text": TEXT, "id": f"m{i}"})
                await reader.recv_until("ack", timeout=120, id=f"m{MESSAGES - 1}")
                await asyncio.sleep(1)
                node = psutil.Process(nodes[0].pid)
                for run in range(args.runs):
                    cpu0, redis0 = node.cpu_times(), await redis_cpu(redis_url)
                    size = 0
                    for n in range(args.replays):
                        size += await replay(reader, run * 1000 + n)
                    cpu1, redis1 = node.cpu_times(), await redis_cpu(redis_url)
                    mb = size / 1e6
                    used = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
                    print(f"run {run}: {mb:.1f} MB, node {used / mb * 1000:.2f} ms/MB, "
                          f"Redis {(redis1 - redis0) / mb * 1000:.2f} ms/MB", flush=True)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--replays", type=int, default=10)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure(args, Path(tmp)))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
