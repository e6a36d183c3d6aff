"""The big-room extension: hello.quiet, join.members_limit / joined.count, members paging.

Silence is checked without sleeping: frames to one session keep their order, so once a
later frame (a ``msg`` in the room) arrives, anything the server would have sent before
it has arrived too.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from tests.wire import WireClient, eventually, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)

ROOM = "#big"


async def join(client: WireClient, room: str = ROOM, **keys: Any) -> dict[str, Any]:
    await client.send({"t": "join", "room": room, **keys})
    return await client.recv_until("joined", room=room)


async def say(client: WireClient, text: str, room: str = ROOM) -> None:
    await client.send({"t": "say", "room": room, "text": text, "id": text})
    await client.recv_until("ack", id=text)


def frames_of(client: WireClient, *types: str) -> list[dict[str, Any]]:
    return [frame for frame in client.seen if frame.get("t") in types]


async def test_a_quiet_session_gets_no_member_or_room_presence_while_a_loud_one_does(
    server,
) -> None:
    async with signed_in(server.url, "alice") as loud, \
            signed_in(server.url, "quinn", quiet=True) as quiet:
        await join(loud)
        await join(quiet)
        assert (await loud.recv_until("member", op="join"))["name"] == "quinn"
        async with signed_in(server.url, "carol") as carol:
            await join(carol)
            assert (await loud.recv_until("member", op="join"))["name"] == "carol"
            assert (await loud.recv_until("presence"))["name"] == "carol"
            await carol.send({"t": "presence", "psm": "hello room"})
            assert (await loud.recv_until("presence", name="carol"))["psm"] == "hello room"
            await carol.send({"t": "leave", "room": ROOM})
            await carol.recv_until("left")
            assert (await loud.recv_until("member", op="leave"))["name"] == "carol"
            await say(loud, "marker")
        # Messages still reach the quiet session; member and presence frames never did.
        assert (await quiet.recv_until("msg"))["text"] == "marker"
        assert frames_of(quiet, "member", "presence") == []
        # The loud session also heard about quinn, who is quiet only as a listener.
        assert frames_of(loud, "presence") and frames_of(loud, "member")


async def test_typing_still_reaches_a_quiet_session(server) -> None:
    async with signed_in(server.url, "alice") as alice, \
            signed_in(server.url, "quinn", quiet=True) as quiet:
        await join(alice)
        await join(quiet)
        await alice.send({"t": "typing", "room": ROOM})
        assert (await quiet.recv_until("typing"))["from"] == "alice"


async def test_a_contacts_presence_still_reaches_a_quiet_session(server) -> None:
    async with signed_in(server.url, "bob") as bob, \
            signed_in(server.url, "quinn", quiet=True) as quiet:
        await quiet.send({"t": "contact", "op": "add", "name": "bob"})
        await quiet.recv_until("contact", op="add")
        await join(bob)
        await join(quiet)
        await bob.send({"t": "presence", "psm": "on the list"})
        presence = await quiet.recv_until("presence", name="bob")
        assert presence["psm"] == "on the list"
        # A second, loud session of the same user is not quiet: quiet is per session.
        async with WireClient.connect(server.url) as loud:
            await loud.hello("quinn", token=quiet.token)
            async with signed_in(server.url, "dora") as dora:
                await join(dora)
                assert (await loud.recv_until("member", op="join"))["name"] == "dora"
                await dora.send({"t": "presence", "status": "away"})
                await loud.recv_until("presence", name="dora", status="online")  # introduced
                await loud.recv_until("presence", name="dora", status="away")
                await say(dora, "marker2")
                await quiet.recv_until("msg", text="marker2")
                assert not [f for f in frames_of(quiet, "member", "presence")
                            if f["name"] == "dora"]


async def test_members_limit_caps_joined_and_gives_the_count(server) -> None:
    names = ["erin", "bob", "dave", "carol"]
    clients = [await WireClient.open(server.url) for _ in names]
    try:
        for client, name in zip(clients, names, strict=True):
            await client.hello(name)
            await join(client)
        async with signed_in(server.url, "alice", quiet=True) as alice:
            capped = await join(alice, members_limit=2)
            assert [m["name"] for m in capped["members"]] == ["alice", "bob"]
            assert capped["count"] == 5
            again = await join(alice, members_limit=0)
            assert again["members"] == [] and again["count"] == 5
            # Without the key: everyone, sorted, and no count (the core protocol).
            full = await join(alice)
            assert [m["name"] for m in full["members"]] == sorted([*names, "alice"])
            assert "count" not in full
            await alice.send({"t": "join", "room": ROOM, "members_limit": 1001})
            assert (await alice.recv_until("error"))["code"] == "bad_frame"
    finally:
        for client in clients:
            await client.close()


async def test_members_pages_the_list_both_ways_and_refuses_what_it_must(server) -> None:
    names = ["bob", "carol", "dave", "erin", "fred", "gina"]
    clients = [await WireClient.open(server.url) for _ in names]
    try:
        for client, name in zip(clients, names, strict=True):
            await client.hello(name)
            await join(client)
        bob = clients[0]
        seen: list[str] = []
        after = None
        pages = 0
        while True:
            request: dict[str, Any] = {"t": "members", "room": ROOM, "limit": 4}
            if after is not None:
                request["after"] = after
            await bob.send(request)
            page = await bob.recv_until("members")
            pages += 1
            assert page["room"] == ROOM and pages <= 3
            seen += [m["name"] for m in page["members"]]
            if not page["more"]:
                break
            after = page["members"][-1]["name"]
        assert seen == names and pages == 2
        # after compares lower-cased; the default limit covers this room.
        await bob.send({"t": "members", "room": ROOM, "after": "Dave"})
        page = await bob.recv_until("members")
        assert [m["name"] for m in page["members"]] == ["erin", "fred", "gina"]
        assert page["more"] is False
        assert page["members"][0] == {"name": "erin", "display": "erin", "status": "online",
                                      "psm": "", "bot": False}
        await bob.send({"t": "members", "room": ROOM, "after": "zz"})
        assert (await bob.recv_until("members"))["members"] == []
        async with signed_in(server.url, "outsider") as outsider:
            await outsider.send({"t": "members", "room": ROOM})
            assert (await outsider.recv_until("error"))["code"] == "not_member"
            await outsider.send({"t": "members", "room": "#nowhere"})
            assert (await outsider.recv_until("error"))["code"] == "no_such_room"
            await outsider.send({"t": "members", "room": "dm:bob:outsider"})
            error = await outsider.recv_until("error")
            assert error["code"] == "bad_frame" and error["ref"] == "members"
            await outsider.send({"t": "members", "room": ROOM, "limit": 501})
            assert (await outsider.recv_until("error"))["code"] == "bad_frame"
    finally:
        for client in clients:
            await client.close()


@pytest.mark.single_node("looks inside one hub's room")
async def test_the_loud_index_follows_sign_out_leave_and_rejoin(server) -> None:
    hub = server.hub

    def loud_names() -> list[str]:
        return sorted(s.user.name for s in hub.rooms[ROOM].loud if s.user is not None)

    async with signed_in(server.url, "alice") as alice, \
            signed_in(server.url, "quinn", quiet=True) as quiet:
        await join(alice)
        await join(quiet)
        assert loud_names() == ["alice"]
        async with signed_in(server.url, "bob") as bob:
            await join(bob)
            bob_session = hub.users["bob"].sessions[0]
            assert loud_names() == ["alice", "bob"]
        # Bob signed out: no longer iterated, though still a member.
        await eventually(lambda: bob_session not in hub.rooms[ROOM].loud)
        assert "bob" in hub.rooms[ROOM].members
        assert loud_names() == ["alice"]
        await alice.send({"t": "leave", "room": ROOM})
        await alice.recv_until("left")
        assert loud_names() == []
        await join(alice)
        assert loud_names() == ["alice"]
        await say(alice, "marker")
        await quiet.recv_until("msg", text="marker")
        assert frames_of(quiet, "member", "presence") == []
    await eventually(lambda: not hub.rooms[ROOM].loud)
    # A returning member is loud again from sign-in, without a new join.
    async with WireClient.connect(server.url) as back:
        await back.hello("alice", token=alice.token)
        assert loud_names() == ["alice"]


async def test_the_bigroom_bench_with_quiet_clients_sends_one_frame_per_join(
    server_factory,
) -> None:
    from cfm_bench.runner import BenchOptions, run_scenario
    from cfm_bench.target import from_url

    server = await server_factory(rate_limits=False, store="memory")
    target = from_url(server.url, pid=os.getpid())
    options = BenchOptions(scenario="bigroom", clients=20, presence=4, room=ROOM, quiet=True)
    # The coordinator blocks; the in-process server keeps running on this event loop.
    result = await asyncio.to_thread(run_scenario, target, options)
    assert result["errors"] == 0, result
    assert result["quiet"] is True
    assert result["join_frames"] == 20  # each join: its joined, nothing to the others
    assert "member" not in result["frames"]
    assert result["presence_frames"] == 4  # each change: the changer's own session only
    assert not result["quadratic"]


async def test_members_spends_from_the_history_bucket(server_factory) -> None:
    server = await server_factory(history_rate=0.5, history_burst=2)
    async with signed_in(server.url, "alice") as alice:
        await join(alice)
        await alice.send({"t": "history", "room": ROOM})
        await alice.recv_until("history")
        await alice.send({"t": "members", "room": ROOM})
        assert [m["name"] for m in (await alice.recv_until("members"))["members"]] == ["alice"]
        await alice.send({"t": "members", "room": ROOM})
        error = await alice.recv_until("error")
        assert error["code"] == "rate_limited" and error["ref"] == "members"
