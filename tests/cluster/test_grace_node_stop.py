"""A user whose last session ended on a node that then stops within the presence grace
(a rolling restart: someone quit just before their node was restarted) is told offline
to the watchers on the other nodes once the grace is over: every node that heard the
user's ``off`` holds the grace too, and Redis lets one of them tell. (The grace's timer
used to run only on the user's node and went with it: the watchers elsewhere saw the
user online until the user's next change.) Real ``cfm serve --redis`` processes."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from redis.asyncio import Redis

from cfm_server.cluster import keys
from tests.cluster.redis_proc import RedisProcess
from tests.server.serve_proc import serve
from tests.wire import signed_in


def node_args(redis: RedisProcess, node: str, data: Path) -> tuple[str, ...]:
    return ("--redis", redis.url, "--node-id", node, "--data-dir", str(data / node),
            "--set", "presence_grace=3")


async def test_offline_is_told_when_the_users_node_stops_within_the_grace(
        redis: RedisProcess, tmp_path: Path) -> None:
    async with serve(*node_args(redis, "ga", tmp_path)) as a, \
            serve(*node_args(redis, "gb", tmp_path)) as b, signed_in(b.url, "bob") as bob:
        async with signed_in(a.url, "alice"):
            await bob.send({"t": "contact", "op": "add", "name": "alice"})
            echo = await bob.recv_until("contact", op="add")
            if echo["status"] == "offline":  # b had not heard of her sign-in yet
                await bob.recv_until("presence", name="alice", status="online")
        # Her session is counted out in Redis (her grace runs on a), then a stops.
        client = Redis.from_url(redis.url)
        try:
            for _ in range(500):
                if not await client.exists(keys.presence_user("alice")):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("alice's session was not counted out")
        finally:
            await client.aclose()
        a.proc.send_signal(signal.SIGTERM)
        assert await a.proc.wait() == 0
        told = await bob.recv_until("presence", name="alice", timeout=20)
        assert told["status"] == "offline", told
        await bob.expect_silence("presence", timeout=1)  # once
