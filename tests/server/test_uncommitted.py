"""A message whose commit has not completed is shown to nobody: not in a join's replay
or seq, a history page, a welcome's room seq. It reaches everyone by its fan-out when the
commit completes, exactly once; had the commit failed, its seq would go to the next
message, and a client shown it would hold a message that never was."""

from __future__ import annotations

from typing import Any

import pytest

from tests.wire import signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)

LOBBY = "#lobby"
WINDOW_MS = 400  # the group-commit window: the message waits this long for its commit


@pytest.mark.single_node("the store's commit window")
async def test_a_message_in_its_commit_window_is_shown_only_by_its_fan_out(
        server_factory: Any) -> None:
    server = await server_factory(commit_interval_ms=WINDOW_MS)
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob, \
            signed_in(server.url, "carol") as carol:
        for client in (alice, carol):
            await client.send({"t": "join", "room": LOBBY})
            await client.recv_until("joined")
        await alice.send({"t": "say", "room": LOBBY, "text": "first", "id": "a1"})
        await alice.recv_until("ack")
        # The next one waits for its commit; meanwhile bob joins with a replay, carol
        # asks for the newest history and for what follows seq 0.
        await alice.send({"t": "say", "room": LOBBY, "text": "second", "id": "a2"})
        await bob.send({"t": "join", "room": LOBBY, "since": 0})
        await carol.send({"t": "history", "room": LOBBY})
        history = await carol.recv_until("history")
        await carol.send({"t": "history", "room": LOBBY, "after": 0})
        after = await carol.recv_until("history")
        # (bob's joined waits for his membership's commit, the message's too.)
        joined = await bob.recv_until("joined")
        assert joined["seq"] == 1, joined
        assert [m["seq"] for m in history["msgs"]] == [1], history
        assert [m["seq"] for m in after["msgs"]] == [1] and not after["more"], after
        # Then the commit: the ack to alice, the msg once to bob (replay 1, fan-out 2).
        ack = await alice.recv_until("ack")
        assert ack["seq"] == 2
        got = [(await bob.recv_until("msg"))["seq"], (await bob.recv_until("msg"))["seq"]]
        assert got == [1, 2]
        await bob.expect_silence("msg")
        assert (await carol.recv_until("msg"))["seq"] == 2


@pytest.mark.single_node("the store's commit window")
async def test_a_welcome_names_the_last_committed_seq(server_factory: Any) -> None:
    server = await server_factory(commit_interval_ms=WINDOW_MS)
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": LOBBY})
        await alice.recv_until("joined")
        await alice.send({"t": "say", "room": LOBBY, "text": "pending", "id": "a1"})
        # alice's second session signs in while the message waits for its commit.
        async with signed_in(server.url, "alice", token=alice.welcome["token"]) as again:
            rooms = {r["room"]: r for r in again.welcome["rooms"]}
            assert rooms[LOBBY]["seq"] == 0, rooms
            assert (await alice.recv_until("ack"))["seq"] == 1
            assert (await again.recv_until("msg"))["seq"] == 1  # by the fan-out
