"""Retention on a cluster: each room's stream trimmed by age and by size (``XTRIM``).

The same rule as a single node (cfm_server/retention.py): nothing older than
``retention_days``, at most ``retention_bytes`` of text per room, the room's latest
message always kept (its seq is the room's sequence). One node does it for the cluster:
the holder of the lease ``retention`` (another node takes over when it dies), once when
it gets the lease and then every ``retention_interval`` seconds.

A pass walks every room's stream key (``SCAN``; the shared records' log is not a room
and is never trimmed), finds the lowest seq to keep by reading entries (``XRANGE``
from the oldest for the age, ``XREVRANGE`` from the newest for the size, a page at a
time) and drops what lies below it with ``XTRIM MINID <seq>-0``, which is atomic per
room. Stream ids are ``<seq>-0``, so the cut is exact. A room's seq and epoch (its meta
key) and its dedupe entries stay: numbering goes on, and a retried ``say`` of a trimmed
message still gets its original ack. Clients that ask for history below the cut get
what is left, as on a single node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import msgpack

from cfm_server.cluster import keys
from cfm_server.cluster.batcher import Batcher
from cfm_server.cluster.lease import Lease
from cfm_server.cluster.outage import level

if TYPE_CHECKING:
    from cfm_server.cluster.node import ClusterNode
    from cfm_server.config import ServerConfig

log = logging.getLogger(__name__)

LEASE = "retention"
PAGE = 500  # entries read per XRANGE / XREVRANGE call
SCAN_COUNT = 500
LOG_PATTERN = f"{keys.PREFIX}{{*}}:log"


def _seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _frame(fields: list[bytes]) -> dict[str, Any]:
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    frame = msgpack.unpackb(values[b"m"])
    return frame if isinstance(frame, dict) else {}


async def retention_cut(batcher: Batcher, room: str, min_ts: int | None,
                        max_bytes: int | None) -> tuple[int, int] | None:
    """(the oldest seq in the stream, the lowest seq to keep), or None if nothing has to
    go — the rule of ``Store.retention_cut``."""
    log_key = keys.room_log(room)
    oldest, newest = await asyncio.gather(
        batcher.call("XRANGE", log_key, "-", "+", "COUNT", 1),
        batcher.call("XREVRANGE", log_key, "+", "-", "COUNT", 1))
    if not oldest or not newest:
        return None
    first, latest = _seq(oldest[0][0]), _seq(newest[0][0])
    if first >= latest:
        return None
    cut = 0
    if min_ts is not None:
        cut = latest
        start: bytes | str = "-"
        while cut == latest:
            page = await batcher.call("XRANGE", log_key, start, "+", "COUNT", PAGE)
            young = next((_seq(i) for i, f in page if _frame(f).get("ts", 0) >= min_ts), None)
            if young is not None:
                cut = young
                break
            if len(page) < PAGE:
                break
            start = b"(" + page[-1][0]
    if max_bytes is not None:
        total, end = 0, b"+"
        while True:
            page = await batcher.call("XREVRANGE", log_key, end, "-", "COUNT", PAGE)
            over = None
            for entry_id, fields in page:
                text = _frame(fields).get("text")
                total += len(text.encode()) if isinstance(text, str) else 0
                if total > max_bytes:
                    over = _seq(entry_id)
                    break
            if over is not None:
                cut = max(cut, over + 1)
                break
            if len(page) < PAGE:
                break
            end = b"(" + page[-1][0]
    cut = min(cut, latest)
    return (first, cut) if cut > first else None


async def rooms(batcher: Batcher) -> list[str]:
    """Every room with a stream in Redis (not the shared records' log)."""
    names: list[str] = []
    cursor: int | bytes = 0
    head, tail = len(keys.PREFIX) + 1, -len("}:log")
    while True:
        cursor, found = await batcher.call("SCAN", cursor, "MATCH", LOG_PATTERN,
                                           "COUNT", SCAN_COUNT)
        for key in found:
            name = key.decode()[head:tail]
            if name != keys.STATE and keys.room_log(name) == key.decode():
                names.append(name)
        if int(cursor) == 0:
            return sorted(set(names))


async def prune_once(batcher: Batcher, config: ServerConfig,
                     now_ms: int | None = None) -> int:
    """One pass over every room's stream; how many messages were dropped."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    min_ts = now_ms - int(config.retention_days * 86_400_000) if config.retention_days else None
    max_bytes = config.retention_bytes or None
    dropped = 0
    for room in await rooms(batcher):
        cut = await retention_cut(batcher, room, min_ts, max_bytes)
        if cut is not None:
            dropped += int(await batcher.call("XTRIM", keys.room_log(room), "MINID",
                                              f"{cut[1]}-0"))
    if dropped:
        log.info("retention: dropped %d old messages from the cluster's rooms", dropped)
    return dropped


class ClusterRetention:
    """Runs ``prune_once`` every ``retention_interval`` on the node holding the lease."""

    def __init__(self, node: ClusterNode, config: ServerConfig) -> None:
        self._batcher = node.broker.batcher
        self.config = config
        # A pass may take a while on big rooms: the lease outlives a few of its waits.
        self.lease = Lease(self._batcher, LEASE, holder=node.node_id, ttl=30.0)
        self._keeper: asyncio.Task[None] | None = None
        self._passes: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._keeper = asyncio.create_task(self.lease.keep(self._acquired, self._lost),
                                           name="cfm-retention-lease")

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None
        await self._lost()

    async def _acquired(self) -> None:
        self._passes = asyncio.create_task(self._run(), name="cfm-retention")

    async def _lost(self) -> None:
        passes, self._passes = self._passes, None
        if passes is not None:
            passes.cancel()
            await asyncio.gather(passes, return_exceptions=True)

    async def _run(self) -> None:
        while self.lease.held:
            try:
                await prune_once(self._batcher, self.config)
            except Exception as exc:
                log.log(level(exc), "retention pass failed (%s); trying again next time",
                        exc)
            await asyncio.sleep(self.config.retention_interval)
