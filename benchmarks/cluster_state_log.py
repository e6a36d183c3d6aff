"""The cost of one change of the shared records, by hand: ``python
benchmarks/cluster_state_log.py``.

Starts its own ``redis-server`` (as cluster_append.py does), then one node's shared
records make ``--changes`` puts, ``--writers`` at a time (each awaiting its answer), of
user records (``--value`` bytes: ~800 is a 64-emoji display name and a 128-emoji
personal message) over ``--keys`` keys, with the log bounded to ``--log-bytes`` (or to
``--keep`` entries). Prints the CPU of the node (this process) and of redis-server per
change, the log's entries and its MEMORY USAGE at the end. ``--script FILE`` runs
another ``state_change.lua`` (an older version, to compare).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
import time
from pathlib import Path

import psutil
from cluster_append import start_redis  # type: ignore[import-not-found]
from redis.asyncio import Redis

from cfm_server.cluster import keys, scripts, state
from cfm_server.cluster.broker import Broker


async def run(url: str, args: argparse.Namespace) -> dict:
    broker = Broker(url, node="bench", on_message=lambda *_: None)
    await broker.start()
    records = state.SharedState(broker, None, "bench.000000", args.log_bytes, keep=args.keep)
    value = b"v" * args.value
    await records.load()
    done = 0

    async def writer(w: int) -> None:
        nonlocal done
        while done < args.changes:
            done += 1
            await records.put(f"u:user{done % args.keys}", value + b"%d" % done)

    # Warm up to the trim's steady state: the budget full, then measured.
    warm = args.changes
    args.changes = warm // 2
    await asyncio.gather(*(writer(w) for w in range(args.writers)))
    args.changes, done = warm, 0
    redis_proc = psutil.Process(args.redis_pid)
    cpu0, rcpu0 = time.process_time(), sum(redis_proc.cpu_times()[:2])
    await asyncio.gather(*(writer(w) for w in range(args.writers)))
    cpu, rcpu = time.process_time() - cpu0, sum(redis_proc.cpu_times()[:2]) - rcpu0
    client = Redis.from_url(url)
    log = keys.room_log(keys.STATE)
    figures = {"node_us_per_change": round(cpu / done * 1e6, 1),
               "redis_us_per_change": round(rcpu / done * 1e6, 1),
               "log_entries": await client.xlen(log),
               "log_memory": await client.execute_command("MEMORY", "USAGE", log, "SAMPLES", "0")}
    await client.aclose()
    await records.close()
    await broker.close()
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20000)
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--value", type=int, default=800)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--log-bytes", type=int, default=state.LOG_BYTES)
    parser.add_argument("--keep", type=int, default=None)
    parser.add_argument("--script", type=Path, default=None)
    args = parser.parse_args()
    if args.script is not None:
        source = args.script.read_text("utf-8")
        script = scripts.Script("state_change", source, hashlib.sha1(source.encode()).hexdigest())
        scripts.BY_SHA[script.sha] = scripts.STATE_CHANGE = script
    with tempfile.TemporaryDirectory() as directory:
        proc, url = await start_redis(Path(directory))
        args.redis_pid = proc.pid
        try:
            print(json.dumps(await run(url, args)))
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
