"""Request ids (an additive extension, docs/protocol.md "Request ids"): a request frame
may carry ``id``; its answer to the asking session carries it back as ``ref``, and so
does an error refusing it. Requests without one are answered as before."""

from __future__ import annotations

from typing import Any

import pytest

from tests.wire import signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)

LOBBY = "#lobby"


async def test_each_answer_carries_its_requests_id(server: Any) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await alice.send({"t": "join", "room": LOBBY, "since": 0, "id": "r-join"})
        assert (await alice.recv_until("joined"))["ref"] == "r-join"
        await alice.send({"t": "say", "room": LOBBY, "text": "hi", "id": "m1"})
        await alice.recv_until("ack")
        # Two history requests of one room in flight: each answer says which it answers.
        await alice.send({"t": "history", "room": LOBBY, "after": 0, "id": "h-after"})
        await alice.send({"t": "history", "room": LOBBY, "before": 1, "id": "h-before"})
        first, second = await alice.recv_until("history"), await alice.recv_until("history")
        answers = {first["ref"]: first, second["ref"]: second}
        assert [m["seq"] for m in answers["h-after"]["msgs"]] == [1]
        assert answers["h-before"]["msgs"] == []
        await alice.send({"t": "members", "room": LOBBY, "id": "r-members"})
        assert (await alice.recv_until("members"))["ref"] == "r-members"
        await alice.send({"t": "contact", "op": "add", "name": "bob", "id": "r-add"})
        assert (await alice.recv_until("contact"))["ref"] == "r-add"
        added = await bob.recv_until("contact")
        assert added["op"] == "added_you" and "ref" not in added  # not bob's request
        await alice.send({"t": "leave", "room": LOBBY, "id": "r-leave"})
        assert (await alice.recv_until("left"))["ref"] == "r-leave"


async def test_the_users_other_sessions_get_the_echo_without_the_ref(server: Any) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob"), \
            signed_in(server.url, "alice", token=alice.welcome["token"]) as other:
        await alice.send({"t": "contact", "op": "add", "name": "bob", "id": "c1"})
        assert (await alice.recv_until("contact"))["ref"] == "c1"
        echo = await other.recv_until("contact")
        assert echo["name"] == "bob" and "ref" not in echo
        await other.send({"t": "join", "room": LOBBY})
        await other.recv_until("joined")
        await alice.send({"t": "leave", "room": LOBBY, "id": "l1"})
        assert (await alice.recv_until("left"))["ref"] == "l1"
        assert "ref" not in await other.recv_until("left")


async def test_an_error_names_the_request_by_its_id_and_old_requests_get_no_ref(
        server: Any) -> None:
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "history", "room": "#nowhere", "id": "h1"})
        error = await alice.recv_until("error")
        assert (error["code"], error["ref"]) == ("no_such_room", "h1")
        await alice.send({"t": "history", "room": "#nowhere"})  # no id: ref is the type
        assert (await alice.recv_until("error"))["ref"] == "history"
        await alice.send({"t": "join", "room": LOBBY})
        assert "ref" not in await alice.recv_until("joined")
        await alice.send({"t": "join", "room": LOBBY, "id": "x" * 65})  # over 64: refused
        assert (await alice.recv_until("error"))["code"] == "bad_frame"
