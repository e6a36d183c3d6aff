"""The AI contacts' holder gives each persona a fresh token as it takes the lease; a
token whose write did not reach Redis is not live on the node (nor handed to the
persona): the node's record is Redis's, and the start is tried again once Redis is
back, the persona online then with a token Redis holds.

Before, the node's record took the new token at once whatever the write did: the node
and Redis disagreed about the persona (every other node, and this one after a reload,
had the old token). Real nodes, a real redis-server, and the loopback proxy that keeps
the write from reaching Redis and the node from reconnecting meanwhile
(tests/cluster/proxy.py). (A single node's twin: tests/server/
test_ai_provision_durable.py.)"""

from __future__ import annotations

from typing import Any

import msgpack

from cfm_server.cluster import keys
from tests.cluster.proxy import FaultyProxy
from tests.cluster.redis_proc import RedisProcess
from tests.wire import eventually

PERSONA = "clippo"


async def test_a_token_redis_did_not_store_is_not_live_and_the_start_is_tried_again(
        redis: RedisProcess, server_factory: Any) -> None:
    from redis.asyncio import Redis

    direct = Redis.from_url(redis.url)
    proxy = FaultyProxy(redis.port)
    await proxy.start()

    async def stored() -> str:
        value = await direct.hget(keys.state_records(), f"u:{PERSONA}")
        return str(msgpack.unpackb(value)[0])

    try:
        first = await server_factory(redis_url=redis.url, node_id="n1", ai_enabled=True,
                                     ai_lease_ttl=1.0)
        await eventually(lambda: bool(first.hub.users.get(PERSONA)
                                      and first.hub.users[PERSONA].sessions), 20)
        await first.stop(close_code=1001)  # gives the lease up
        before = await stored()
        # The next holder's write of the persona's token never reaches Redis, and its
        # node cannot reconnect until the proxy lets it.
        proxy.freeze_before_command(f"u:{PERSONA}".encode())
        node = await server_factory(redis_url=proxy.url, node_id="n2", ai_enabled=True,
                                    ai_lease_ttl=1.0)
        proxy.refusing = True  # (its links are open: the next one is its reconnect)
        await eventually(lambda: node.node.unreachable(), 30)
        assert await stored() == before
        assert node.hub.users[PERSONA].record.token_hash == before  # Redis's, not the lost
        assert not node.hub.users[PERSONA].sessions
        proxy.refusing = False
        await eventually(lambda: bool(node.hub.users[PERSONA].sessions), 60)
        now = await stored()
        assert now != before and node.hub.users[PERSONA].record.token_hash == now
    finally:
        await direct.aclose()
        await proxy.close()
