"""A change of the shared records made while Redis is out of reach is refused, not
confirmed and lost: the sender gets ``error{internal, retry_ms, ref}``, neither node
keeps the change once Redis is back (nobody was told of it), and the same frame sent
again then does it. Two real nodes over one real redis-server, SIGKILLed and restarted
on its AOF; alice is on node 1, bob on node 2."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from tests.wire import WireClient, eventually, signed_in

DM = "dm:alice:bob"


async def answer_or_error(client: WireClient, asked: str, t: str,
                          **match: Any) -> dict[str, Any]:
    """The next ``error`` whose ``ref`` is ``asked``, or ``t`` frame matching ``match``."""
    while True:
        frame = await client.recv(timeout=10)
        if frame["t"] == "error" and frame.get("ref") == asked:
            return frame
        if frame["t"] == t and all(frame.get(k) == v for k, v in match.items()):
            return frame


async def refused_in_an_outage(redis: Any, nodes: list[Any], client: WireClient,
                               frame: dict[str, Any], ref: str) -> None:
    """Redis SIGKILLed: ``frame`` is answered ``internal`` with a ``retry_ms``; then
    Redis is started again on its AOF and both nodes are back on it."""
    redis.kill()
    await client.send(frame)
    error = await client.recv_until("error", ref=ref)
    assert error["code"] == "internal" and error["retry_ms"] > 0, error
    await redis.start()
    await eventually(lambda: not any(n.node.unreachable() for n in nodes), timeout=30)


async def done_when_retried(client: WireClient, frame: dict[str, Any], asked: str, t: str,
                            **match: Any) -> dict[str, Any]:
    """Send ``frame`` until it is answered ``t`` (an ``internal`` error: after its
    ``retry_ms``, as a client does)."""
    for _ in range(100):
        await client.send(frame)
        reply = await answer_or_error(client, asked, t, **match)
        if reply["t"] == t:
            return reply
        assert reply["code"] == "internal", reply
        await asyncio.sleep(reply["retry_ms"] / 1000)
    raise AssertionError(f"{frame} never done")


async def said(client: WireClient, frame: dict[str, Any]) -> dict[str, Any]:
    return await done_when_retried(client, frame, frame["id"], "ack", id=frame["id"])


async def wrote_to_alice(bob: WireClient, alice: WireClient) -> None:
    """bob's first DM to alice (seq 1), stored and delivered."""
    await said(bob, {"t": "say", "to": "alice", "text": "hi", "id": "b1"})
    await alice.recv_until("msg", text="hi")


async def welcome_on(node: Any, name: str, token: str) -> dict[str, Any]:
    """A new sign-in's welcome on ``node`` (which applied the shared records first)."""
    async with signed_in(node.url, name, token=token) as again:
        return again.welcome


async def test_a_block_during_an_outage_is_refused_and_holds_on_neither_node(
        nodes, redis) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        await wrote_to_alice(bob, alice)
        block = {"t": "contact", "op": "block", "name": "bob", "id": "blk"}
        await refused_in_an_outage(redis, [a, b], alice, block, "blk")
        for node in (a, b):
            assert "bob" not in node.hub.users["alice"].contacts
        assert (await welcome_on(b, "alice", alice.token))["contacts"] == []
        # Not blocked: bob's next message reaches alice in full.
        await said(bob, {"t": "say", "to": "alice", "text": "still there?", "id": "b2"})
        assert (await alice.recv_until("msg", room=DM, seq=2))["text"] == "still there?"
        echo = await done_when_retried(alice, block, "blk", "contact")
        assert echo["blocked"] is True and echo["ref"] == "blk"
        await eventually(lambda: b.hub.users["alice"].has_blocked("bob"))
        assert [c["name"] for c in (await welcome_on(b, "alice", alice.token))["contacts"]
                if c["blocked"]] == ["bob"]


async def test_a_contact_added_during_an_outage_is_refused_and_nobody_is_told(
        nodes, redis) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        add = {"t": "contact", "op": "add", "name": "bob", "id": "add"}
        await refused_in_an_outage(redis, [a, b], alice, add, "add")
        for node in (a, b):
            assert node.hub.users["alice"].contacts == {}
            assert "bob" not in node.hub.world.listed_by
        assert (await welcome_on(b, "alice", alice.token))["contacts"] == []
        await bob.expect_silence("contact")
        echo = await done_when_retried(alice, add, "add", "contact")
        assert echo["name"] == "bob" and echo["ref"] == "add"
        await bob.recv_until("contact", op="added_you", name="alice")
        assert [c["name"] for c in (await welcome_on(b, "alice", alice.token))["contacts"]
                ] == ["bob"]


async def test_a_personal_message_set_during_an_outage_is_refused_and_not_kept(
        nodes, redis) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice:
        psm = {"t": "presence", "psm": "exams"}
        await refused_in_an_outage(redis, [a, b], alice, psm, "presence")
        for node in (a, b):
            assert node.hub.users["alice"].record.psm == ""
        assert (await welcome_on(b, "alice", alice.token))["psm"] == ""
        await alice.expect_silence("presence")
        echo = await done_when_retried(alice, psm, "presence", "presence", name="alice")
        assert echo["psm"] == "exams"
        assert (await welcome_on(b, "alice", alice.token))["psm"] == "exams"


async def test_a_read_mark_moved_during_an_outage_is_refused_and_stays_where_it_was(
        nodes, redis) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        await wrote_to_alice(bob, alice)
        async with signed_in(b.url, "alice", token=alice.token) as elsewhere:
            read = {"t": "read", "room": DM, "seq": 1}
            await refused_in_an_outage(redis, [a, b], alice, read, "read")
            for node in (a, b):
                assert node.hub.users["alice"].reads.get(DM, 0) == 0
            rooms = (await welcome_on(b, "alice", alice.token))["rooms"]
            assert [r["read"] for r in rooms if r["room"] == DM] == [0]
            for other in (elsewhere, bob):
                await other.expect_silence("read")
            # Sent again (no answer to the sender when it is stored): her other session
            # and bob are told.
            for _ in range(100):
                await alice.send(read)
                try:
                    error = await alice.recv_until("error", ref="read", timeout=1)
                except TimeoutError:
                    break
                await asyncio.sleep(error["retry_ms"] / 1000)
            await elsewhere.recv_until("read", room=DM, seq=1)
            await bob.recv_until("read", room=DM, name="alice", seq=1)
            for node in (a, b):
                await eventually(lambda n=node: n.hub.users["alice"].reads.get(DM) == 1)


async def test_a_leave_during_an_outage_is_refused_and_the_user_stays_a_member_everywhere(
        nodes, redis) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        for client in (bob, alice):
            await client.send({"t": "join", "room": "#team", "id": "j"})
            await client.recv_until("joined", ref="j")
        await bob.recv_until("member", room="#team", name="alice", op="join")
        leave = {"t": "leave", "room": "#team", "id": "lv"}
        await refused_in_an_outage(redis, [a, b], alice, leave, "lv")
        for node in (a, b):
            assert "alice" in node.hub.rooms["#team"].members
        await bob.expect_silence("member")
        await alice.expect_silence("left")
        # Still a member on both nodes: her say is stored and reaches bob.
        await said(alice, {"t": "say", "room": "#team", "text": "still here", "id": "a1"})
        await bob.recv_until("msg", room="#team", text="still here")
        await done_when_retried(alice, leave, "lv", "left", ref="lv")
        await bob.recv_until("member", room="#team", name="alice", op="leave")
        for node in (a, b):
            await eventually(lambda n=node: "alice" not in n.hub.rooms["#team"].members)


async def test_a_join_during_an_outage_is_refused_and_the_user_is_a_member_nowhere(
        nodes, redis) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        await bob.send({"t": "join", "room": "#team", "id": "j"})
        await bob.recv_until("joined", ref="j")
        join = {"t": "join", "room": "#team", "id": "jn"}
        await refused_in_an_outage(redis, [a, b], alice, join, "jn")
        for node in (a, b):
            assert "alice" not in node.hub.rooms["#team"].members
        await bob.expect_silence("member")
        # A member on neither node: her say is refused on both.
        for node in (a, b):
            async with signed_in(node.url, "alice", token=alice.token) as there:
                await there.send({"t": "say", "room": "#team", "text": "hi", "id": "x"})
                refused = await answer_or_error(there, "x", "ack")
                assert refused["t"] == "error" and refused["code"] == "not_member", refused
        await done_when_retried(alice, join, "jn", "joined", ref="jn")
        await bob.recv_until("member", room="#team", name="alice", op="join")
        await said(alice, {"t": "say", "room": "#team", "text": "hi", "id": "a1"})
        await bob.recv_until("msg", room="#team", text="hi")


async def test_the_sdk_surfaces_a_refused_request_and_sends_presence_again_by_itself(
        nodes, redis) -> None:
    from cfm_common.client import Client
    from cfm_common.errors import ServerRefused

    a, b = await nodes(), await nodes()
    async with signed_in(b.url, "bob"), \
            Client(a.url, "alice", token_file=False) as alice:
        await alice.join("#mine")
        redis.kill()
        for request in (alice.contact("block", "bob"), alice.join("#team"),
                        alice.leave("#mine")):
            try:
                await request
            except ServerRefused as refused:
                assert refused.code == "internal" and refused.retry_ms, refused
            else:
                raise AssertionError("confirmed while Redis was out of reach")
        await alice.set_presence(psm="exams")
        await eventually(lambda: a.node.unreachable())
        await redis.start()
        # Nothing asked again: the SDK sends its presence after the error's retry_ms.
        for node in (a, b):
            await eventually(lambda n=node: n.hub.users["alice"].record.psm == "exams",
                             timeout=30)
        for node in (a, b):
            assert not node.hub.users["alice"].contacts
            assert "alice" in node.hub.rooms["#mine"].members
        assert "#team" not in a.hub.rooms  # the join that would have made it was refused
        await alice.join("#team")  # makes it now, with its creator
        assert a.hub.changes.creators["#team"] == "alice"
        await eventually(lambda: b.hub.changes.creators.get("#team") == "alice")


async def test_a_block_while_redis_is_frozen_is_refused_and_both_nodes_agree_after(
        nodes, redis) -> None:
    """SIGSTOP: the write times out (``retry_ms``); Redis, once it runs again, may still
    run the change it had read (the reply was what was lost): then every node applies
    it from the log, the refusing one too. Either way the nodes agree with Redis."""
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob"):
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            await alice.send({"t": "contact", "op": "block", "name": "bob", "id": "blk"})
            error = await alice.recv_until("error", ref="blk", timeout=30)
            assert error["code"] == "internal" and error["retry_ms"] > 0, error
            assert "bob" not in a.hub.users["alice"].contacts
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        await eventually(lambda: not any(n.node.unreachable() for n in (a, b)), timeout=30)
        welcome = await welcome_on(b, "alice", alice.token)  # b applied Redis's records
        stored = [c["name"] for c in welcome["contacts"] if c["blocked"]]
        for node in (a, b):
            await eventually(lambda n=node: n.hub.users["alice"].has_blocked("bob")
                             == (stored == ["bob"]), timeout=30)
        echo = await done_when_retried(alice, {"t": "contact", "op": "block", "name": "bob",
                                               "id": "blk"}, "blk", "contact")
        assert echo["blocked"] is True


async def test_a_moderator_named_during_an_outage_is_refused_and_holds_on_neither_node(
        nodes, redis) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        await alice.send({"t": "join", "room": "#team", "id": "j"})  # its creator
        await alice.recv_until("joined", ref="j")
        await bob.send({"t": "join", "room": "#team", "id": "j"})
        await bob.recv_until("joined", ref="j")
        add = {"t": "moderators", "room": "#team", "add": "bob", "id": "mod"}
        await refused_in_an_outage(redis, [a, b], alice, add, "mod")
        for node in (a, b):
            assert node.hub.changes.moderators["#team"] == {"alice"}
        await bob.expect_silence("moderators")
        reply = await done_when_retried(alice, add, "mod", "moderators", ref="mod")
        assert reply["names"] == ["alice", "bob"]
        await bob.recv_until("moderators", room="#team")
        await eventually(lambda: b.hub.changes.moderators["#team"] == {"alice", "bob"})


async def test_a_sign_in_whose_status_redis_refused_is_refused_and_kept_nowhere(
        nodes, redis) -> None:
    """Redis full: the hello's reads and the presence counts go on (allow-oom), the
    write of the status it sets is refused. The hello is answered ``internal`` and
    closed 1013 before any ``welcome``; neither node keeps the status, bob (on the other
    node) is told nothing; once Redis has room the same hello signs in with it."""
    from tests.cluster.test_redis_full import full

    a, b = await nodes(), await nodes()
    async with signed_in(b.url, "bob") as bob:
        async with signed_in(a.url, "alice") as alice:
            token = alice.token
            await bob.send({"t": "contact", "op": "add", "name": "alice", "id": "c"})
            await bob.recv_until("contact", ref="c")
        await bob.recv_until("presence", name="alice", status="offline")
        async with full(redis.url):
            async with WireClient.connect(a.url) as me:
                error = await me.hello("alice", token=token, status="busy", psm="exams")
                assert error["t"] == "error" and error["code"] == "internal", error
                assert error["ref"] == "hello"
                assert await me.wait_closed() == 1013
            for node in (a, b):
                record = node.hub.users["alice"].record
                assert (record.status, record.psm) == ("online", "")
            await bob.expect_silence("presence")
        async with signed_in(a.url, "alice", token=token, status="busy", psm="exams") as me:
            assert (me.welcome["status"], me.welcome["psm"]) == ("busy", "exams")
            await bob.recv_until("presence", name="alice", status="busy")
            await eventually(lambda: b.hub.users["alice"].record.status == "busy")
