"""Group rooms: join, leave, say, typing, history paging, join-since replay, read marks."""

from __future__ import annotations

import pytest

from tests.wire import WireClient, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)


async def join(client: WireClient, room: str = "#lobby", **keys) -> dict:
    await client.send({"t": "join", "room": room, **keys})
    return await client.recv_until("joined", room=room)


async def say_many(client: WireClient, room: str, n: int, prefix: str = "m") -> list[dict]:
    for i in range(n):
        await client.send({"t": "say", "room": room, "text": f"{prefix}{i}", "id": f"{prefix}{i}"})
    return await client.recv_n("ack", n)


async def test_join_say_and_member_frames(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        joined = await join(alice, "#tea")
        assert joined["seq"] == 0 and joined["epoch"]
        assert [m["name"] for m in joined["members"]] == ["alice"]
        joined = await join(bob, "#tea")
        assert [m["name"] for m in joined["members"]] == ["alice", "bob"]
        assert await alice.recv_until("member") == {
            "t": "member", "room": "#tea", "name": "bob", "op": "join"}
        # Joining again is a no-op: no second member frame.
        await join(bob, "#tea")
        await alice.send({"t": "say", "room": "#tea", "text": "hello", "id": "a1"})
        ack = await alice.recv_until("ack")
        assert ack["id"] == "a1" and ack["room"] == "#tea" and ack["seq"] == 1
        msg = await bob.recv_until("msg")
        assert msg == {"t": "msg", "room": "#tea", "seq": 1, "from": "alice", "text": "hello",
                       "ts": ack["ts"], "kind": "text", "id": "a1"}
        await alice.expect_silence("member")


async def test_every_session_of_a_member_gets_the_msg_but_the_sending_one(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await join(alice)
        await join(bob)
        async with WireClient.connect(server.url) as alice2:
            await alice2.hello("alice", token=alice.token)
            await alice.send({"t": "say", "room": "#lobby", "text": "hi", "id": "x"})
            await alice.recv_until("ack")
            assert (await alice2.recv_until("msg"))["id"] == "x"
            assert (await bob.recv_until("msg"))["id"] == "x"
            await alice.expect_silence("msg")


async def test_membership_lasts_across_sessions(server) -> None:
    async with signed_in(server.url, "alice") as alice:
        await join(alice, "#tea")
        token = alice.token
    async with signed_in(server.url, "bob") as bob:
        await join(bob, "#tea")
        await bob.send({"t": "say", "room": "#tea", "text": "while you were out", "id": "b1"})
        await bob.recv_until("ack")
    async with WireClient.connect(server.url) as alice:
        welcome = await alice.hello("alice", token=token)
        rooms = {r["room"]: r for r in welcome["rooms"]}
        assert rooms["#tea"]["seq"] == 1 and rooms["#tea"]["read"] == 0
        assert rooms["#tea"]["epoch"]
        async with signed_in(server.url, "carol") as carol:
            await join(carol, "#tea")
            await carol.send({"t": "say", "room": "#tea", "text": "live", "id": "c1"})
            # No per-session subscription: alice's new session gets it without joining.
            assert (await alice.recv_until("msg"))["text"] == "live"


async def test_leave_ends_the_membership(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await join(alice, "#tea")
        await join(bob, "#tea")
        await bob.send({"t": "leave", "room": "#tea"})
        assert await bob.recv_until("left") == {"t": "left", "room": "#tea"}
        assert (await alice.recv_until("member", op="leave"))["name"] == "bob"
        await bob.send({"t": "say", "room": "#tea", "text": "x", "id": "b1"})
        error = await bob.recv_until("error")
        assert error["code"] == "not_member" and error["ref"] == "b1"
        await bob.send({"t": "leave", "room": "#tea"})
        assert (await bob.recv_until("error"))["code"] == "not_member"
        await bob.send({"t": "leave", "room": "dm:alice:bob"})
        assert (await bob.recv_until("error"))["code"] == "bad_frame"


async def test_non_members_cannot_say_type_read_or_page(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await join(alice, "#tea")
        for frame in (
            {"t": "say", "room": "#tea", "text": "x", "id": "s"},
            {"t": "typing", "room": "#tea"},
            {"t": "history", "room": "#tea"},
            {"t": "read", "room": "#tea", "seq": 1},
            {"t": "say", "room": "#nowhere", "text": "x", "id": "n"},
        ):
            await bob.send(frame)
            error = await bob.recv_until("error")
            assert error["code"] == "not_member", frame
        await bob.send({"t": "history", "room": "#nowhere"})
        assert (await bob.recv_until("error"))["code"] == "no_such_room"
        await bob.send({"t": "read", "room": "#nowhere", "seq": 3})
        assert (await bob.recv_until("error"))["code"] == "no_such_room"


async def test_typing_goes_to_the_other_members_only(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await join(alice)
        await join(bob)
        await alice.send({"t": "typing", "room": "#lobby"})
        assert await bob.recv_until("typing") == {"t": "typing", "room": "#lobby", "from": "alice"}
        await alice.expect_silence("typing")


async def test_history_pages_both_ways(server) -> None:
    async with signed_in(server.url, "alice") as alice:
        await join(alice)
        await say_many(alice, "#lobby", 12)
        await alice.send({"t": "history", "room": "#lobby", "limit": 5})
        page = await alice.recv_until("history")
        assert [m["seq"] for m in page["msgs"]] == [8, 9, 10, 11, 12] and page["more"] is True
        assert page["msgs"][0] == {"room": "#lobby", "seq": 8, "from": "alice", "text": "m7",
                                   "ts": page["msgs"][0]["ts"], "kind": "text", "id": "m7"}
        await alice.send({"t": "history", "room": "#lobby", "before": 8, "limit": 5})
        page = await alice.recv_until("history")
        assert [m["seq"] for m in page["msgs"]] == [3, 4, 5, 6, 7] and page["more"] is True
        await alice.send({"t": "history", "room": "#lobby", "before": 3, "limit": 5})
        page = await alice.recv_until("history")
        assert [m["seq"] for m in page["msgs"]] == [1, 2] and page["more"] is False
        # A last page shorter than the limit but more than half of it comes whole.
        await alice.send({"t": "history", "room": "#lobby", "before": 8, "limit": 10})
        page = await alice.recv_until("history")
        assert [m["seq"] for m in page["msgs"]] == [1, 2, 3, 4, 5, 6, 7] and page["more"] is False
        await alice.send({"t": "history", "room": "#lobby", "after": 0, "limit": 5})
        page = await alice.recv_until("history")
        assert [m["seq"] for m in page["msgs"]] == [1, 2, 3, 4, 5] and page["more"] is True
        await alice.send({"t": "history", "room": "#lobby", "after": 10, "limit": 5})
        page = await alice.recv_until("history")
        assert [m["seq"] for m in page["msgs"]] == [11, 12] and page["more"] is False
        await alice.send({"t": "history", "room": "#lobby", "after": 12})
        page = await alice.recv_until("history")
        assert page["msgs"] == [] and page["more"] is False
        await alice.send({"t": "history", "room": "#lobby", "limit": 201})
        assert (await alice.recv_until("error"))["code"] == "bad_frame"


async def test_join_since_replays_the_missed_messages(server_factory) -> None:
    server = await server_factory(replay_limit=5)
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await join(alice)
        await say_many(alice, "#lobby", 8)
        joined = await join(bob, "#lobby", since=1)
        assert joined["seq"] == 8 and joined["more"] is True and "reset" not in joined
        replay = await bob.recv_n("msg", 5)
        assert [m["seq"] for m in replay] == [2, 3, 4, 5, 6]
        joined = await join(bob, "#lobby", since=6, epoch=joined["epoch"])
        assert joined["more"] is False
        assert [m["seq"] for m in await bob.recv_n("msg", 2)] == [7, 8]
        # Without `since` there is no replay.
        await join(bob, "#lobby")
        await bob.expect_silence("msg")


async def test_join_with_another_epoch_replays_from_zero_with_reset(server) -> None:
    async with signed_in(server.url, "alice") as alice:
        await join(alice)
        await say_many(alice, "#lobby", 3)
        joined = await join(alice, "#lobby", since=3, epoch="an-epoch-of-another-life")
        assert joined["reset"] is True and joined["more"] is False
        assert joined["epoch"] != "an-epoch-of-another-life"
        assert [m["seq"] for m in await alice.recv_n("msg", 3)] == [1, 2, 3]


async def test_read_marks_move_forward_and_reach_the_other_sessions(server) -> None:
    async with signed_in(server.url, "alice") as alice:
        await join(alice)
        await say_many(alice, "#lobby", 3)
        async with WireClient.connect(server.url) as alice2:
            await alice2.hello("alice", token=alice.token)
            await alice.send({"t": "read", "room": "#lobby", "seq": 2})
            assert await alice2.recv_until("read") == {
                "t": "read", "room": "#lobby", "name": "alice", "seq": 2}
            await alice.send({"t": "read", "room": "#lobby", "seq": 1})  # backwards: ignored
            await alice2.expect_silence("read")
            await alice.send({"t": "read", "room": "#lobby", "seq": 99})  # clamped to the latest
            assert (await alice2.recv_until("read"))["seq"] == 3
            await alice.expect_silence("read")
    async with WireClient.connect(server.url) as again:
        welcome = await again.hello("alice", token=alice.token)
        assert {r["room"]: r["read"] for r in welcome["rooms"]} == {"#lobby": 3}


@pytest.mark.single_node("edits the SQLite file")
async def test_a_room_whose_record_was_lost_comes_back_with_its_messages(
    server_factory,
) -> None:
    import sqlite3

    from cfm_server.server import DB_FILE

    server = await server_factory()
    async with signed_in(server.url, "alice") as alice:
        first = await join(alice, "#ops")
        await say_many(alice, "#ops", 3)
    port, data_dir = server.port, server.config.data_dir
    await server.stop(close_code=1012)
    # The room's own write failed while its messages committed (a failed batch).
    with sqlite3.connect(data_dir / DB_FILE) as db:
        assert db.execute("DELETE FROM rooms WHERE room = '#ops'").rowcount == 1
    db.close()

    server = await server_factory(port=port, data_dir=data_dir)
    async with signed_in(server.url, "bob") as bob:
        joined = await join(bob, "#ops", since=0, epoch=first["epoch"])
        # Its messages are reachable again; the new epoch tells clients to sync afresh.
        assert joined["seq"] == 3 and joined["reset"] is True
        assert joined["epoch"] and joined["epoch"] != first["epoch"]
        assert [m["text"] for m in await bob.recv_n("msg", 3)] == ["m0", "m1", "m2"]
        await bob.send({"t": "say", "room": "#ops", "text": "next", "id": "n1"})
        assert (await bob.recv_until("ack"))["seq"] == 4  # not 1: nothing is overwritten
