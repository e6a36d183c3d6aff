"""A user's join reaches its own other sessions on another node once (PROTOCOL.md: every
session of a user receives the live ``member`` frames), whether or not that node held the
room yet: found by a client written from the docs (the frame was missing when the other
node had no session of the room)."""

from __future__ import annotations

import asyncio

from tests.wire import WireClient, signed_in


async def members_seen(client: WireClient, room: str, marker: str) -> list[dict]:
    """Every ``member`` frame of ``room`` before the ``msg`` whose text is ``marker``
    (a message sent after the join: what came before it is all that came)."""
    seen = []
    while True:
        frame = await client.recv()
        if frame.get("t") == "member" and frame.get("room") == room:
            seen.append(frame)
        if frame.get("t") == "msg" and frame.get("text") == marker:
            return seen


async def test_a_join_reaches_the_users_session_on_a_node_without_the_room(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as here, \
            signed_in(b.url, "alice", token=here.token) as there:
        await here.send({"t": "join", "room": "#new", "id": "j"})
        await here.recv_until("joined")
        await here.send({"t": "say", "room": "#new", "text": "after", "id": "s"})
        seen = await asyncio.wait_for(members_seen(there, "#new", "after"), 30)
        assert seen == [{"t": "member", "room": "#new", "name": "alice", "op": "join"}]


async def test_a_join_reaches_the_users_session_on_a_node_with_the_room_once(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(b.url, "bob") as bob, signed_in(a.url, "alice") as here:
        await bob.send({"t": "join", "room": "#old", "id": "j"})
        await bob.recv_until("joined")
        async with signed_in(b.url, "alice", token=here.token) as there:
            await here.send({"t": "join", "room": "#old", "id": "j"})
            await here.recv_until("joined")
            await here.send({"t": "say", "room": "#old", "text": "after", "id": "s"})
            mine = await asyncio.wait_for(members_seen(there, "#old", "after"), 30)
            assert mine == [{"t": "member", "room": "#old", "name": "alice", "op": "join"}]
            theirs = await asyncio.wait_for(members_seen(bob, "#old", "after"), 30)
            assert theirs == mine
