"""A room's history lost by Redis under running nodes, and a join's replay while Redis
is out of reach: two real ``cfm serve --redis`` nodes over a real redis-server.

A room Redis lost (restarted without its AOF, its keys evicted or deleted) starts a new
epoch with its next message, on every node that follows it: clients resuming with
``join{since, epoch}`` or comparing ``welcome.rooms`` get a ``reset`` and the new
history, never a new seq 1 under the old epoch (docs/protocol.md, "Sequence"). A join
whose replay cannot be read is answered ``error{internal, retry_ms}`` without a
``joined`` that would tell the client its replay is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from cfm_common.client import Client
from cfm_common.errors import ServerRefused
from cfm_common.rules import CloseCode, ErrorCode
from cfm_server.cluster import keys
from tests.cluster.helpers import wait_until
from tests.cluster.proxy import FaultyProxy
from tests.cluster.redis_proc import RedisProcess
from tests.sdk.conftest import Recorder
from tests.wire import WireClient, signed_in

ROOM = "#lost"
NODE = {"search_index": False}
# How Redis lost the room: with everything (FLUSHALL, as a Redis restarted without its
# AOF), its keys (deleted, evicted), or only its meta (its stream kept).
LOSSES = {
    "flushall": ("FLUSHALL",),
    "history": ("DEL", keys.room_meta(ROOM), keys.room_log(ROOM), keys.room_ids(ROOM),
                keys.room_changes(ROOM)),
    "meta": ("DEL", keys.room_meta(ROOM)),
}


async def redis_call(redis: RedisProcess, *command: Any) -> Any:
    client = Redis.from_url(redis.url)
    try:
        return await client.execute_command(*command)
    finally:
        await client.aclose()


async def join(client: WireClient, **keys_: Any) -> dict[str, Any]:
    await client.send({"t": "join", "room": ROOM, **keys_})
    return await client.recv_until("joined", room=ROOM)


async def say(client: WireClient, text: str) -> dict[str, Any]:
    await client.send({"t": "say", "room": ROOM, "text": text, "id": text})
    return await client.recv_until("ack", id=text)


def entry_of(welcome: dict[str, Any]) -> tuple[int, str]:
    entry = next(r for r in welcome["rooms"] if r["room"] == ROOM)
    return entry["seq"], entry["epoch"]


@pytest.mark.parametrize("lost", sorted(LOSSES))
async def test_a_room_redis_lost_starts_a_new_epoch_on_every_node(nodes, redis, lost) -> None:
    a, b = await nodes(**NODE), await nodes(**NODE)
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        old = (await join(alice))["epoch"]
        await join(bob)
        for i in range(3):
            await say(alice, f"m{i}")
        assert [m["seq"] for m in await bob.recv_n("msg", 3)] == [1, 2, 3]
        await redis_call(redis, *LOSSES[lost])

        first = 4 if lost == "meta" else 1  # a kept stream: seqs go on after it
        await alice.send({"t": "say", "room": ROOM, "text": "new", "id": "new"})
        # Every session of the room that knew its old history is closed with 1012 (the
        # epoch changed, and nothing live says so), the sender's too, its ack perhaps
        # first: they resume against the new history.
        assert await bob.wait_closed() == CloseCode.SERVICE_RESTART
        assert await alice.wait_closed() == CloseCode.SERVICE_RESTART
        new = (await redis_call(redis, "HGET", keys.room_meta(ROOM), "epoch")).decode()
        assert new != old  # (it was the old one: the node proposed the epoch it knew)

        # Both nodes say so to a client that resumes: a new epoch, the new seq, the new
        # history (the message that began it stored once, whatever its sender heard).
        texts = ["m0", "m1", "m2", "new"] if lost == "meta" else ["new"]
        for node in (a, b):
            async with signed_in(node.url, "bob", token=bob.token) as again:
                assert entry_of(again.welcome) == (first, new)
                joined = await join(again, since=3, epoch=old, id="j")
                assert (joined["seq"], joined["epoch"], joined.get("reset")) == (
                    first, new, True)
                replay = await again.recv_n("msg", first)
                assert [m["text"] for m in replay] == texts
        async with signed_in(a.url, "alice", token=alice.token) as alice_again:
            assert (await say(alice_again, "new"))["seq"] == first  # its retry: the ack
            await join(alice_again, since=first, epoch=new)
            assert (await say(alice_again, "next"))["seq"] == first + 1


async def test_a_node_that_follows_a_lost_room_again_adopts_its_new_epoch(nodes, redis) -> None:
    """Node b stops following the room (its only member there signs out), Redis loses
    the room, bob signs in there again (the subscription finds no epoch in Redis); then
    the room's next message starts the new epoch there too."""
    a, b = await nodes(**NODE), await nodes(**NODE)
    async with signed_in(a.url, "alice") as alice:
        old = (await join(alice))["epoch"]
        async with signed_in(b.url, "bob") as bob:
            await join(bob)
            for i in range(3):
                await say(alice, f"m{i}")
            await bob.recv_n("msg", 3)
            token = bob.token
        await wait_until(lambda: ROOM not in b.node.broker.subscribed, "b stops following")
        await redis_call(redis, *LOSSES["history"])
        async with signed_in(b.url, "bob", token=token) as bob:
            assert entry_of(bob.welcome) == (3, old)  # nothing stored in Redis yet
            await alice.send({"t": "say", "room": ROOM, "text": "new", "id": "new"})
            # b takes the new epoch in: bob's session, told seq 3 of the old one, is
            # closed to resume (1012).
            assert await bob.wait_closed() == CloseCode.SERVICE_RESTART
            new = (await redis_call(redis, "HGET", keys.room_meta(ROOM), "epoch")).decode()
            assert new != old
            async with signed_in(b.url, "bob", token=token) as again:
                assert entry_of(again.welcome) == (1, new)


@contextlib.asynccontextmanager
async def program_in_room(url: str) -> AsyncIterator[tuple[Client, Recorder]]:
    """Bob's program (the SDK) signed in at ``url`` and in the room, its events recorded."""
    bob = Client(url, "bob", token_file=False)
    record = Recorder(bob)
    try:
        await bob.connect()
        await bob.join(ROOM)
        yield bob, record
    finally:
        await bob.close()


async def first_answer(client: WireClient, ref: str) -> dict[str, Any]:
    """The first frame that answers the request ``ref``."""
    for _ in range(100):
        frame = await client.recv()
        if frame.get("ref") == ref:
            return frame
    raise AssertionError(f"no answer to {ref}")


async def test_a_join_since_while_redis_is_out_of_reach_fails_before_its_joined(
        nodes, redis) -> None:
    a = await nodes(**NODE)
    async with signed_in(a.url, "alice") as alice:
        await join(alice)
        for i in range(3):
            await say(alice, f"m{i}")
        redis.kill()
        await alice.send({"t": "join", "room": ROOM, "since": 0, "id": "jq"})
        refused = await first_answer(alice, "jq")  # was joined{seq: 3, more: false}
        assert (refused["t"], refused["code"]) == ("error", "internal"), refused
        assert refused["retry_ms"] > 0
        await redis.start()  # its AOF: the room is back
        for attempt in range(200):  # as a client does: again after retry_ms
            await alice.send({"t": "join", "room": ROOM, "since": 0, "id": f"j{attempt}"})
            answer = await first_answer(alice, f"j{attempt}")
            if answer["t"] == "joined":
                break
            assert answer["code"] == "internal", answer
            await asyncio.sleep(answer["retry_ms"] / 1000)
        assert (answer["t"], answer["seq"], answer["more"]) == ("joined", 3, False)
        assert [m["text"] for m in await alice.recv_n("msg", 3)] == ["m0", "m1", "m2"]


async def test_an_sdk_join_refused_during_an_outage_and_the_messages_meanwhile_arrive(
        redis, server_factory) -> None:
    """Node a is cut off from Redis while alice writes on node b. Bob's program (the SDK,
    on node a) joins the room meanwhile: the call fails with the retryable error (it
    returned a ``joined`` saying nothing more was to come); once node a is back, bob
    has every message once, in order, and a join again replays nothing he has."""
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    a = await server_factory(redis_url=proxy.url, node_id="n1", **NODE)
    b = await server_factory(redis_url=redis.url, node_id="n2", **NODE)
    try:
        async with program_in_room(a.url) as (bob, record), \
                signed_in(b.url, "alice") as alice:
            await join(alice)
            await say(alice, "m1")
            await record.wait(lambda r: r.seqs(ROOM) == [1])
            proxy.refusing = True  # node a cannot reconnect either, for a while
            proxy.cut()
            await say(alice, "m2")
            await say(alice, "m3")
            with pytest.raises(ServerRefused) as refused:
                await bob.join(ROOM)
            assert refused.value.code == ErrorCode.INTERNAL and refused.value.retry_ms
            proxy.refusing = False
            await record.wait(lambda r: r.seqs(ROOM) == [1, 2, 3])
            joined = await bob.join(ROOM)
            assert (joined.seq, joined.more) == (3, False)
            assert [m.text for m in record.msgs(ROOM)] == ["m1", "m2", "m3"]
    finally:
        await proxy.close()


async def test_a_stream_without_its_meta_gets_a_new_epoch_whatever_the_node_proposes(
        broker_factory, redis) -> None:
    """A node that saw none of the room's messages proposes the epoch it knows (as for a
    room just made); the stream shows the room had a history: a new epoch all the same."""
    writer = await broker_factory()
    for i in range(3):
        done = await writer.submit(ROOM, "alice", f"m{i}", "text", f"m{i}", 1, epoch="known")
    assert (done.seq, done.epoch) == (3, "known")
    await redis_call(redis, "DEL", keys.room_meta(ROOM))
    later = await writer.submit(ROOM, "alice", "m3", "text", "m3", 1, epoch="known")
    assert later.seq == 4 and later.epoch != "known"


async def test_an_sdk_program_in_a_room_redis_lost_gets_the_new_history(nodes, redis) -> None:
    """Bob's program (the SDK) is in the room on node b when Redis loses it: closed with
    1012 when the new history begins, it resumes by itself and hands over the new
    history's messages (it dropped them as duplicates of seqs it had before)."""
    a, b = await nodes(**NODE), await nodes(**NODE)
    async with program_in_room(b.url) as (_, record):
        async with signed_in(a.url, "alice") as alice:
            await join(alice)
            for i in range(3):
                await say(alice, f"m{i}")
            await record.wait(lambda r: r.seqs(ROOM) == [1, 2, 3])
        await redis_call(redis, *LOSSES["flushall"])
        # Alice's program too: closed as well (it knew the old history), it sends again.
        async with Client(a.url, "alice", token=alice.token, token_file=False) as writer:
            await writer.say("new", room=ROOM)
            await writer.say("next", room=ROOM)
            await record.wait(lambda r: [m.text for m in r.msgs(ROOM)][-2:] == ["new", "next"])
        assert [m.text for m in record.msgs(ROOM)] == ["m0", "m1", "m2", "new", "next"]
