"""The SDK side of the big-room extension: Client(quiet=True), join(members_limit),
members() paging."""

from __future__ import annotations

from typing import Any

import pytest

from cfm_common.client import ClientError
from cfm_common.frames import Member, MembersPage, Msg, Presence
from tests.sdk.conftest import Recorder

ROOM = "#big"


async def test_a_quiet_client_pages_members_and_hears_no_member_frames(
    server: Any, clients: Any
) -> None:
    loud, quiet = clients(server.url, "alice"), clients(server.url, "quinn", quiet=True)
    others = [clients(server.url, name) for name in ("bob", "carol", "dave")]
    for client in (loud, quiet, *others):
        await client.connect()
    await loud.join(ROOM)
    quiet_events = Recorder(quiet)
    joined = await quiet.join(ROOM, members_limit=1)
    assert [m.name for m in joined.members] == ["alice"] and joined.count == 2
    for client in others:
        await client.join(ROOM)
    loud_events = Recorder(loud)
    await loud.say("marker", room=ROOM)
    await quiet_events.wait(lambda r: any(isinstance(e, Msg) for e in r.events))
    assert not [e for e in quiet_events.events if isinstance(e, Member | Presence)]
    await loud_events.wait(
        lambda r: sum(isinstance(e, Member) for e in r.events) >= 1
    )

    first = await quiet.members(ROOM, limit=2)
    assert isinstance(first, MembersPage)
    assert [m.name for m in first.members] == ["alice", "bob"] and first.more
    rest = await quiet.members(ROOM, after=first.members[-1].name, limit=2)
    assert [m.name for m in rest.members] == ["carol", "dave"] and rest.more
    last = await quiet.members(ROOM, after="dave")
    assert [m.name for m in last.members] == ["quinn"] and not last.more
    assert (await loud.join(ROOM)).count is None  # no members_limit: the core joined

    with pytest.raises(ClientError) as refused:
        await quiet.members("#elsewhere")
    assert refused.value.code == "no_such_room"
    with pytest.raises(ClientError) as refused:
        await quiet.members(ROOM, limit=0)  # refused locally, before it is sent
    assert refused.value.code == "bad_frame"
