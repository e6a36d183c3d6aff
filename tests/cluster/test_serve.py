"""``cfm serve --redis``: two real nodes (in-process Servers) over one real redis-server,
each test's clients spread over both — a client cannot tell which node it is on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.cluster.redis_proc import RedisProcess
from tests.wire import WireClient, signed_in


@pytest.fixture
async def nodes(redis: RedisProcess, server_factory: Callable[..., Awaitable[Any]]
                ) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    made: list[Any] = []

    async def node(**overrides: Any) -> Any:
        server = await server_factory(redis_url=redis.url, node_id=f"n{len(made) + 1}",
                                      **overrides)
        made.append(server)
        return server

    yield node


async def test_an_account_made_on_one_node_signs_in_on_the_other(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice:
        token = alice.token
        async with signed_in(b.url, "bob"):
            pass
        await alice.send({"t": "contact", "op": "add", "name": "bob", "id": "c1"})
        await alice.recv_until("contact", ref="c1")
    async with WireClient.connect(b.url) as again:
        welcome = await again.hello("alice", token=token)
        assert welcome["t"] == "welcome", welcome
        assert [c["name"] for c in welcome["contacts"]] == ["bob"]
    # The handle is taken on every node: without the token, or claimed anew.
    async with WireClient.connect(b.url) as thief:
        refused = await thief.hello("alice")
        assert refused["t"] == "error" and refused["code"] == "name_taken"
    async with WireClient.connect(b.url) as wrong:
        refused = await wrong.hello("alice", token="not-it")
        assert refused["t"] == "error" and refused["code"] == "bad_token"


async def test_a_handle_claimed_on_both_nodes_at_once_goes_to_one(nodes) -> None:
    import asyncio

    a, b = await nodes(), await nodes()
    clients = [await WireClient.open(a.url), await WireClient.open(b.url)]
    try:
        replies = await asyncio.gather(*(c.hello("carol") for c in clients))
        kinds = sorted(r["t"] if r["t"] == "welcome" else r["code"] for r in replies)
        assert kinds == ["name_taken", "welcome"], replies
    finally:
        for client in clients:
            await client.close()
