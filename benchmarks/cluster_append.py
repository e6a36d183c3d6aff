"""Durable appends/s through Redis, by hand: ``python benchmarks/cluster_append.py``.

Starts its own ``redis-server`` (``appendonly yes``, ``appendfsync always``) in a temp
dir on a free loopback port (or uses ``--redis URL``), then ``--writers`` concurrent
senders append to ``--rooms`` rooms through one Broker for ``--seconds``: each awaits its
ack before sending the next, as a client waiting for ``ack`` would. The broker's batcher
sends the appends of each loop turn as one pipeline (one fsync), so the figure is the
cluster's group commit at work. Prints appends/s, pipelines/s (≈ fsyncs/s), the mean
batch, p50/p99 ack latency and the CPU seconds of this process and of redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from cfm_server.cluster.broker import Broker

TEXT = "a typical chat line, about sixty characters long, give or take"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--appendonly", "yes", "--appendfsync", "always", "--save", "",
         "--daemonize", "no", "--logfile", "redis.log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):  # until it answers PING (it is loading nothing: at once)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"PING\r\n")
            ready = await reader.readline() == b"+PONG\r\n"
            writer.close()
            if ready:
                break
        except OSError:
            pass
        await asyncio.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}/0"


async def run(url: str, redis_pid: int | None, writers: int, rooms: int,
              seconds: float) -> None:
    broker = Broker(url, node="bench", on_message=lambda *_: None)
    await broker.start()
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def writer(w: int) -> None:
        n = 0
        room = f"#bench{w % rooms}"
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            await broker.append(room, f"user{w}", f"w{w}-{n}", "text", TEXT,
                                int(time.time() * 1000))
            latencies.append(time.perf_counter() - sent)
            n += 1

    me = psutil.Process()
    them = psutil.Process(redis_pid) if redis_pid else None
    cpu_me, cpu_them = me.cpu_times(), them.cpu_times() if them else None
    pipelines = broker.batcher.pipelines
    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - started
    pipelines = broker.batcher.pipelines - pipelines
    used_me = sum(me.cpu_times()[:2]) - sum(cpu_me[:2])
    used_them = sum(them.cpu_times()[:2]) - sum(cpu_them[:2]) if them and cpu_them else None
    await broker.close()
    n = len(latencies)
    q = statistics.quantiles(latencies, n=100)
    print(f"{writers} writers, {rooms} rooms, {elapsed:.1f} s, appendfsync always:")
    print(f"  {n / elapsed:,.0f} durable appends/s; {pipelines / elapsed:,.0f} pipelines/s, "
          f"{n / max(pipelines, 1):.1f} appends per pipeline")
    print(f"  ack latency p50 {q[49] * 1000:.2f} ms, p99 {q[98] * 1000:.2f} ms")
    print(f"  CPU: node {used_me:.2f} s" + (f", redis-server {used_them:.2f} s"
                                            if used_them is not None else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=200)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--redis", help="use this Redis (redis://HOST:PORT/DB) instead")
    args = parser.parse_args()
    if args.redis:
        asyncio.run(run(args.redis, None, args.writers, args.rooms, args.seconds))
        return

    async def own_redis() -> None:
        with tempfile.TemporaryDirectory() as directory:
            proc, url = await start_redis(Path(directory))
            try:
                await run(url, proc.pid, args.writers, args.rooms, args.seconds)
            finally:
                proc.terminate()
                proc.wait()

    asyncio.run(own_redis())


if __name__ == "__main__":
    main()
