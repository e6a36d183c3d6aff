"""A removed account's handle claimed by someone new, in both modes: bob's cfm chat
shows his DM with the new holder, both sides' messages (docs/tui.md). The new DM room's
seqs start at 1 again; the SDK's cursor and the conversation took them for the old
room's, already seen, and showed neither side's. On a cluster bob is on the other node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cfm_common.frames import Member, Msg
from cfm_tui.outcome import run_all
from cfm_tui.session import ChatSession, SignIn
from tests.modes import nodes_of
from tests.server.test_admin_remove_dm import DM, chat, fed_until, remove_alice, signed_in

pytestmark = pytest.mark.both_modes


async def test_bob_chats_with_the_new_holder_of_a_removed_handle(
        server_factory: Any, server_mode: str, tmp_path: Path) -> None:
    server = await server_factory()
    alice = await signed_in(server.url, "alice")
    bob = await chat(nodes_of(server)[-1].url, "bob", tmp_path)
    new_alice = None
    try:
        for i in range(3):
            await alice.send({"t": "say", "to": "bob", "text": f"old {i}", "id": f"o{i}"})
            await alice.recv_until("ack")
        await fed_until(bob, lambda e: isinstance(e, Msg) and e.text == "old 2")
        await alice.close()

        server = await remove_alice(server_factory, server, server_mode)
        if server_mode == "cluster":
            await fed_until(bob, lambda e: isinstance(e, Member) and e.room == DM)
        else:  # bob signs in again after the restart (the app does it on its own)
            assert bob.session is not None
            await bob.session.close()
            bob.session = ChatSession(nodes_of(server)[-1].url, SignIn("bob"),
                                      token_file=tmp_path / "bob.token")
            bob.state.on_welcome(await bob.session.connect())
        assert "alice" in bob.state.gone

        new_alice = await signed_in(server.url, "alice")  # claims the free handle
        await new_alice.send({"t": "say", "to": "bob", "text": "new 1", "id": "n1"})
        await new_alice.recv_until("ack")
        await fed_until(bob, lambda e: isinstance(e, Msg) and e.text == "new 1")
        await run_all(bob.submit_draft(DM, "hi new alice"))
        reply = await new_alice.recv_until("msg")
        assert reply["text"] == "hi new alice"

        conv = bob.state.conversation(DM)
        assert [m.text for m in conv.messages] == ["new 1", "hi new alice"]
        assert not any("no longer has an account" in line.text for line in conv.lines())
    finally:
        for client in (alice, new_alice):
            if client is not None:
                await client.close()
        if bob.session is not None:
            await bob.session.close()
