"""Searches waiting for a search index to catch up (the single node's and a cluster
node's index alike): each is answered once the index is no longer behind on the rooms it
reads, or at its deadline, whichever comes first; once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

POLL_S = 0.05  # how often waiting searches look at the watermarks again


class CatchUpWaiters:
    def __init__(self, behind: Callable[[Mapping[str, int]], int]) -> None:
        self._behind = behind  # how many of these rooms' messages the index has not yet
        self._waiters: list[tuple[dict[str, int], Callable[[], None], float]] = []
        self._poll_handle: asyncio.Handle | None = None

    def add(self, rooms: Mapping[str, int], callback: Callable[[], None],
            timeout_s: float) -> None:
        self._waiters.append((dict(rooms), callback, time.monotonic() + timeout_s))
        if self._poll_handle is None:
            self._poll_handle = asyncio.get_running_loop().call_later(POLL_S, self._poll)

    def clear(self) -> None:
        """The index is closing (the server stops: the waiting sessions are closing)."""
        if self._poll_handle is not None:
            self._poll_handle.cancel()
            self._poll_handle = None
        self._waiters.clear()

    def _poll(self) -> None:
        self._poll_handle = None
        now = time.monotonic()
        waiting = []
        for entry in self._waiters:
            rooms, callback, deadline = entry
            if now >= deadline or not self._behind(rooms):
                callback()
            else:
                waiting.append(entry)
        self._waiters = waiting
        if waiting:
            self._poll_handle = asyncio.get_running_loop().call_later(POLL_S, self._poll)
