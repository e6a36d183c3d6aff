#!/usr/bin/env python3
"""The figures of docs/cluster.md "Search on a cluster": one node's index catching up
N chat lines over ROOMS rooms from a real redis-server, a search over them, and the
node's next start on the kept file (its indexer's check of every room, nothing read
again).

    .venv/bin/python scripts/measure_cluster_search.py 100000 100

Starts its own ``redis-server`` (no persistence: only reads are measured) on a free
loopback port; prints the catch-up's wall and CPU time, Redis's CPU (``INFO
commandstats``, reset before), the index's memory per message, and a search's cost.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from redis.asyncio import Redis

from cfm_server.cluster.broker import Broker
from cfm_server.cluster.search import ClusterSearch
from tests.ports import free_port

_VOCABULARY = ("lunch friday meet the a to at noon cafe bakery deploy build fix bug test ok yes "
         "no tomorrow meeting review merge branch server client redis index search node "
         "cluster please thanks sure later today weekend coffee tea team plan ship "
         "release")
WORDS = _VOCABULARY.split()


async def redis_cpu(client: Redis) -> tuple[int, float]:
    stats = await client.info("commandstats")
    return (sum(v["calls"] for v in stats.values()),
            sum(v["usec"] for v in stats.values()) / 1e6)


async def measure(url: str, n: int, rooms: int, tmp: Path) -> None:
    writer = Broker(url, node="w", on_message=lambda *a: None)
    await writer.start()
    rnd = random.Random(1)
    ts = 1_700_000_000_000
    started = time.perf_counter()
    for first in range(0, n, 2000):
        await asyncio.gather(*(
            writer.submit(f"#r{i % rooms}", "alice", f"c{i}", "text",
                          " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(4, 14))),
                          ts + i)
            for i in range(first, min(n, first + 2000))))
    print(f"wrote {n} lines in {time.perf_counter() - started:.1f} s")

    client = Redis.from_url(url)
    reader = Broker(url, node="n1", on_message=lambda *a: None)
    await reader.start()
    read = {f"#r{k}": await reader.head(f"#r{k}") for k in range(rooms)}
    heads = {room: head.seq for room, head in read.items()}
    index = ClusterSearch(reader, url, tmp / "search.sqlite3")
    index.start()
    assert index._process is not None
    indexer = psutil.Process(index._process.pid)
    await client.config_resetstat()
    cpu, started = time.process_time(), time.perf_counter()
    for room, seq in heads.items():
        index.note(room, seq)  # as a node's subscriptions do
    while index.behind(heads):
        await asyncio.sleep(0.01)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    calls, redis_s = await redis_cpu(client)
    times = indexer.cpu_times()
    indexer_s, indexer_rss = times.user + times.system, indexer.memory_info().rss
    size = sum(p.stat().st_size for p in tmp.glob("search.sqlite3*"))
    print(f"catch-up of {n} entries in {rooms} rooms: {wall:.2f} s wall; the node "
          f"{cpu:.2f} s CPU ({cpu / n * 1e6:.1f} µs/entry), its indexer process "
          f"{indexer_s:.2f} s ({indexer_s / n * 1e6:.1f} µs/entry, RSS "
          f"{indexer_rss / 2**20:.0f} MiB); Redis: {calls} calls, {redis_s:.2f} s CPU "
          f"({redis_s / n * 1e6:.2f} µs/entry); index file {size / 2**20:.1f} MiB "
          f"({size / n:.0f} B/line)")

    await client.config_resetstat()
    started = time.perf_counter()
    for _ in range(50):
        found = await index.search("bob", list(heads), ["lunch", "friday"], None, 21)
    each = (time.perf_counter() - started) / 50
    calls, redis_s = await redis_cpu(client)
    print(f"search 'lunch friday', limit 21: {len(found)} hits, {each * 1000:.1f} ms each; "
          f"Redis {calls / 50:.0f} calls, {redis_s / 50 * 1e6:.0f} µs per search")
    await index.close()

    # The node's next start: the same file, every room followed again.
    index = ClusterSearch(reader, url, tmp / "search.sqlite3")
    await client.config_resetstat()
    cpu, started = time.process_time(), time.perf_counter()
    index.start()
    assert index._process is not None
    indexer = psutil.Process(index._process.pid)
    for room, head in read.items():
        index.follow(room, head.seq, head.epoch)
    while index.behind(heads):
        await asyncio.sleep(0.01)
    answered = time.perf_counter() - started
    # The indexer's start check: an HMGET and an XRANGE of each room of the file.
    for _ in range(3000):
        stats = await client.info("commandstats")
        if stats.get("cmdstat_xrange", {}).get("calls", 0) >= rooms:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)  # its transaction written
    cpu = time.process_time() - cpu
    calls, redis_s = await redis_cpu(client)
    times = indexer.cpu_times()
    indexer_s = times.user + times.system
    print(f"next start on the kept file: searchable (behind 0) after {answered:.3f} s "
          f"wall, {index.indexed} entries read again; the node {cpu:.2f} s CPU, its "
          f"indexer {indexer_s:.2f} s (its start included); Redis: {calls} calls, "
          f"{redis_s * 1000:.1f} ms CPU")
    await index.close()
    await reader.close()
    await writer.close()
    await client.aclose()


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rooms = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server is not installed", file=sys.stderr)
        return 2
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                 "--dir", tmp, "--save", "", "--appendonly", "no",
                                 "--logfile", "redis.log"])
        try:
            time.sleep(0.5)
            asyncio.run(measure(f"redis://127.0.0.1:{port}/0", n, rooms, Path(tmp)))
        finally:
            proc.terminate()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
