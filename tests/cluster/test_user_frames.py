"""Frames for one user's sessions on other nodes (Broker.follow_user / send_to_user),
against a real redis-server: only the nodes that follow the user get them, with the
sending node named; a follow outlives a reconnect of the pub/sub connection."""

from __future__ import annotations

import asyncio
from typing import Any

from cfm_server.cluster.broker import Broker
from tests.cluster.helpers import wait_until
from tests.cluster.proxy import FaultyProxy


async def node(url: str, name: str, made: list[Broker], **kwargs: Any) -> Broker:
    got: list[tuple[str, str, bytes]] = []
    broker = Broker(url, node=name, on_message=lambda *a: None,
                    on_user_frame=lambda *f: got.append(f), **kwargs)
    broker.got = got  # type: ignore[attr-defined]
    await broker.start()
    made.append(broker)
    return broker


async def test_only_the_nodes_that_follow_a_user_get_its_frames(redis) -> None:
    made: list[Broker] = []
    try:
        a, b, c = [await node(redis.url, n, made) for n in ("a", "b", "c")]
        await b.follow_user("alice")
        await c.follow_user("bob")
        await a.send_to_user("alice", b"\x81\xa1t\xa7contact")
        await a.send_to_user("carol", b"nobody follows carol")
        await wait_until(lambda: b.got, "alice's frame at b")
        assert b.got == [("alice", "a", b"\x81\xa1t\xa7contact")]
        await b.unfollow_user("alice")
        await a.send_to_user("alice", b"after unfollow")
        await a.send_to_user("bob", b"for bob")
        await wait_until(lambda: c.got, "bob's frame at c")
        assert c.got == [("bob", "a", b"for bob")] and len(b.got) == 1
    finally:
        for broker in made:
            await broker.close()


async def test_a_follow_outlives_a_reconnect(redis) -> None:
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    made: list[Broker] = []
    try:
        sender = await node(redis.url, "a", made)
        follower = await node(proxy.url, "b", made, socket_timeout=1.0, ping_interval=0.2,
                              ping_timeout=0.5, backoff=(0.05, 0.2))
        await follower.follow_user("alice")
        connects = follower.subscriber.connects
        proxy.cut()
        await wait_until(lambda: follower.subscriber.connects > connects
                         and follower.subscriber.connected, "a new pub/sub connection")

        async def sent_and_seen() -> bool:
            # Frames are at most once: send until one arrives on the new connection.
            await sender.send_to_user("alice", b"after")
            return bool(follower.got)

        for _ in range(100):
            if await sent_and_seen():
                break
            await asyncio.sleep(0.02)
        assert follower.got and all(f == ("alice", "a", b"after") for f in follower.got)
    finally:
        for broker in made:
            await broker.close()
        await proxy.close()
