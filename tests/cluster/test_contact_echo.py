"""A contact's echo says the added user's status as it is when the add is confirmed,
not when it arrived: a sign-in of the added user in between reaches the adder first (the
contact counts at once), and an echo worked out before it would then undo it on the
adder's roster. Two real nodes over one real redis-server; node b's link to Redis is
slowed by a loopback proxy, so that alice's sign-in on node a reaches node b while
bob's add (made on b) is still on its way to Redis and back."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.cluster.proxy import FaultyProxy
from tests.wire import WireClient, eventually, signed_in


def alice_as_bob_sees_her(frames: list[dict[str, Any]]) -> str | None:
    """Bob's roster entry for alice after these frames, applied in order."""
    status = None
    for frame in frames:
        if frame.get("t") in ("presence", "contact") and frame.get("name") == "alice":
            status = frame.get("status", status)
    return status


async def test_the_echo_of_an_add_does_not_undo_a_sign_in_told_before_it(
        server_factory, redis) -> None:
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        a = await server_factory(redis_url=redis.url, node_id="n1", presence_grace=0)
        b = await server_factory(redis_url=proxy.url, node_id="n2", presence_grace=0)
        async with signed_in(a.url, "alice") as alice:
            token = alice.welcome["token"]
        await eventually(lambda: "alice" in b.hub.users and not b.hub.users["alice"].online,
                         timeout=10)
        async with signed_in(b.url, "bob") as bob:
            proxy.delay = 0.3  # b's calls take 0.6 s there and back, its publishes 0.3 s
            await bob.send({"t": "contact", "op": "add", "name": "alice", "id": "c1"})
            # b reads the head of the records' log first (a read barrier), then handles
            # the add (the contact counts at once) and writes it: 0.6 s to Redis and back,
            # while alice's sign-in reaches b 0.3 s after it is made.
            await eventually(lambda: "alice" in b.hub.users["bob"].contacts, timeout=10)
            async with WireClient.connect(a.url) as again:
                welcome = await again.hello("alice", token=token)
                assert welcome["t"] == "welcome", welcome
                frames = []
                while not any(f.get("t") == "contact" for f in frames):
                    frames.append(await bob.recv(timeout=10))
                await asyncio.sleep(1.0)  # anything else b has for bob
                while True:
                    try:
                        frames.append(await bob.recv(timeout=0.2))
                    except TimeoutError:
                        break
                assert alice_as_bob_sees_her(frames) == "online", frames
    finally:
        await proxy.close()
