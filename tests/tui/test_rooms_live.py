"""Group rooms against a real server: a room tab opened by a message that came while
the user was away shows the room's real members, by their display names."""

from __future__ import annotations

from cfm_common.client import Client
from tests.tui.helpers import (
    SIZE,
    header_text,
    make_app,
    members_text,
    transcript_text,
    wait_until,
)

ROOM = "#trio"


async def test_a_room_tab_opened_at_sign_in_shows_its_members(server, tmp_path):
    first = make_app(tmp_path, server.url, "alice")
    async with first.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: first.main is not None, "signed in")
        first.join_room(ROOM)
        await wait_until(pilot, lambda: first.main.is_open(ROOM), "joined")
    async with Client(server.url, "carol", display="Carol C.", token_file=False) as carol, \
            Client(server.url, "dave", display="Dave D.", token_file=False) as dave:
        await carol.join(ROOM)
        await dave.join(ROOM)
        await carol.say("while you were out", room=ROOM)
        app = make_app(tmp_path, server.url, "alice")  # the same machine: its token
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.main is not None, "signed in again")
            await wait_until(pilot, lambda: "while you were out" in transcript_text(app, ROOM),
                             "the message, in its tab")
            await wait_until(pilot, lambda: "3 members" in header_text(app, ROOM), "the count")
            await wait_until(pilot, lambda: "Carol C." in members_text(app, ROOM), "the members")
            assert "Dave D." in members_text(app, ROOM)
            assert "Carol C. says" in transcript_text(app, ROOM)
