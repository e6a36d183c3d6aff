"""Two cfm chat windows at 80x24 against a real server: alice edits with Up, reacts and
answers with F7, deletes after being asked; bob sees each in place, and a mention of
him is highlighted and counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from textual.widgets import Static

from cfm_tui.screens.confirm import ConfirmScreen
from cfm_tui.screens.message_menu import EmojiPicker
from tests.tui.helpers import make_app, plain, transcript_text, wait_until

SIZE = (80, 24)
ROOM = "#games"


@asynccontextmanager
async def in_the_room(tmp_path: Path, url: str) -> AsyncIterator[tuple[Any, ...]]:
    """alice's and bob's windows (app, pilot each), both in ROOM."""
    alice = make_app(tmp_path, url, "alice")
    bob = make_app(tmp_path, url, "bob")
    async with alice.run_test(size=SIZE) as pa, bob.run_test(size=SIZE) as pb:
        await wait_until(pa, lambda: alice.main is not None, "alice signed in")
        await wait_until(pb, lambda: bob.main is not None, "bob signed in")
        alice.join_room(ROOM)
        await wait_until(pa, lambda: alice.main.active_room == ROOM, "alice in the room")
        bob.join_room(ROOM)
        await wait_until(pb, lambda: bob.main.active_room == ROOM, "bob in the room")
        yield alice, pa, bob, pb


async def test_edit_react_reply_delete_and_mention_between_two_windows(server, tmp_path):
    async with in_the_room(tmp_path, server.url) as (alice, pa, bob, pb):

        def at_bob() -> str:
            return transcript_text(bob, ROOM)

        await pa.press(*"helo bob", "enter")
        await wait_until(pb, lambda: "helo bob" in at_bob(), "the message at bob")
        # Up in the empty composer: the last message, to correct.
        await wait_until(pa, lambda: not alice.state.conversations[ROOM].pending, "acked")
        await pa.press("up", "ctrl+u", *"hello @bob", "enter")
        await wait_until(pb, lambda: "hello @bob (edited)" in at_bob(), "the edit at bob")
        assert "helo bob" not in at_bob()
        # An edit does not change a message's mentions: a new one does.
        await pa.press(*"@bob chess?", "enter")
        await wait_until(pb, lambda: "@bob chess?" in at_bob(), "the mention at bob")
        conv = bob.state.conversations[ROOM]
        mention = next(line for line in conv.lines() if line.text == "@bob chess?")
        assert mention.mentions_me
        # Bob reacts to alice's first message and answers her second.
        view = bob.main.active_view()
        await pb.press("f7")
        assert view.selected == mention.seq
        await pb.press("up", "a")
        await wait_until(pb, lambda: isinstance(bob.screen, EmojiPicker), "the picker")
        await pb.press("enter")  # (Y): 👍
        await wait_until(pa, lambda: "👍 1" in transcript_text(alice, ROOM), "the reaction")
        assert view.selected is not None  # still selecting, after the picker
        await pb.press("down", "r", *"sure", "enter")
        await wait_until(pa, lambda: "┆ alice: @bob chess?" in transcript_text(alice, ROOM),
                         "the answer, quoting")
        # Alice takes her first message back, after being asked.
        first = alice.state.conversations[ROOM].messages[0].seq
        await pa.press("f7", "up", "up", "d")
        await wait_until(pa, lambda: isinstance(alice.screen, ConfirmScreen), "asked")
        question = plain(alice.screen.query_one("#confirm-detail", Static))
        assert question == "alice: hello @bob"
        await pa.press("tab", "enter")
        await wait_until(pb, lambda: conv.message(first) is not None
                         and conv.message(first).deleted, "deleted at bob")
        assert "hello @bob" not in at_bob() and "message deleted" in at_bob()


async def test_editing_a_message_does_not_show_you_typing(server, tmp_path):
    """Up, then keys: the edit of a sent message. No "alice is typing" at bob: no new
    message follows it to end that line (it stayed until it expired)."""
    async with in_the_room(tmp_path, server.url) as (alice, pa, bob, pb):
        await pa.press(*"helo", "enter")
        await wait_until(pb, lambda: "helo" in transcript_text(bob, ROOM), "at bob")
        await wait_until(pa, lambda: not alice.state.conversations[ROOM].pending, "acked")
        await pa.press("up", "ctrl+u", *"hello", "enter")
        # The typing frame goes out at once; the edit after it is stored first.
        await wait_until(pb, lambda: "hello (edited)" in transcript_text(bob, ROOM), "edit")
        assert "alice" not in bob.state.conversations[ROOM].typing
