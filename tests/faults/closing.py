"""Reading a raw connection to its end, keeping every frame (``WireClient.wait_closed``
drops them)."""

from __future__ import annotations

import asyncio
import contextlib

from websockets.exceptions import ConnectionClosed

from tests.wire import WireClient


async def read_until_closed(client: WireClient, timeout: float = 5.0) -> int | None:
    """Read until the server closes; the close code. Every frame goes to ``client.seen``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with contextlib.suppress(ConnectionClosed):
        while loop.time() < deadline:
            await client.recv(max(0.01, deadline - loop.time()))
        raise TimeoutError(f"connection still open after {timeout}s")
    return client.ws.close_code
