"""Presence across nodes, and the lease: real Redis, a node killed for real."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

from redis.asyncio import Redis

from cfm_server.cluster import keys
from cfm_server.cluster.lease import Lease
from cfm_server.cluster.presence import Presence
from tests.cluster.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


async def changes_listener(url: str) -> tuple[list[str], asyncio.Task[None], Redis]:
    client = Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(keys.PRESENCE_CHANNEL)
    heard: list[str] = []

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                heard.append(message["data"].decode())

    return heard, asyncio.create_task(listen()), client


async def test_a_user_is_online_until_the_last_session_on_any_node_ends(broker_factory, redis):
    a = await broker_factory(node="a")
    b = await broker_factory(node="b")
    pa = Presence(a.batcher, "a")
    pb = Presence(b.batcher, "b")
    heard, listener, client = await changes_listener(redis.url)
    try:
        await pa.start()
        await pb.start()
        assert await pa.session_up("alice") is True
        assert await pb.session_up("alice") is False  # already online on a
        assert await pa.session_up("alice") is False  # a second session on a
        assert await pa.online(["alice", "bob"]) == {"alice"}
        assert await pa.session_down("alice") is False
        assert await pa.session_down("alice") is False  # b still holds one
        assert await pb.online(["alice"]) == {"alice"}
        assert await pb.session_down("alice") is True
        assert await pb.online(["alice"]) == set()
        await wait_until(lambda: len(heard) >= 2, "two presence changes")
        assert heard == ["on alice", "off alice"]
    finally:
        listener.cancel()
        await client.aclose()
        await pa.close()
        await pb.close()


async def test_a_killed_nodes_users_go_offline_unless_another_node_holds_them(
        broker_factory, redis):
    live = await broker_factory(node="live")
    presence = Presence(live.batcher, "live", expiry=1.5)
    await presence.start()
    await presence.session_up("alice")  # alice is on both nodes
    heard, listener, client = await changes_listener(redis.url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.cluster.presence_node", redis.url, "doomed", "1.5",
        "alice", "bob", "carol", cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
        assert await presence.online(["alice", "bob", "carol"]) == {"alice", "bob", "carol"}
        proc.kill()  # SIGKILL: no goodbye, only its heartbeats stop
        await proc.wait()
        await wait_until(lambda: len(heard) >= 4, "bob and carol offline")
        assert sorted(heard) == ["gone bob", "gone carol", "on bob", "on carol"]
        assert await presence.online(["alice", "bob", "carol"]) == {"alice"}
        assert await client.zscore(keys.PRESENCE_NODES, "doomed") is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        listener.cancel()
        await client.aclose()
        await presence.close()


async def test_a_node_reaped_while_alive_registers_its_sessions_again(broker_factory, redis):
    a = await broker_factory(node="slow")
    b = await broker_factory(node="other")
    slow = Presence(a.batcher, "slow", expiry=60)
    other = Presence(b.batcher, "other", expiry=60)
    await slow.rejoin()
    await other.rejoin()
    await slow.session_up("dave")
    client = Redis.from_url(redis.url)
    try:
        await client.zadd(keys.PRESENCE_NODES, {"slow": 0})  # as if its beats were late
    finally:
        await client.aclose()
    assert await other.beat() == ["dave"]  # reaped by the other node
    assert await other.online(["dave"]) == set()
    assert await slow.beat() == []  # ...which the slow node notices, and rejoins
    assert await other.online(["dave"]) == {"dave"}
    assert await slow.session_up("erin") is True  # and it goes on counting
    assert await slow.session_down("dave") is True


async def test_the_lease_passes_on_when_its_holder_stops_renewing(broker_factory):
    a = await broker_factory(node="a")
    b = await broker_factory(node="b")
    first = Lease(a.batcher, "ai", holder="a", ttl=1.0)
    second = Lease(b.batcher, "ai", holder="b", ttl=1.0)
    assert await first.acquire() is True
    assert await second.acquire() is False
    assert await first.acquire() is True  # renewal by the holder
    # The holder dies without releasing: the lease is free once its ttl ran out.
    await wait_until(lambda: not first.held, "the first holder's validity to end")
    took: list[bool] = []

    async def try_second() -> None:
        took.append(await second.acquire())

    await wait_until_async(try_second, lambda: took[-1], "the second holder to take it")
    assert await first.acquire() is False


async def wait_until_async(action, condition, what: str) -> None:
    for _ in range(300):
        await action()
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_keep_hands_the_work_over_on_release_and_runs_it_once(broker_factory):
    a = await broker_factory(node="a")
    b = await broker_factory(node="b")
    working: list[str] = []
    log: list[str] = []

    def callbacks(name: str):
        async def on_acquired() -> None:
            working.append(name)
            log.append(f"+{name}")

        async def on_lost() -> None:
            working.remove(name)
            log.append(f"-{name}")
        return on_acquired, on_lost

    first = asyncio.create_task(
        Lease(a.batcher, "ai", holder="a", ttl=0.6).keep(*callbacks("a")))
    await wait_until(lambda: working == ["a"], "a to work")
    second = asyncio.create_task(
        Lease(b.batcher, "ai", holder="b", ttl=0.6).keep(*callbacks("b")))
    try:
        await wait_until(lambda: b.batcher.pipelines >= 3, "b to have tried a few times")
        assert working == ["a"]
        first.cancel()  # a stops and releases
        await asyncio.wait({first})
        await wait_until(lambda: working == ["b"], "b to take the work over")
        assert log == ["+a", "-a", "+b"]
    finally:
        second.cancel()
        await asyncio.wait({second})
    assert log == ["+a", "-a", "+b", "-b"]


async def test_a_holder_cut_off_from_redis_stops_before_another_takes_over(
        broker_factory, redis):
    from tests.cluster.proxy import FaultyProxy

    proxy = FaultyProxy(redis.port)
    await proxy.start()
    a = await broker_factory(proxy.url, node="a", socket_timeout=0.3, backoff=(0.05, 0.1))
    b = await broker_factory(node="b")
    working: list[str] = []
    overlaps: list[list[str]] = []

    def callbacks(name: str):
        async def on_acquired() -> None:
            if working:
                overlaps.append([*working, name])
            working.append(name)

        async def on_lost() -> None:
            working.remove(name)
        return on_acquired, on_lost

    first = asyncio.create_task(
        Lease(a.batcher, "ai", holder="a", ttl=0.9).keep(*callbacks("a")))
    try:
        await wait_until(lambda: working == ["a"], "a to work")
        second = asyncio.create_task(
            Lease(b.batcher, "ai", holder="b", ttl=0.9).keep(*callbacks("b")))
        proxy.refusing = True
        proxy.cut()  # a can no longer renew; its lease runs out in Redis
        await wait_until(lambda: working == ["b"], "b to take over")
        assert overlaps == []
        second.cancel()
        await asyncio.wait({second})
    finally:
        first.cancel()
        await asyncio.wait({first})
        await proxy.close()


async def test_a_node_restarted_before_any_node_reaped_it_says_its_old_users_are_gone(
        broker_factory, redis) -> None:
    node = await broker_factory(node="phoenix")
    first = Presence(node.batcher, "phoenix", expiry=1.5)
    await first.start()
    await first.session_up("alice")
    await first.session_up("bob")
    assert first._beats is not None
    first._beats.cancel()  # killed: no more beats, no goodbye (and no other node reaps)
    heard, listener, client = await changes_listener(redis.url)
    try:
        # Its next life, holding bob only, takes the id once the first's registration
        # expired (the claim waits for it: test_node_start.py).
        again = Presence(node.batcher, "phoenix", expiry=1.5)
        again.sessions["bob"] = 1
        await again.claim()
        await wait_until(lambda: heard, "alice gone")
        assert heard == ["gone alice"]
        assert await again.online(["alice", "bob"]) == {"bob"}
    finally:
        listener.cancel()
        await client.aclose()
        if first._beats is not None:
            first._beats.cancel()
