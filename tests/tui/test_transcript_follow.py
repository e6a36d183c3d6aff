"""The transcript follows new messages through resizes; read marks ("Seen") go out only
for messages shown on screen; scrolled up, a "N new messages ↓" marker; the keyboard
scrolls it. One real app and an SDK client against a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cfm_common import rules
from cfm_common.client import Client
from tests.tui.helpers import active_view, make_app, plain, transcript_text, wait_until

DM = rules.dm_room("alice", "bob")
LONG = 40  # more lines than any of the sizes below shows


def at_bottom(app) -> bool:
    transcript = active_view(app).transcript
    return transcript.max_scroll_y > 0 and transcript.scroll_y == transcript.max_scroll_y


def marker(app) -> str:
    widget = active_view(app).query_one(".conv-new")
    return plain(widget) if widget.display else ""


@asynccontextmanager
async def alice_in_a_long_dm(server_factory, tmp_path) -> AsyncIterator[tuple]:
    """alice's app at 100x32 in a DM holding more lines than fit, at its bottom; bob an
    SDK client."""
    server = await server_factory(rate_limits=False)
    app = make_app(tmp_path, server.url, "alice")
    async with Client(server.url, "bob", token_file=False) as bob, \
            app.run_test(size=(100, 32)) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        for i in range(1, LONG + 1):
            await bob.say(f"line {i}", to="alice")
        await app.open_dm("bob")
        await wait_until(pilot, lambda: f"line {LONG}" in transcript_text(app, DM),
                         "the history")
        await wait_until(pilot, lambda: at_bottom(app), "at the bottom")
        yield app, pilot, bob, app.state.conversations[DM]


async def test_the_transcript_follows_through_resizes(server_factory, tmp_path):
    async with alice_in_a_long_dm(server_factory, tmp_path) as (app, pilot, bob, conv):
        for width, height in ((60, 20), (200, 50), (100, 32), (60, 20), (100, 32)):
            await pilot.resize_terminal(width, height)
            await pilot.pause()
            text = f"after {width}x{height}"
            ack = await bob.say(text, to="alice")
            await wait_until(pilot, lambda t=text: t in transcript_text(app, DM), text)
            await wait_until(pilot, lambda: at_bottom(app), f"bottom at {width}x{height}")
            # Shown, so read: the read mark covers it.
            await wait_until(pilot, lambda a=ack: conv.read_mark >= a.seq, "read mark")
            assert marker(app) == ""


async def test_scrolled_up_a_marker_counts_new_messages_and_nothing_is_marked_read(
        server_factory, tmp_path):
    async with alice_in_a_long_dm(server_factory, tmp_path) as (app, pilot, bob, conv):
        transcript = active_view(app).transcript
        assert app.focused is active_view(app).composer
        await pilot.press("pageup")  # from the composer
        await wait_until(pilot, lambda: not at_bottom(app), "scrolled up")
        read_before = conv.read_mark
        y = transcript.scroll_y
        await bob.say("one", to="alice")
        ack = await bob.say("two", to="alice")
        await wait_until(pilot, lambda: conv.latest_seq == ack.seq, "both arrived")
        await wait_until(pilot, lambda: marker(app) == "2 new messages ↓", "the marker")
        assert transcript.scroll_y == y  # the reader's place is kept
        assert conv.read_mark == read_before  # not shown, so not read
        await pilot.press("pagedown", "pagedown", "pagedown")
        await wait_until(pilot, lambda: conv.read_mark == ack.seq, "read once shown")
        assert marker(app) == ""
        # Home goes to the top (older history); End back to the newest, following.
        await pilot.press("home")
        await wait_until(pilot, lambda: transcript.scroll_y == 0 or conv.loaded_all,
                         "at the top")
        await pilot.press("end")
        await wait_until(pilot, lambda: at_bottom(app), "at the bottom again")
        ack = await bob.say("three", to="alice")
        await wait_until(pilot, lambda: conv.read_mark == ack.seq, "followed and read")
        await wait_until(pilot, lambda: at_bottom(app), "still at the bottom")
        # With a draft, Home and End move the composer's cursor instead.
        await pilot.press(*"draft", "home")
        assert active_view(app).composer.cursor_location == (0, 0)
        assert at_bottom(app)
