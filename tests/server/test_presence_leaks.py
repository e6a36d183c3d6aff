"""Invisible means invisible everywhere, and a blocker looks offline everywhere: no read
mark, member frame or metric gives away that such a user is active (issue 10, item 9)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.wire import signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)

ROOM = "dm:alice:carol"


async def _users_online(server) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(server.http_url + "/metrics")).text
    match = re.search(r"^cfm_users_online ([0-9.]+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


async def test_an_invisible_users_dm_read_marks_stay_home(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "carol") as carol:
        await alice.send({"t": "say", "to": "carol", "text": "still up?", "id": "a1"})
        await alice.recv_until("ack")
        await carol.send({"t": "presence", "status": "invisible"})
        await carol.recv_until("presence", status="invisible")
        async with signed_in(server.url, "carol", token=carol.token) as carol2:
            await carol.send({"t": "read", "room": ROOM, "seq": 1})
            assert (await carol2.recv_until("read"))["seq"] == 1  # her own sessions follow
            await alice.expect_silence("read")
            # Visible again, her next mark is the usual "seen".
            await carol.send({"t": "presence", "status": "online"})
            await alice.send({"t": "say", "to": "carol", "text": "?", "id": "a2"})
            await alice.recv_until("ack")
            await carol.send({"t": "read", "room": ROOM, "seq": 2})
            assert (await alice.recv_until("read"))["seq"] == 2


async def test_an_invisible_user_joins_and_leaves_rooms_unseen(server) -> None:
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#den"})
        await alice.recv_until("joined")
        async with signed_in(server.url, "carol", status="invisible") as carol:
            await carol.send({"t": "join", "room": "#den"})
            await carol.recv_until("joined")
            await carol.send({"t": "leave", "room": "#den"})
            await carol.recv_until("left")
        # The same move while visible is announced; frames reach alice in order, so
        # anything about carol would have come before it.
        async with signed_in(server.url, "dave") as dave:
            await dave.send({"t": "join", "room": "#den"})
            await alice.recv_until("member", name="dave", op="join")
        assert not [f for f in alice.seen if f.get("name") == "carol"], alice.seen


async def test_a_blockers_room_moves_do_not_reach_the_blocked_user(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await bob.send({"t": "join", "room": "#den"})
        await bob.recv_until("joined")
        await alice.send({"t": "contact", "op": "block", "name": "bob"})
        await alice.recv_until("contact", op="block")
        async with signed_in(server.url, "carol") as carol:
            await carol.send({"t": "join", "room": "#den"})
            await carol.recv_until("joined")
            await alice.send({"t": "join", "room": "#den"})
            await alice.recv_until("joined")
            # carol, who is not blocked, hears of alice; bob does not.
            await carol.recv_until("member", name="alice", op="join")
            await alice.send({"t": "leave", "room": "#den"})
            await carol.recv_until("member", name="alice", op="leave")
            # Frames reach bob in order: once carol's later message is here, anything
            # about alice would have come before it.
            await carol.send({"t": "say", "room": "#den", "text": "sync", "id": "c1"})
            await bob.recv_until("msg", text="sync")
        assert not [f for f in bob.seen if f.get("name") == "alice"], bob.seen


@pytest.mark.single_node("the online gauge counts one node's sessions")
async def test_metrics_do_not_count_invisible_users_online(server) -> None:
    async with signed_in(server.url, "alice"):
        assert await _users_online(server) == 1
        async with signed_in(server.url, "carol", status="invisible") as carol:
            assert await _users_online(server) == 1
            await carol.send({"t": "presence", "status": "away"})
            await carol.recv_until("presence")
            assert await _users_online(server) == 2
            await carol.send({"t": "presence", "status": "invisible"})
            await carol.recv_until("presence")
            assert await _users_online(server) == 1
        async with signed_in(server.url, "dave", status="invisible"):
            pass
        assert await _users_online(server) == 1


async def test_metrics_answer_only_this_machine_unless_made_public(server_factory) -> None:
    # Behind a trusted proxy the client is the X-Forwarded-For address: a remote one.
    remote = {"X-Forwarded-For": "203.0.113.5"}
    private = await server_factory(trusted_proxies=["127.0.0.1"])
    public = await server_factory(trusted_proxies=["127.0.0.1"], metrics_public=True)
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(private.http_url + "/metrics", headers=remote)).status_code \
            == 404
        assert (await client.get(private.http_url + "/metrics")).status_code == 200
        assert (await client.get(public.http_url + "/metrics", headers=remote)).status_code \
            == 200


async def test_an_invisible_users_typing_stays_home(server) -> None:
    """"is typing…" shows someone is there, as a read mark does: an invisible user's
    typing reaches neither a DM peer nor a group room (issue 10 follow-up)."""
    async with signed_in(server.url, "alice") as alice, \
            signed_in(server.url, "carol", status="invisible") as carol:
        await alice.send({"t": "join", "room": "#den"})
        await alice.recv_until("joined")
        await carol.send({"t": "join", "room": "#den"})
        await carol.recv_until("joined")
        await carol.send({"t": "typing", "to": "alice"})
        await carol.send({"t": "typing", "room": "#den"})
        # Frames reach alice in order: once dave's message is here, carol's typing
        # would have come before it.
        async with signed_in(server.url, "dave") as dave:
            await dave.send({"t": "say", "to": "alice", "text": "sync", "id": "d1"})
            await alice.recv_until("msg", text="sync")
        assert not [f for f in alice.seen if f.get("t") == "typing"], alice.seen
        # Visible again, her typing shows as usual.
        await carol.send({"t": "presence", "status": "online"})
        await carol.send({"t": "typing", "to": "alice"})
        await alice.recv_until("typing", **{"from": "carol"})


async def test_a_blockers_typing_does_not_reach_the_blocked_user(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await alice.send({"t": "contact", "op": "block", "name": "bob"})
        await alice.recv_until("contact", op="block")
        await alice.send({"t": "typing", "to": "bob"})
        async with signed_in(server.url, "dave") as dave:
            await dave.send({"t": "say", "to": "bob", "text": "sync", "id": "d1"})
            await bob.recv_until("msg", text="sync")
        assert not [f for f in bob.seen if f.get("t") == "typing"], bob.seen
