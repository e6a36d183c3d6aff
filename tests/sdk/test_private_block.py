"""Private blocking through the SDK: the blocked user's sends succeed; the blocker's
program never sees them (the placeholders keep its rooms gapless, unseen)."""

from __future__ import annotations

from typing import Any

from cfm_common.frames import Msg
from tests.sdk.conftest import Recorder

ROOM = "dm:alice:bob"


async def test_sends_to_a_blocker_succeed_and_the_blocker_sees_none_of_them(
    server: Any, clients: Any
) -> None:
    alice = clients(server.url, "alice")
    bob = clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    seen = Recorder(alice)
    await alice.contact("block", "bob")
    acks = [await bob.say("are you there?", to="alice"), await bob.nudge("alice")]
    assert [a.seq for a in acks] == [1, 2]
    await alice.contact("unblock", "bob")
    await bob.say("now?", to="alice")
    await seen.wait(lambda r: any(m.text == "now?" for m in r.msgs(ROOM)))
    assert [(m.seq, m.text, m.kind) for m in seen.msgs(ROOM)] == [(3, "now?", "text")]
    assert not any(isinstance(e, Msg) and e.hidden for e in seen.events)
    # A history page (not an event) still carries the placeholders, so paging can go on.
    page = await alice.history(ROOM, after=0)
    assert [(m.seq, m.text, m.hidden) for m in page.msgs] == [
        (1, "", True), (2, "", True), (3, "now?", None)]
