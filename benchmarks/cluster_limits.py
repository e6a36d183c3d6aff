"""What a per-user limit costs on a cluster node, by hand:
``python benchmarks/cluster_limits.py``.

Starts its own ``redis-server`` (as ``cluster_append.py`` does), then measures, in CPU
time (the machine may be busy: wall-clock rates would be the neighbours'):

- **local**: ``Admission.charge`` of a user on this node alone (its own bucket; what a
  single node does, and a cluster node for nearly every user): µs of this process per
  charge;
- **shared**: ``ClusterLimits.take`` of users on several nodes, ``--in-flight`` charges
  per loop turn (one pipeline) as a busy node would send them: µs of this process
  and of redis-server per charge.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
from cluster_append import start_redis  # type: ignore[import-not-found]

from cfm_server.admission import Admission
from cfm_server.cluster.broker import Broker
from cfm_server.cluster.limits import ClusterLimits
from cfm_server.config import ServerConfig


def local_charges(n: int) -> float:
    admission = Admission(ServerConfig(user_say_rate=1e9, user_say_burst=10**9), ())
    users: list[Any] = [SimpleNamespace(name=f"user{i}") for i in range(1000)]
    start = time.process_time()
    for i in range(n):
        admission.charge(users[i % 1000], "say", "x")
    return (time.process_time() - start) / n * 1e6


async def shared_charges(url: str, redis_pid: int, n: int, in_flight: int
                         ) -> tuple[float, float]:
    broker = Broker(url, node="bench", on_message=lambda *_: None)
    await broker.start()
    config = ServerConfig(user_say_rate=1e6, user_say_burst=10**6)
    limits = ClusterLimits(broker.batcher, Admission(config, ()), lambda _: 1)
    redis = psutil.Process(redis_pid)
    try:
        for i in range(100):  # warm: the script loaded, the connection made
            await limits.take("say", f"user{i}")
        redis_before = sum(redis.cpu_times()[:2])
        start = time.process_time()
        done = 0
        while done < n:
            await asyncio.gather(*(limits.take("say", f"user{(done + k) % 1000}")
                                   for k in range(in_flight)))
            done += in_flight
        node_us = (time.process_time() - start) / done * 1e6
        redis_us = (sum(redis.cpu_times()[:2]) - redis_before) / done * 1e6
    finally:
        await broker.close()
    return node_us, redis_us


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charges", type=int, default=50_000)
    parser.add_argument("--in-flight", type=int, default=200)
    args = parser.parse_args()
    print(f"local: {local_charges(args.charges * 4):.2f} µs of the node per charge")
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = await start_redis(Path(tmp))
        try:
            node_us, redis_us = await shared_charges(url, proc.pid, args.charges,
                                                     args.in_flight)
        finally:
            proc.terminate()
            proc.wait()
    print(f"shared: {node_us:.1f} µs of the node and {redis_us:.1f} µs of redis-server "
          f"per charge ({args.in_flight} per pipeline)")


if __name__ == "__main__":
    asyncio.run(main())
