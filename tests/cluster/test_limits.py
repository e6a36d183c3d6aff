"""Limits and the presence grace across two real nodes (cfm_server/cluster/limits.py,
nodepresence.py): a user's budget follows it from one node to two and back, the
switch between the node's own buckets and Redis's, the grace ended once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from tests.cluster.helpers import wait_until
from tests.wire import WireClient, signed_in

# Five says, then (next to) none: one more every 1,000 s.
NODE_DEFAULTS = {"user_say_burst": 5, "user_say_rate": 0.001}


def answers(client: WireClient) -> list[str]:
    return [f.get("code", "ack") for f in client.seen if f["t"] in ("ack", "error")]


async def say(client: WireClient, ids: range, room: str = "#den") -> list[str]:
    """Send a say per id; the answers (``ack`` or the error's code), sorted (a refusal
    goes out at once, an ack once Redis stored the message)."""
    client.seen.clear()
    for n in ids:
        await client.send({"t": "say", "room": room, "text": "x", "id": f"m{n}"})
    while len(answers(client)) < len(ids):
        await client.recv()
    return sorted(answers(client))


async def soon(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(250):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not in time: {what}")


def limits(node: Any) -> Any:
    return node.node.present.limits


async def test_a_users_budget_follows_it_to_a_second_node_and_back(nodes, redis) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#den"})
        await alice.recv_until("joined")
        assert await say(alice, range(3)) == ["ack"] * 3  # on a alone: a's own bucket
        assert not limits(a).spread("alice")
        async with signed_in(b.url, "alice", token=alice.token) as second:
            await wait_until(lambda: limits(a).spread("alice") and limits(b).spread("alice"),
                             "both nodes count alice in Redis")
            # a handed its count (2 left) to Redis before b spends from it.
            client = Redis.from_url(redis.url)
            try:
                await soon(lambda: client.exists("cfm:{user:alice}:limit:say"),
                           "a's count in Redis")
            finally:
                await client.aclose()
            assert await say(second, range(10, 14)) == ["ack", "ack"] + ["rate_limited"] * 2
            assert await say(alice, range(20, 22)) == ["rate_limited"] * 2
        # Back on a alone: a goes on from Redis's count, not from its own old one.
        await wait_until(lambda: not limits(a).spread("alice"), "a counts alice alone")
        await wait_until(lambda: not limits(b).spread("alice"), "b forgot alice")
        assert await say(alice, range(30, 32)) == ["rate_limited"] * 2


async def test_a_user_on_one_node_is_counted_on_it_alone(nodes, redis) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob"):
        await alice.send({"t": "join", "room": "#den"})
        await alice.recv_until("joined")
        assert await say(alice, range(7)) == ["ack"] * 5 + ["rate_limited"] * 2
        client = Redis.from_url(redis.url)
        try:  # the limit script writes the bucket's key whenever it runs
            assert await client.keys("cfm:{user:alice}:limit:*") == []
        finally:
            await client.aclose()


async def test_the_grace_ends_once_when_a_sign_in_elsewhere_fails(nodes) -> None:
    a, b = await nodes(presence_grace=0.3), await nodes(presence_grace=0.3)
    async with signed_in(a.url, "bob") as bob:
        async with signed_in(a.url, "alice") as alice:
            token = alice.token
            await bob.send({"t": "contact", "op": "add", "name": "alice"})
            await bob.recv_until("contact", op="add", status="online")
        # Within the grace, a hello for alice on b with a wrong token: b holds her as
        # going offline (her grace mark is set) and ends that itself.
        async with WireClient.connect(b.url) as wrong:
            assert (await wrong.hello("alice", token=token[::-1]))["code"] == "bad_token"
        assert (await bob.recv_until("presence", name="alice"))["status"] == "offline"
        await bob.expect_silence("presence", timeout=0.6)  # told once, by one node
        async with signed_in(b.url, "alice", token=token):
            # After the grace, a sign-in on the other node is news again.
            assert (await bob.recv_until("presence", name="alice"))["status"] == "online"


async def none_more_fits(urls: tuple[str, ...], via: dict[str, Any]) -> None:
    """Another connection from the address is answered 429 on each of ``urls``."""
    for url in urls:
        try:
            extra = await WireClient.open(url, **via)
        except Exception as exc:  # websockets' InvalidStatus
            assert exc.response.status_code == 429  # type: ignore[attr-defined]
        else:
            await extra.close()
            raise AssertionError(f"one more connection was let in on {url}")


async def test_connections_per_address_are_counted_over_the_nodes(nodes) -> None:
    settings = {"trusted_proxies": ["127.0.0.1"], "max_conns_per_ip": 2}
    a, b = await nodes(**settings), await nodes(**settings)
    via = {"additional_headers": {"X-Forwarded-For": "198.51.100.7"}}
    first = await WireClient.open(a.url, **via)
    second = await WireClient.open(b.url, **via)
    try:
        await none_more_fits((a.url, b.url), via)
        await first.close()
        # Taken back when it closed: one more fits again (on either node).
        async def fits() -> bool:
            try:
                client = await WireClient.open(b.url, **via)
            except Exception:
                return False
            await client.close()
            return True
        await soon(fits, "the closed connection taken back")
    finally:
        await second.close()


async def test_a_handshake_dropped_before_its_answer_leaves_no_count(nodes) -> None:
    """A client that hangs up right after sending its upgrade (websockets then runs no
    handler) must not hold its address's count: a few dozen such drops would shut the
    address out of every node for as long as the node runs."""
    settings = {"trusted_proxies": ["127.0.0.1"], "max_conns_per_ip": 2}
    a = await nodes(**settings)
    await nodes(**settings)
    port = int(a.url.rsplit(":", 1)[1].split("/", 1)[0])
    upgrade = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               b"Sec-WebSocket-Protocol: cfm.v1\r\nX-Forwarded-For: 198.51.100.9\r\n\r\n")
    for n in range(12):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade)
        await writer.drain()
        if n % 2:  # RST rather than FIN
            writer.transport.abort()
        else:
            writer.close()
        await writer.wait_closed()
    via = {"additional_headers": {"X-Forwarded-For": "198.51.100.9"}}
    held: list[WireClient] = []

    async def fits() -> bool:
        try:
            held.append(await WireClient.open(a.url, **via))
        except Exception:  # 429 while the dropped handshakes are still counted
            return False
        return True

    try:
        await soon(fits, "the dropped handshakes' counts taken back")
        await soon(fits, "room for a second connection")
    finally:
        for client in held:
            await client.close()
