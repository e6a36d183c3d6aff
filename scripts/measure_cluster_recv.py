#!/usr/bin/env python3
"""The receiving side of a cluster node, alone: CPU per published message read from
pub/sub and handed on in seq order (``Broker`` → ``Subscriber`` → ``RoomTracker``).

    .venv/bin/python scripts/measure_cluster_recv.py [MESSAGES] [ROOMS] [RUNS]

Starts its own ``redis-server`` (no persistence) on a free loopback port; one broker
subscribes to ROOMS rooms, and a separate process publishes MESSAGES envelopes into
them (pipelines of 100, as ``append.lua`` would publish them). Prints this process's
CPU time (``time.process_time``: the publisher's is not in it) per message delivered,
for each run; fan-out to sessions is not part of it (``cfm bench --cluster`` is).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cfm_server.cluster.broker import Broker
from tests.ports import free_port

PUBLISHER = """
import sys
from redis import Redis
url, n, rooms, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
client = Redis.from_url(url)
msg = bytes(range(97, 123)) * 4  # ~100 bytes, as a short chat line's frame
pipe = client.pipeline(transaction=False)
for i in range(n):
    room, seq = i % rooms, start + i // rooms
    pipe.publish(b"cfm:{#r%d}:live" % room, b"%d e1 x/1 " % seq + msg)
    if len(pipe) >= 100:
        pipe.execute()
pipe.execute()
"""


async def run(url: str, n: int, rooms: int, start: int, broker: Broker,
              counted: list[int]) -> float:
    counted[0] = 0
    done = asyncio.get_running_loop().create_future()

    def watch() -> None:
        if counted[0] >= n and not done.done():
            done.set_result(None)

    cpu0 = time.process_time()
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, url, str(n), str(rooms), str(start))
    for _ in range(6000):  # at most 60 s
        watch()
        if done.done():
            break
        await asyncio.sleep(0.01)
    cpu = time.process_time() - cpu0
    await publisher.wait()
    if counted[0] < n:
        raise RuntimeError(f"only {counted[0]} of {n} delivered")
    return cpu


async def main(n: int, rooms: int, runs: int) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        redis = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", tmp],
                                 stdout=subprocess.DEVNULL)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            counted = [0]

            def on_message(room: str, seq: int, origin: str, msg: bytes) -> None:
                counted[0] += 1

            await asyncio.sleep(0.3)
            broker = Broker(url, node="n1", on_message=on_message)
            await broker.start()
            for r in range(rooms):
                await broker.subscribe(f"#r{r}")
            for i in range(runs):
                cpu = await run(url, n, rooms, 1 + i * (n // rooms), broker, counted)
                print(f"run {i + 1}: {n} messages, {cpu:.3f} s CPU, "
                      f"{cpu / n * 1e6:.2f} µs per message")
            await broker.close()
        finally:
            redis.terminate()
            redis.wait()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    n, rooms, runs = (args + [200_000, 4, 3][len(args):])[:3]
    asyncio.run(main(n - n % rooms, rooms, runs))
