"""A sign-up whose account Redis stored but whose reply the node lost (its link to Redis
cut right after the script ran): the client's retry of the same claim signs in.

Before, the hello was answered ``internal`` and the handle stayed taken by an account
nobody held the token of: every retry got ``name_taken``, and only ``cfm admin
remove-user`` freed it. Now the client claims with a secret of its own (``hello.claim``,
the SDK makes one) that becomes the account's token, so a retry with it is that
account's sign-in; anybody else still finds the handle taken. Real nodes, a real
redis-server, and the loopback proxy that loses the reply (tests/cluster/proxy.py).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from cfm_server.cluster import keys
from tests.cluster.proxy import FaultyProxy
from tests.cluster.redis_proc import RedisProcess
from tests.wire import WireClient, eventually, signed_in


async def hello(url: str, name: str, **keys_: Any) -> dict[str, Any]:
    async with WireClient.connect(url) as client:
        return await client.hello(name, **keys_)


async def lost_sign_up(redis: RedisProcess, server_factory: Any, name: str,
                       claim: str) -> tuple[Any, FaultyProxy]:
    """A node over a proxy that loses the reply to ``name``'s creation; ``name`` claimed
    there with ``claim``: answered ``internal`` (with ``retry_ms``), stored in Redis."""
    from redis.asyncio import Redis

    proxy = FaultyProxy(redis.port)
    await proxy.start()
    node = await server_factory(redis_url=proxy.url, node_id="n1")
    proxy.freeze_after(f"u:{name}".encode())
    async with WireClient.connect(node.url) as client:
        await client.send({"t": "hello", "v": 1, "name": name, "claim": claim})
        first = await client.recv(timeout=30)  # (the node waits for Redis's reply 5 s)
    assert first["t"] == "error" and first["code"] == "internal", first
    assert first.get("retry_ms"), first  # the outage's hint: retry after that long
    direct = Redis.from_url(redis.url)
    try:
        assert await direct.hexists(keys.state_records(), f"u:{name}")  # stored all the same
    finally:
        await direct.aclose()
    await eventually(lambda: not node.node.unreachable(), timeout=30)
    return node, proxy


async def test_the_same_claim_tried_again_signs_in_and_nobody_else_does(
        redis: RedisProcess, server_factory: Any) -> None:
    claim = secrets.token_urlsafe(32)
    node, proxy = await lost_sign_up(redis, server_factory, "dora", claim)
    try:
        again = await hello(node.url, "dora", claim=claim)
        assert again["t"] == "welcome" and again["token"] == claim, again
        # Another person: no token, another claim, a wrong token.
        for keys_, code in (({}, "name_taken"), ({"claim": secrets.token_urlsafe(32)},
                                                 "name_taken"),
                            ({"token": secrets.token_urlsafe(32)}, "bad_token")):
            refused = await hello(node.url, "dora", **keys_)
            assert refused["t"] == "error" and refused["code"] == code, (keys_, refused)
        # The claim is the token from now on.
        assert (await hello(node.url, "dora", token=claim))["t"] == "welcome"
    finally:
        await proxy.close()


async def test_the_claim_tried_on_another_node_signs_in(
        redis: RedisProcess, server_factory: Any) -> None:
    claim = secrets.token_urlsafe(32)
    _, proxy = await lost_sign_up(redis, server_factory, "eve", claim)
    try:
        other = await server_factory(redis_url=redis.url, node_id="n2")
        async with WireClient.connect(other.url) as eve:
            again = await eve.hello("eve", claim=claim)
            assert again["t"] == "welcome" and again["token"] == claim, again
            # Signed in like any session: the node follows her (frames for her from
            # other users reach her), as for a hello with the token.
            async with signed_in(other.url, "finn") as finn:
                await finn.send({"t": "contact", "op": "add", "name": "eve", "id": "c"})
                told = await eve.recv_until("contact", op="added_you", timeout=10)
                assert told["name"] == "finn", told
    finally:
        await proxy.close()


async def test_a_create_refused_by_the_same_claims_account_is_done(nodes) -> None:
    """The retry reaching a node that has not applied the account yet: its create is
    refused by the record the lost one stored, which is this claim's (the same token
    hash): done, not ``IdentityTaken``. Another claim's create is still refused."""
    from cfm_server.domain.signin import hash_token
    from cfm_server.store import IdentityTaken, UserRecord

    a = await nodes()
    claim = secrets.token_urlsafe(32)
    first = UserRecord("finn", hash_token(claim), "finn", "", "online", False, 1)
    await a.hub.world.writes.create_user(first)
    retry = UserRecord("finn", hash_token(claim), "Finn", "", "online", False, 2)
    await a.hub.world.writes.create_user(retry)  # no IdentityTaken
    other = UserRecord("finn", hash_token(secrets.token_urlsafe(32)), "x", "", "online",
                       False, 3)
    try:
        await a.hub.world.writes.create_user(other)
    except IdentityTaken:
        pass
    else:
        raise AssertionError("another claim's create was not refused")


async def test_the_sdk_signs_up_through_a_lost_reply(
        redis: RedisProcess, server_factory: Any, tmp_path: Path) -> None:
    """``Client.connect(wait=True)``: the SDK retries the claim after ``internal`` and
    gets the account Redis stored (it used to end with ``name_taken``)."""
    import asyncio

    from cfm_common.client import Client
    from cfm_server.domain.signin import hash_token

    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        node = await server_factory(redis_url=proxy.url, node_id="n1")
        proxy.freeze_after(b"u:gwen")
        token_file = tmp_path / "gwen.token"
        client = Client(node.url, "gwen", token_file=token_file)
        try:
            welcome = await asyncio.wait_for(client.connect(wait=True), 60)
        finally:
            await client.close()
        assert welcome.name == "gwen"
        assert token_file.read_text().strip() == welcome.token
        assert node.hub.world.users["gwen"].record.token_hash == hash_token(welcome.token)
    finally:
        await proxy.close()
