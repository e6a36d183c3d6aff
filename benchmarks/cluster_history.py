"""What a ``history`` page costs a cluster node and Redis, by hand:
``python benchmarks/cluster_history.py [--size 4000] [--limit 50] [--pages 300]``.

Starts its own ``redis-server`` (as ``cluster_append.py`` does) and one ``cfm serve
--redis`` node (a process of its own, search index off), stores ``--messages`` messages
of ``--size`` characters in one room straight through a Broker, then has one client page
back through the room's history (``history{before}``, ``--limit`` per page, from the
newest again once it reached the oldest) ``--pages`` times, one request at a time, and
prints per page, in CPU time (the machine may be busy: wall-clock rates would be the
neighbours'):

- the bytes Redis sent (``INFO stats`` ``total_net_output_bytes``: the node's reads,
  plus a few hundred bytes of heartbeats and the two ``INFO`` replies over the run);
- the bytes the node sent the client (the pages), and the messages per page;
- CPU of the node process and of redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgpack
import psutil
from cluster_append import start_redis  # type: ignore[import-not-found]
from redis.asyncio import Redis

from cfm_server.cluster.broker import Broker
from tests.server.serve_proc import serve
from tests.wire import WireClient

ROOM = "#big"


def cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


async def fill(url: str, n: int, size: int) -> None:
    writer = Broker(url, node="writer", on_message=lambda *_: None)
    await writer.start()
    try:
        ts = int(time.time() * 1000)
        for first in range(0, n, 200):
            await asyncio.gather(*(
                writer.submit(ROOM, "alice", f"c{i}", "text",
                              (f"{i} " + "x" * size)[:size], ts + i)
                for i in range(first, min(n, first + 200))))
    finally:
        await writer.close()


async def page_back(alice: WireClient, limit: int, pages: int) -> tuple[int, int]:
    """``pages`` history requests paging back; (bytes received, messages received)."""
    received = msgs = 0
    before: int | None = None
    for i in range(pages):
        frame: dict[str, Any] = {"t": "history", "room": ROOM, "limit": limit, "id": f"h{i}"}
        if before is not None:
            frame["before"] = before
        await alice.send(frame)
        while True:
            data = await asyncio.wait_for(alice.ws.recv(), 30)
            page = msgpack.unpackb(data, raw=False)
            if page.get("t") == "history" and page.get("ref") == f"h{i}":
                break
        received += len(data)
        msgs += len(page["msgs"])
        before = page["msgs"][0]["seq"] if page["more"] else None
    return received, msgs


async def measure(args: argparse.Namespace, tmp: Path) -> None:
    redis_proc, url = await start_redis(tmp)
    redis = Redis.from_url(url)
    try:
        node_args = ("--redis", url, "--node-id", "n1", "--no-rate-limits",
                     "--data-dir", str(tmp / "n1"), "--set", "search_index=false",
                     "--set", f"page_bytes={args.page_bytes}",
                     "--max-text", str(max(4096, args.size)))
        async with serve(*node_args) as node, \
                WireClient.connect(node.url, max_size=None) as alice:
            await alice.hello("alice")
            await alice.send({"t": "join", "room": ROOM})
            await alice.recv_until("joined")
            await fill(url, args.messages, args.size)
            for _ in range(300):  # until the node has handed on the last one
                await alice.send({"t": "history", "room": ROOM, "limit": 1})
                top = await alice.recv_until("history")
                if top["msgs"] and top["msgs"][-1]["seq"] == args.messages:
                    break
                await asyncio.sleep(0.05)
            await page_back(alice, args.limit, 20)  # warm
            node_proc, redis_ps = psutil.Process(node.proc.pid), psutil.Process(redis_proc.pid)
            out_before = (await redis.info("stats"))["total_net_output_bytes"]
            node_before, redis_before = cpu(node_proc), cpu(redis_ps)
            received, msgs = await page_back(alice, args.limit, args.pages)
            node_s, redis_s = cpu(node_proc) - node_before, cpu(redis_ps) - redis_before
            out = (await redis.info("stats"))["total_net_output_bytes"] - out_before
    finally:
        await redis.aclose()
        redis_proc.terminate()
        redis_proc.wait()
    n = args.pages
    print(f"{args.size}-char messages, limit {args.limit}, page_bytes {args.page_bytes}: "
          f"per page {msgs / n:.1f} msgs, {received / n / 1024:.1f} KiB sent, "
          f"{out / n / 1024:.1f} KiB from Redis ({out / max(1, received):.2f}x), "
          f"node {node_s / n * 1e6:.0f} µs, redis {redis_s / n * 1e6:.0f} µs CPU")
    RESULTS.append((out / n, node_s / n * 1e6, redis_s / n * 1e6))


RESULTS: list[tuple[float, float, float]] = []


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4000, help="characters per message")
    parser.add_argument("--limit", type=int, default=50, help="history limit per page")
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--page-bytes", type=int, default=131072)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            await measure(args, Path(tmp))
    if args.runs > 1:
        columns = zip(*RESULTS, strict=True)
        for name, values in zip(("KiB from Redis", "node µs", "redis µs"), columns,
                                strict=True):
            scaled = [v / 1024 for v in values] if name.startswith("KiB") else list(values)
            print(f"  {name}: median {statistics.median(scaled):.1f} "
                  f"(runs: {', '.join(f'{v:.1f}' for v in scaled)})")


if __name__ == "__main__":
    asyncio.run(main())
