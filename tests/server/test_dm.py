"""Direct messages: creation on first use, privacy, offline delivery, nudges (blocks:
test_private_block.py)."""

from __future__ import annotations

import pytest

from tests.wire import WireClient, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)


async def test_first_dm_creates_the_room_for_both_and_waits_for_the_offline_peer(server) -> None:
    async with signed_in(server.url, "bob") as bob:
        bob_token = bob.token
    async with signed_in(server.url, "Alice") as alice:
        await alice.send({"t": "say", "to": "BOB", "text": "are you there?", "id": "d1"})
        ack = await alice.recv_until("ack")
        assert ack["room"] == "dm:alice:bob" and ack["seq"] == 1
    async with WireClient.connect(server.url) as bob:
        welcome = await bob.hello("bob", token=bob_token)
        assert welcome["rooms"] == [
            {"room": "dm:alice:bob", "seq": 1, "read": 0, "epoch": welcome["rooms"][0]["epoch"],
             "unread": 1, "mentions": 0}  # the counts: an extension (message changes)
        ]
        await bob.send({"t": "history", "room": "dm:alice:bob", "after": 0})
        page = await bob.recv_until("history")
        assert [(m["from"], m["text"]) for m in page["msgs"]] == [("alice", "are you there?")]


async def test_a_bot_that_only_says_hello_receives_its_dms(server) -> None:
    async with signed_in(server.url, "echo", bot=True) as bot, signed_in(server.url, "ann") as ann:
        await ann.send({"t": "say", "to": "echo", "text": "ping", "id": "p"})
        msg = await bot.recv_until("msg")
        assert msg["room"] == "dm:ann:echo" and msg["text"] == "ping"
        # Replying by room name works as well as by `to`.
        await bot.send({"t": "say", "room": "dm:ann:echo", "text": "pong", "id": "r"})
        assert (await ann.recv_until("msg"))["text"] == "pong"


async def test_dm_rooms_are_private(server) -> None:
    async with (
        signed_in(server.url, "alice") as alice,
        signed_in(server.url, "bob") as bob,
        signed_in(server.url, "eve") as eve,
    ):
        await alice.send({"t": "say", "to": "bob", "text": "secret", "id": "s"})
        await alice.recv_until("ack")
        await bob.recv_until("msg")
        for frame in (
            {"t": "say", "room": "dm:alice:bob", "text": "x", "id": "e1"},
            {"t": "typing", "room": "dm:alice:bob"},
            {"t": "history", "room": "dm:alice:bob"},
            {"t": "read", "room": "dm:alice:bob", "seq": 1},
            {"t": "join", "room": "dm:alice:bob", "since": 0},
            {"t": "history", "room": "dm:alice:zed"},  # not even existing ones
        ):
            await eve.send(frame)
            error = await eve.recv_until("error")
            assert error["code"] == "forbidden", frame
            assert error["ref"] == frame.get("id", frame["t"])
        await eve.expect_silence("msg")


async def test_unknown_users_and_missing_rooms(server) -> None:
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "say", "to": "nobody", "text": "x", "id": "u1"})
        error = await alice.recv_until("error")
        assert error["code"] == "no_such_user" and error["ref"] == "u1"
        await alice.send({"t": "nudge", "to": "nobody"})
        assert (await alice.recv_until("error"))["code"] == "no_such_user"
        async with signed_in(server.url, "bob"):
            pass
        await alice.send({"t": "history", "room": "dm:alice:bob"})
        assert (await alice.recv_until("error"))["code"] == "no_such_room"


async def test_self_dm_and_self_nudge_are_bad_frames(server) -> None:
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "say", "to": "Alice", "text": "me", "id": "m"})
        assert (await alice.recv_until("error"))["code"] == "bad_frame"
        await alice.send({"t": "nudge", "to": "alice", "id": "n"})
        assert (await alice.recv_until("error"))["code"] == "bad_frame"
        await alice.send({"t": "say", "room": "dm:alice:alice", "text": "me", "id": "m2"})
        assert (await alice.recv_until("error"))["code"] == "bad_frame"


async def test_a_nudge_is_stored_acked_and_delivered(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await alice.send({"t": "nudge", "to": "bob", "id": "n1"})
        ack = await alice.recv_until("ack")
        assert ack["id"] == "n1" and ack["room"] == "dm:alice:bob"
        msg = await bob.recv_until("msg")
        assert msg["kind"] == "nudge" and msg["from"] == "alice" and msg["seq"] == ack["seq"]
        await bob.send({"t": "nudge", "to": "alice"})  # without an id: acked without one
        ack = await bob.recv_until("ack")
        assert "id" not in ack and ack["seq"] == 2


async def test_one_nudge_per_pair_per_interval(server) -> None:
    async with (
        signed_in(server.url, "alice") as alice,
        signed_in(server.url, "bob"),
        signed_in(server.url, "carol"),
    ):
        await alice.send({"t": "nudge", "to": "bob", "id": "n1"})
        await alice.recv_until("ack")
        await alice.send({"t": "nudge", "to": "bob", "id": "n2"})
        error = await alice.recv_until("error")
        assert error["code"] == "rate_limited" and error["ref"] == "n2"
        assert 0 < error["retry_ms"] <= 5000
        await alice.send({"t": "nudge", "to": "carol", "id": "n3"})  # another pair is fine
        assert (await alice.recv_until("ack"))["id"] == "n3"


async def test_a_retried_nudge_gets_its_ack_again_not_the_pair_limit(server) -> None:
    """A nudge whose ack was lost, sent again with its id at once: the original ack
    (its clock is its own), one nudge for the peer; another nudge still waits."""
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await alice.send({"t": "nudge", "to": "bob", "id": "n1"})
        first = await alice.recv_until("ack")
        await alice.send({"t": "nudge", "to": "bob", "id": "n1"})
        again = await alice.recv()
        while again["t"] not in ("ack", "error"):
            again = await alice.recv()
        assert again == first
        await alice.send({"t": "nudge", "to": "bob", "id": "n2"})
        assert (await alice.recv_until("error"))["ref"] == "n2"
        await alice.send({"t": "say", "to": "bob", "text": "after", "id": "s1"})
        assert (await bob.recv_until("msg"))["kind"] == "nudge"
        assert (await bob.recv_until("msg"))["text"] == "after"  # the nudge came once


async def test_dm_read_marks_reach_the_other_member(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await alice.send({"t": "say", "to": "bob", "text": "hi", "id": "1"})
        msg = await bob.recv_until("msg")
        await bob.send({"t": "read", "room": msg["room"], "seq": msg["seq"]})
        assert await alice.recv_until("read") == {
            "t": "read", "room": "dm:alice:bob", "name": "bob", "seq": 1}


async def test_typing_to_a_user(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await alice.send({"t": "typing", "to": "bob"})
        assert await bob.recv_until("typing") == {
            "t": "typing", "room": "dm:alice:bob", "from": "alice"}
        await alice.expect_silence("typing")
