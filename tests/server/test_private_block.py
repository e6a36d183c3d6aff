"""Blocking is private (PROTOCOL.md, amended 2026-12-03).

The blocked user is answered exactly as if the blocker were offline: DM `say` and
`nudge` are acked and shown as sent to their own sessions; the blocker gets a
`msg{hidden}` placeholder in their place (live, in history, in a join replay, also
after an unblock), and nothing of `typing` or `read`. No `blocked` error, ever.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.wire import WireClient, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)

ROOM = "dm:alice:bob"


async def _block(alice: WireClient, name: str = "bob") -> None:
    await alice.send({"t": "contact", "op": "block", "name": name})
    await alice.recv_until("contact", op="block")


def _placeholder(frame: dict[str, Any], seq: int) -> bool:
    """A hidden message's stand-in: its place and sender, nothing it carried."""
    return (frame.get("hidden") is True and frame["seq"] == seq and frame["text"] == ""
            and frame["kind"] == "text" and "id" not in frame and frame["from"] == "bob")


async def test_a_blocked_users_say_and_nudge_are_acked_and_reach_the_blocker_as_placeholders(
    server,
) -> None:
    async with (
        signed_in(server.url, "alice") as alice,
        signed_in(server.url, "bob") as bob,
        signed_in(server.url, "bob", token=bob.token) as bob2,
    ):
        await _block(alice)
        await bob.send({"t": "say", "to": "alice", "text": "let me explain", "id": "b1"})
        ack = await bob.recv_until("ack")
        assert ack == {"t": "ack", "room": ROOM, "seq": 1, "ts": ack["ts"], "id": "b1"}
        # Bob's other session sees his message as sent, plain: no trace of the block.
        mine = await bob2.recv_until("msg")
        assert mine["text"] == "let me explain" and "hidden" not in mine
        live = await alice.recv_until("msg")
        assert _placeholder(live, 1), live

        await bob.send({"t": "nudge", "to": "alice", "id": "b2"})
        assert (await bob.recv_until("ack"))["seq"] == 2
        assert _placeholder(await alice.recv_until("msg"), 2)
        assert (await bob2.recv_until("msg"))["kind"] == "nudge"

        await bob.send({"t": "typing", "to": "alice"})
        await bob.send({"t": "say", "room": ROOM, "text": "by room name", "id": "b3"})
        assert (await bob.recv_until("ack"))["seq"] == 3
        assert _placeholder(await alice.recv_until("msg"), 3)
        await alice.expect_silence("typing")
        assert not any(f["t"] == "error" for f in bob.seen), bob.seen


async def test_the_blocker_never_gets_the_text_from_history_replay_or_after_unblock(
    server,
) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await alice.send({"t": "say", "to": "bob", "text": "hi bob", "id": "a1"})
        await alice.recv_until("ack")
        await _block(alice)
        await bob.send({"t": "say", "to": "alice", "text": "secret plea", "id": "b1"})
        await bob.recv_until("ack")
        await alice.recv_until("msg")

        await alice.send({"t": "contact", "op": "unblock", "name": "bob"})
        await alice.recv_until("contact", op="unblock")
        await bob.send({"t": "say", "to": "alice", "text": "after unblock", "id": "b2"})
        await bob.recv_until("ack")
        live = await alice.recv_until("msg")
        assert live["text"] == "after unblock" and "hidden" not in live

        await alice.send({"t": "history", "room": ROOM, "after": 0})
        page = (await alice.recv_until("history"))["msgs"]
        assert [m["seq"] for m in page] == [1, 2, 3]  # gapless
        assert page[0]["text"] == "hi bob" and _placeholder(page[1], 2)
        assert page[2]["text"] == "after unblock"
        await alice.send({"t": "history", "room": ROOM})  # newest, by `before`
        assert _placeholder((await alice.recv_until("history"))["msgs"][1], 2)
        await alice.send({"t": "join", "room": ROOM, "since": 0})
        await alice.recv_until("joined")
        replay = [await alice.recv_until("msg") for _ in range(3)]
        assert _placeholder(replay[1], 2)
        assert "secret plea" not in repr(alice.seen)

        # The sender's own history holds the message as he sent it.
        await bob.send({"t": "history", "room": ROOM, "after": 0})
        theirs = (await bob.recv_until("history"))["msgs"]
        assert theirs[1] == {"room": ROOM, "seq": 2, "from": "bob", "text": "secret plea",
                             "ts": theirs[1]["ts"], "kind": "text", "id": "b1"}


async def test_hidden_messages_stay_hidden_and_idempotent_across_a_restart(
    server_factory, tmp_path
) -> None:
    data_dir = tmp_path / "kept"
    first = await server_factory(data_dir=data_dir)
    async with signed_in(first.url, "alice") as alice, signed_in(first.url, "bob") as bob:
        await _block(alice)
        tokens = alice.token, bob.token
        await bob.send({"t": "say", "to": "alice", "text": "once", "id": "b1"})
        ack = await bob.recv_until("ack")
    await first.stop(close_code=1012)
    second = await server_factory(data_dir=data_dir)
    async with (
        signed_in(second.url, "alice", token=tokens[0]) as alice,
        signed_in(second.url, "bob", token=tokens[1]) as bob,
    ):
        # The retry gets the original ack; nothing new is stored or delivered.
        await bob.send({"t": "say", "to": "alice", "text": "once", "id": "b1"})
        assert await bob.recv_until("ack") == ack
        await alice.expect_silence("msg")
        await alice.send({"t": "history", "room": ROOM})
        msgs = (await alice.recv_until("history"))["msgs"]
        assert len(msgs) == 1 and _placeholder(msgs[0], 1)
        await bob.send({"t": "history", "room": ROOM})
        assert (await bob.recv_until("history"))["msgs"][0]["text"] == "once"


async def test_read_marks_do_not_cross_a_block_either_way(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await alice.send({"t": "say", "to": "bob", "text": "old news", "id": "a1"})
        await alice.recv_until("ack")
        await bob.send({"t": "say", "to": "alice", "text": "old reply", "id": "b1"})
        await bob.recv_until("ack")
        await _block(alice)
        async with signed_in(server.url, "alice", token=alice.token) as alice2:
            await alice.send({"t": "read", "room": ROOM, "seq": 2})
            # The blocker's own other session still follows her read mark...
            assert (await alice2.recv_until("read"))["seq"] == 2
            await bob.send({"t": "read", "room": ROOM, "seq": 2})
            # ...but neither mark reaches the other side.
            await bob.expect_silence("read")
            await alice.expect_silence("read")


async def test_the_blocker_gets_no_added_you_and_looks_offline(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await _block(alice)
        await bob.send({"t": "contact", "op": "add", "name": "alice"})
        echo = await bob.recv_until("contact", op="add")
        assert echo["status"] == "offline" and echo["psm"] == ""
        await alice.expect_silence("contact")
