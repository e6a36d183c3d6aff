"""The seen file records exactly what the application was handed, even after close()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfm_common import tokens
from cfm_common.frames import Msg

LOBBY = "#lobby"


async def test_messages_read_after_close_are_saved_at_once(
    server: Any, clients: Any, tmp_path: Path
) -> None:
    seen = tmp_path / "alice.seen.json"
    bob = clients(server.url, "bob")
    await bob.connect()
    await bob.join(LOBBY)
    alice = clients(server.url, "alice", seen_file=seen)
    await alice.connect()
    await alice.join(LOBBY)
    acks = [await bob.say(f"m{i}", room=LOBBY) for i in range(3)]
    # Her own say's ack comes on her connection after bob's three messages: once it is
    # back, all three wait in her event queue, unread (her own message follows them).
    await alice.say("mine", room=LOBBY)

    handed: list[Msg] = []
    async for event in alice:
        if isinstance(event, Msg):
            handed.append(event)
            if event.seq == acks[0].seq:
                break  # one read before close: the rest is still queued
    await alice.close()
    assert tokens.read_seen(seen)[LOBBY][0] == acks[0].seq

    # The program goes on reading what was queued, then would exit at once.
    async for event in alice:
        if isinstance(event, Msg):
            handed.append(event)
    assert [m.text for m in handed] == ["m0", "m1", "m2", "mine"]
    # No timer left to fire: the file already says everything was handed.
    assert tokens.read_seen(seen)[LOBBY][0] == handed[-1].seq
