"""Retention: drop each room's old messages, by age and by size, as configured.

By default nothing is dropped (``retention_days`` and ``retention_bytes`` are 0). With
either set, ``cfm serve`` runs :func:`run_retention` in the background: once at start
and every ``retention_interval`` seconds it asks the store, room by room, for the lowest
seq to keep — nothing older than ``retention_days``, at most ``retention_bytes`` of text
per room — and deletes what lies below it, a chunk at a time so other users' messages
keep flowing. A room's latest message always stays: its seq is the room's sequence, so
numbering never restarts and resuming clients never mistake a new message for an old
one. Clients that ask for history below the cut get what is left (the SDK skips the gap).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cfm_server.config import ServerConfig
    from cfm_server.hub import Hub

log = logging.getLogger(__name__)

# Messages deleted per statement: each chunk is one write in the group commit.
CHUNK = 2000


def enabled(config: ServerConfig) -> bool:
    return config.retention_days > 0 or config.retention_bytes > 0


async def prune_once(hub: Hub, config: ServerConfig, now_ms: int | None = None) -> int:
    """One pass over every room; how many messages were deleted."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    min_ts = now_ms - int(config.retention_days * 86_400_000) if config.retention_days else None
    max_bytes = config.retention_bytes or None
    store = hub.store
    deleted = 0
    for room in list(hub.rooms):
        cut = store.retention_cut(room, min_ts, max_bytes)
        if cut is not None:
            first, keep_from = cut
            for below in range(min(first + CHUNK, keep_from), keep_from + CHUNK, CHUNK):
                await store.delete_before(room, min(below, keep_from))
            deleted += keep_from - first
        await asyncio.sleep(0)  # one room per loop turn at most
    if deleted:
        log.info("retention: deleted about %d old messages", deleted)
    return deleted


async def run_retention(hub: Hub, config: ServerConfig) -> None:
    """Prune now and then every ``retention_interval`` seconds, until cancelled."""
    while True:
        try:
            await prune_once(hub, config)
        except Exception:
            log.exception("retention pass failed; trying again next time")
        await asyncio.sleep(config.retention_interval)
