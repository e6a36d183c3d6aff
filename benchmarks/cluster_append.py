"""Durable appends/s through Redis, by hand: ``python benchmarks/cluster_append.py``.

Starts its own ``redis-server`` (``appendonly yes``, ``appendfsync always``) in a temp
dir on a free loopback port (or uses ``--redis URL``), then ``--writers`` concurrent
senders append to ``--rooms`` rooms through one Broker for ``--seconds``: each awaits its
ack before sending the next, as a client waiting for ``ack`` would. ``--nodes N`` runs N
such node processes at once against the one Redis (the aggregate a cluster would see).
The broker's batcher sends the appends of each loop turn as one pipeline (one fsync), so
the figure is the cluster's group commit at work. Prints appends/s, pipelines/s (≈ fsyncs
per second), the mean batch, p50/p99 ack latency and the CPU seconds of each node and of
redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from redis.asyncio import Redis

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


async def run(url: str, node: str, writers: int, rooms: int, seconds: float) -> dict:
    """One node's writers for ``seconds``: its figures as a dict."""
    broker = Broker(url, node=node, on_message=lambda *_: None)
    await broker.start()
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def writer(w: int) -> None:
        n = 0
        room = f"#bench{w % rooms}"
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            await broker.append(room, f"user{w}", f"{node}-w{w}-{n}", "text", TEXT,
                                int(time.time() * 1000))
            latencies.append(time.perf_counter() - sent)
            n += 1

    me = psutil.Process()
    cpu = sum(me.cpu_times()[:2])
    pipelines = broker.batcher.pipelines
    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - started
    pipelines = broker.batcher.pipelines - pipelines
    cpu = sum(me.cpu_times()[:2]) - cpu
    await broker.close()
    q = statistics.quantiles(latencies, n=100)
    return {"appends": len(latencies), "seconds": elapsed, "pipelines": pipelines,
            "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "cpu_s": cpu}


def report(label: str, r: dict) -> None:
    n, elapsed = r["appends"], r["seconds"]
    print(f"  {label}: {n / elapsed:,.0f} durable appends/s; {r['pipelines'] / elapsed:,.0f} "
          f"pipelines/s, {n / max(r['pipelines'], 1):.1f} appends per pipeline; ack p50 "
          f"{r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms; CPU {r['cpu_s']:.2f} s "
          f"({r['cpu_s'] / n * 1e6:.0f} µs per append)")


async def cluster(url: str, redis_pid: int, nodes: int, writers: int, rooms: int,
                  seconds: float) -> None:
    """``nodes`` node processes (this one and nodes - 1 children) at once on one Redis."""
    children = [await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--redis", url, "--node", f"node{k}", "--json",
        "--writers", str(writers), "--rooms", str(rooms), "--seconds", str(seconds),
        stdout=asyncio.subprocess.PIPE) for k in range(2, nodes + 1)]
    them = psutil.Process(redis_pid)
    redis_cpu = sum(them.cpu_times()[:2])
    client = Redis.from_url(url)
    memory = (await client.info("memory"))["used_memory"]
    results = [await run(url, "node1", writers, rooms, seconds)]
    for child in children:
        out, _ = await child.communicate()
        results.append(json.loads(out))
    redis_cpu = sum(them.cpu_times()[:2]) - redis_cpu
    total = sum(r["appends"] / r["seconds"] for r in results)
    print(f"{nodes} node(s) × {writers} writers, {rooms} rooms, {seconds:.0f} s, "
          f"appendfsync always: {total:,.0f} durable appends/s in all")
    for k, r in enumerate(results, 1):
        report(f"node{k}", r)
    appends = sum(r["appends"] for r in results)
    memory = (await client.info("memory"))["used_memory"] - memory
    aof = (await client.info("persistence"))["aof_current_size"]
    await client.aclose()
    print(f"  redis-server CPU {redis_cpu:.2f} s ({redis_cpu / appends * 1e6:.0f} µs per append)"
          f"; memory {memory / appends:.0f} bytes and AOF {aof / appends:.0f} bytes per message")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=200, help="per node")
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--nodes", type=int, default=1, help="node processes at once")
    parser.add_argument("--redis", help="use this Redis (redis://HOST:PORT/DB) instead")
    parser.add_argument("--node", default="node1", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.redis:
        result = asyncio.run(run(args.redis, args.node, args.writers, args.rooms,
                                 args.seconds))
        if args.json:
            print(json.dumps(result))
        else:
            report(args.node, result)
        return

    async def own_redis() -> None:
        with tempfile.TemporaryDirectory() as directory:
            proc, url = await start_redis(Path(directory))
            try:
                await cluster(url, proc.pid, args.nodes, args.writers, args.rooms,
                              args.seconds)
            finally:
                proc.terminate()
                proc.wait()

    asyncio.run(own_redis())


if __name__ == "__main__":
    main()
