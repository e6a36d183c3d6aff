"""Small helpers of the cluster tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

WAIT = 15.0  # generous: the machine may be busy; a bounded wait, never a sleep-as-sync


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def seqs(seen: list[tuple[str, int, str, bytes]], room: str) -> list[int]:
    return [seq for r, seq, _, _ in seen if r == room]
