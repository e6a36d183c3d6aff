"""Numbering from two processes at once, and acked appends surviving a SIGKILL of Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

from redis.asyncio import Redis

from cfm_server.cluster import keys
from cfm_server.cluster.errors import ClusterUnavailable
from tests.cluster.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
TS = 1_764_800_000_000


async def stream_of(url: str, room: str) -> list[tuple[int, bytes]]:
    client = Redis.from_url(url)
    try:
        entries = await client.xrange(keys.room_log(room))
    finally:
        await client.aclose()
    return [(int(eid.split(b"-")[0]), fields[b"m"]) for eid, fields in entries]


async def test_two_processes_appending_at_once_get_every_seq_exactly_once(redis):
    n = 300
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.cluster.appender", redis.url, "#race", sender, str(n),
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        for sender in ("alice", "bob")]
    for proc in procs:  # both connected and waiting: go
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    outputs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    acks = [ack for out, _ in outputs for ack in json.loads(out)]
    assert sorted(seq for _, seq, _ in acks) == list(range(1, 2 * n + 1))
    # Each writer's own messages keep their order (one pipeline in flight per node).
    for sender in ("alice", "bob"):
        mine = [seq for cid, seq, _ in acks if cid.startswith(sender)]
        assert mine == sorted(mine)
    stored = await stream_of(redis.url, "#race")
    assert [seq for seq, _ in stored] == list(range(1, 2 * n + 1))
    by_seq = {seq: cid for cid, seq, _ in acks}
    assert all(by_seq[seq].encode() in msg for seq, msg in stored)


async def test_every_acked_append_survives_a_sigkill_of_redis(broker_factory, redis):
    broker = await broker_factory(socket_timeout=2.0, backoff=(0.05, 0.3))
    acked: dict[str, tuple[int, int]] = {}
    refused: list[str] = []

    async def writer(w: int) -> None:
        for i in range(10_000):
            cid = f"w{w}-{i}"
            try:
                done = await broker.append("#kill", "alice", cid, "text", cid, TS + i)
            except ClusterUnavailable:
                refused.append(cid)
                return
            acked[cid] = (done.seq, done.ts)

    writers = [asyncio.create_task(writer(w)) for w in range(20)]
    try:
        await wait_until(lambda: len(acked) >= 300, "300 acks")
        redis.kill()  # mid-stream: appends are in flight
        await asyncio.wait_for(asyncio.gather(*writers), 30)
    finally:
        for task in writers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert len(refused) == 20
    await redis.start()  # same dir: loads the AOF; the script cache starts empty
    stored = dict(await stream_of(redis.url, "#kill"))
    assert sorted(stored) == list(range(1, len(stored) + 1)), "seq gap after the restart"
    for cid, (seq, _) in acked.items():
        assert cid.encode() in stored[seq], f"acked {cid} as seq {seq}, lost"
    # The refused ones are retried: each is stored once (or found stored, if its reply
    # was what the kill lost), and numbering goes on without a gap.
    await wait_until(lambda: not broker.batcher.down, "the broker reconnected")
    retried = await asyncio.gather(*(
        broker.append("#kill", "alice", cid, "text", cid, TS) for cid in refused))
    stored = dict(await stream_of(redis.url, "#kill"))
    assert sorted(stored) == list(range(1, len(stored) + 1))
    assert len(stored) == len(acked) + len(refused)
    for cid, done in zip(refused, retried, strict=True):
        assert cid.encode() in stored[done.seq]
