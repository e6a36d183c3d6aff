"""After a reconnect, `cfm chat` shows a group room's members as they are now, not as
they were when the connection dropped: the server never replays `member` frames, and
the SDK catches up on messages with `history`, which says nothing of who joined or left.
The buddy list's presence is the new welcome's too."""

from __future__ import annotations

import random

from textual.widgets import Static

from cfm_common.client import Client
from tests.faults.proxy import CuttingProxy
from tests.ports import free_port
from tests.tui.helpers import (
    SIZE,
    buddy_rows,
    header_text,
    make_app,
    members_text,
    plain,
    transcript_text,
    wait_until,
)

ROOM = "#trio"


async def test_members_and_presence_after_a_reconnect(server, tmp_path):
    # Alice's window reaches the server through a proxy: killing its connections (and
    # refusing new ones for a while) is a network blip, the server staying up.
    link = CuttingProxy("127.0.0.1", server.port, random.Random(1))
    link.cutting = False
    await link.start()
    alice = make_app(tmp_path, link.url(), "alice")
    async with Client(server.url, "carol", display="Carol C.", token_file=False) as carol, \
            Client(server.url, "dave", display="Dave D.", token_file=False) as dave, \
            Client(server.url, "bob", display="Bob B.", token_file=False) as bob, \
            alice.run_test(size=SIZE) as pa:
        await wait_until(pa, lambda: alice.main is not None, "alice signed in")
        await carol.join(ROOM)
        alice.join_room(ROOM)
        alice.contact("add", "bob")
        await wait_until(pa, lambda: "Carol C." in members_text(alice, ROOM), "carol in the panel")
        assert "2 members" in header_text(alice, ROOM)
        await wait_until(pa, lambda: "Online (1)" in buddy_rows(alice), "bob online")

        real_port = link.upstream_port
        link.upstream_port = free_port()  # nothing there: every try fails until put back
        link.drop_all()
        bar = alice.main.query_one("#connection", Static)
        await wait_until(pa, lambda: "Reconnecting" in plain(bar), "alice disconnected")
        # While she is away: carol leaves, dave joins, bob signs out.
        await carol.leave(ROOM)
        await dave.join(ROOM)
        await bob.close()

        link.upstream_port = real_port
        assert alice.controller is not None
        alice.show_now(alice.controller.reconnect_now())
        await wait_until(pa, lambda: "Connected" in plain(bar), "alice reconnected",
                         timeout=30)
        await wait_until(pa, lambda: "Dave D." in members_text(alice, ROOM)
                         and "Carol C." not in members_text(alice, ROOM), "the members of now")
        assert alice.state.conversations[ROOM].members == {"alice", "dave"}
        assert "2 members" in header_text(alice, ROOM)
        text = transcript_text(alice, ROOM)
        assert text.count("Carol C. has left the conversation.") == 1
        assert "Dave D. has joined the conversation." in text
        await wait_until(pa, lambda: "Offline (1)" in buddy_rows(alice), "bob offline")
        assert not alice.state.people["bob"].online
    await link.close()


async def test_a_room_left_elsewhere_while_away_closes(server, tmp_path):
    link = CuttingProxy("127.0.0.1", server.port, random.Random(2))
    link.cutting = False
    await link.start()
    token = tmp_path / "alice.token"  # her other session signs in with it
    alice = make_app(tmp_path, link.url(), "alice", token_file=token)
    async with alice.run_test(size=SIZE) as pa:
        await wait_until(pa, lambda: alice.main is not None, "alice signed in")
        alice.join_room(ROOM)
        await wait_until(pa, lambda: alice.main.is_open(ROOM), "the room's tab")
        real_port = link.upstream_port
        link.upstream_port = free_port()
        link.drop_all()
        bar = alice.main.query_one("#connection", Static)
        await wait_until(pa, lambda: "Reconnecting" in plain(bar), "alice disconnected")
        # Her other session (another machine) leaves the room meanwhile.
        async with Client(server.url, "alice", token_file=token) as other:
            await other.leave(ROOM)
        link.upstream_port = real_port
        assert alice.controller is not None
        alice.show_now(alice.controller.reconnect_now())
        await wait_until(pa, lambda: "Connected" in plain(bar), "alice reconnected",
                         timeout=30)
        await wait_until(pa, lambda: not alice.main.is_open(ROOM), "the tab closed")
        assert ROOM not in alice.state.conversations
    await link.close()
