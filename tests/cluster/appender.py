"""A node in its own process for the concurrency test: appends N messages, prints acks.

    python -m tests.cluster.appender URL ROOM SENDER N

Waits for a line on stdin (so that two of them start together), then appends N messages
in bursts of 25 concurrent calls, and prints one JSON list of [id, seq, ts].
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from cfm_server.cluster.broker import Broker


async def main(url: str, room: str, sender: str, n: int) -> None:
    broker = Broker(url, node=sender, on_message=lambda *_: None)
    await broker.start()
    await asyncio.to_thread(sys.stdin.readline)
    acks = []
    for start in range(0, n, 25):
        ids = [f"{sender}-{i}" for i in range(start, min(n, start + 25))]
        done = await asyncio.gather(*(
            broker.append(room, sender, cid, "text", cid, int(time.time() * 1000))
            for cid in ids))
        acks += [[cid, d.seq, d.ts] for cid, d in zip(ids, done, strict=True)]
    await broker.close()
    print(json.dumps(acks), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
