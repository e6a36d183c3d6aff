"""A node in its own process for the presence test: registers sessions, beats, waits.

    python -m tests.cluster.presence_node URL NODE EXPIRY USER [USER ...]

Prints "ready" once its sessions are registered, then beats until it is killed.
"""

from __future__ import annotations

import asyncio
import sys

from cfm_server.cluster.broker import Broker
from cfm_server.cluster.presence import Presence


async def main(url: str, node: str, expiry: float, users: list[str]) -> None:
    broker = Broker(url, node=node, on_message=lambda *_: None)
    await broker.start()
    presence = Presence(broker.batcher, node, expiry=expiry)
    await presence.start()
    for user in users:
        await presence.session_up(user)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]))
