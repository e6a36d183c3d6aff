"""A cluster node's search indexer per entry, by hand: ``python -m benchmarks.cluster_index_pass``.

Starts its own ``redis-server`` (as ``cluster_append.py`` does), appends ``--per``
messages to each of ``--rooms`` rooms through a Broker, notes them to an ``Indexer``
(cluster/indexer.py) on a fresh index file and runs one pass; ``--passes`` times. The
shape of a busy node's pass under ``cfm bench --scenario rooms``: a few new entries in
each of hundreds of rooms. Prints the indexer's CPU (this process, during the passes
only) and Redis's CPU (``INFO cpu``, during the passes) per entry indexed; the first
pass, which also reads each room's epoch, is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from redis import Redis

from benchmarks.cluster_append import start_redis
from cfm_server.cluster import indexer as ix
from cfm_server.cluster import indexfile
from cfm_server.cluster.broker import Broker


def redis_cpu(client: Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def measure(url: str, directory: Path, rooms: int, per: int, passes: int
                  ) -> tuple[float, float, int]:
    broker = Broker(url, node="n1", on_message=lambda *_: None)
    await broker.start()
    path = directory / "index.sqlite3"
    indexfile.prepare(path, "")
    indexer = ix.Indexer(ix.connect(path), lambda: ix.redis_client(url))
    client = Redis.from_url(url)
    indexer_s = redis_s = 0.0
    entries = seq = 0
    try:
        for p in range(passes):
            for k in range(per):
                seq += 1
                await asyncio.gather(*(
                    broker.append(f"#r{i}", "alice", f"{p}-{k}-{i}", "text",
                                  f"hello world number {i} pass {p}", int(time.time() * 1000))
                    for i in range(rooms)))
            for i in range(rooms):
                indexer.note(f"#r{i}", seq)
            cpu0, redis0 = time.process_time(), redis_cpu(client)
            indexer.run_pass()
            cpu1, redis1 = time.process_time(), redis_cpu(client)
            if p:
                indexer_s += cpu1 - cpu0
                redis_s += redis1 - redis0
                entries += rooms * per
    finally:
        await broker.close()
        client.close()
    return indexer_s, redis_s, entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--per", type=int, default=3, help="new entries per room per pass")
    parser.add_argument("--passes", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        proc, url = asyncio.run(start_redis(directory))
        try:
            indexer_s, redis_s, entries = asyncio.run(
                measure(url, directory, args.rooms, args.per, args.passes))
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"{entries} entries over {args.rooms} rooms, {args.per} a room a pass: indexer "
          f"{indexer_s / entries * 1e6:.1f} µs, Redis {redis_s / entries * 1e6:.1f} µs "
          "of CPU per entry")


if __name__ == "__main__":
    main()
