"""The SDK matches answers and errors to its requests by request id (docs/protocol.md,
"Request ids"), against a real server: a refusal fails the request it answers, not the
oldest one of its type; requests of several rooms in flight each get their own answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cfm_common.client import ClientError

LOBBY = "#lobby"


async def test_a_refusal_fails_its_own_request_not_the_oldest(server: Any, clients: Any) -> None:
    alice = clients(server.url, "alice")
    await alice.connect()
    await alice.join(LOBBY)
    await alice.say("hello", room=LOBBY)
    # The lobby's history is asked first, then a room that does not exist: the error
    # answers the second, and the first still gets its page.
    lobby = asyncio.create_task(alice.history(LOBBY, after=0))
    nowhere = asyncio.create_task(alice.history("#nowhere", after=0))
    with pytest.raises(ClientError) as refused:
        await nowhere
    assert refused.value.code == "no_such_room"
    page = await lobby
    assert page.room == LOBBY and [m.text for m in page.msgs] == ["hello"]


async def test_requests_of_many_rooms_in_flight_each_get_their_answer(
        server: Any, clients: Any) -> None:
    alice = clients(server.url, "alice")
    await alice.connect()
    rooms = [f"#room{i}" for i in range(8)]
    joined = await asyncio.gather(*(alice.join(room) for room in rooms))
    assert [j.room for j in joined] == rooms
    for room in rooms:
        await alice.say(f"in {room}", room=room)
    pages = await asyncio.gather(*(alice.history(room, after=0) for room in rooms))
    assert [[m.text for m in p.msgs] for p in pages] == [[f"in {room}"] for room in rooms]
    left = await asyncio.gather(*(alice.leave(room) for room in reversed(rooms)))
    assert [lf.room for lf in left] == list(reversed(rooms))
