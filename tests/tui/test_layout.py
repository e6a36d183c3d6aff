"""Layout and window behaviour on seeded state: narrow panes, the shake, tab titles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cfm_common import rules
from cfm_common.frames import Msg
from cfm_tui.app import ChatApp, ChatOptions
from cfm_tui.config import ChatConfig
from tests.tui.seed import TZ, seeded_state, ts

BOB = rules.dm_room("alice", "bob")


@asynccontextmanager
async def narrow_in_the_list() -> AsyncIterator[tuple[ChatApp, Any]]:
    """80x24 (one pane), a DM with bob open behind the buddy list, which has the focus."""
    app = app_with()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.open_dm("bob")
        await pilot.pause()
        await pilot.press("f2")
        assert not app.main.query_one("#chat-pane").display
        yield app, pilot


def app_with(animations: bool = False) -> ChatApp:
    options = ChatOptions(config=ChatConfig(idle_minutes=0, bell=True), animations=animations)
    return ChatApp(options, state=seeded_state(), tz=TZ)


async def test_narrow_shows_one_pane_and_f2_switches():
    app = app_with()
    async with app.run_test(size=(80, 30)) as pilot:
        await pilot.pause()
        main = app.main
        assert main.has_class("-narrow")
        buddy, chat = main.query_one("#buddy-pane"), main.query_one("#chat-pane")
        assert buddy.display and not chat.display
        await app.open_dm("bob")  # opening a conversation shows it
        await pilot.pause()
        assert chat.display and not buddy.display
        assert app.focused is main.active_view().composer
        await pilot.press("f2")
        assert buddy.display and not chat.display
        await pilot.press("f2")
        assert chat.display and not buddy.display


async def test_wide_shows_both_panes():
    app = app_with()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert not app.main.has_class("-narrow")
        assert app.main.query_one("#buddy-pane").display
        await pilot.resize_terminal(90, 40)
        await pilot.pause()
        assert app.main.has_class("-narrow")


async def test_a_received_nudge_shakes_the_window_and_it_comes_back():
    app = app_with(animations=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        window = app.main.query_one("#window")
        offsets = set()
        await app.apply_update(app.state.apply(Msg(BOB, 5, "bob", "", ts(0), "nudge", "n")))
        for _ in range(40):
            offsets.add((window.styles.offset.x.value, window.styles.offset.y.value))
            await pilot.pause(0.02)
        assert len(offsets) > 1  # it moved
        assert (window.styles.offset.x.value, window.styles.offset.y.value) == (0, 0)
        assert app.main.shakes == 1 and app.bells == 1


async def test_background_tab_title_counts_unread():
    app = app_with()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.open_room("#lobby")
        await app.apply_update(app.state.apply(Msg(BOB, 5, "bob", "psst", ts(0), "text", "p")))
        await pilot.pause()
        tabs = app.main.query_one("#tabs")
        titles = [str(tab.label) for tab in tabs.query("ContentTab")]
        assert any(t.startswith("Bob (") for t in titles), titles
        assert app.main.active_room == "#lobby"


async def test_own_psm_shows_emoji_until_edited():
    from textual.widgets import Input

    app = app_with()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        psm = app.main.query_one("#me-psm", Input)
        assert psm.value == "Listening to: Daft Punk (8)"
        assert psm._value.plain == "Listening to: Daft Punk 🎵"
        psm.focus()
        await pilot.pause()
        assert psm._value.plain == "Listening to: Daft Punk (8)"  # the codes, to edit


async def test_the_status_list_hides_the_buddy_list_under_it():
    from textual.widgets import Select

    app = app_with()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        select = app.main.query_one("#me-status", Select)
        select.expanded = True
        await pilot.pause()
        overlay = select.query_one("SelectOverlay")
        pane = app.main.query_one("#buddy-pane")
        assert overlay.region.x <= pane.region.x
        assert overlay.region.right >= pane.content_region.right - 1  # up to the border
        assert overlay.styles.border_left[0] != ""


async def test_long_names_stay_on_one_line_cut_with_an_ellipsis():
    app = app_with()
    app.state.display = "山田太郎" * 8  # twice as wide as it is long
    app.state.people["bob"].psm = "a personal message far too long for any header " * 4
    app.state.people["erin"].display = "Erin with a display name longer than the panel"
    async with app.run_test(size=(120, 40)) as pilot:
        await app.open_dm("bob")
        await app.open_room("#lobby")
        await pilot.pause()
        me = app.main.query_one("#me-name")
        assert me.content_size.height == 1
        view = app.main.view_for("#lobby")
        members = view.query_one(".conv-members")
        count = len(app.state.conversations["#lobby"].members)
        width = members.content_size.width
        # One line a member: a long name is cut, not wrapped onto a second line.
        assert members.get_content_height(members.content_size, app.size, width) == count


async def test_a_wide_terminal_gives_the_buddy_list_room_for_personal_messages():
    app = app_with()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        at_120 = app.main.query_one("#buddy-pane").size.width
    app = app_with()
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        at_200 = app.main.query_one("#buddy-pane").size.width
    assert 37 <= at_120 <= 38 and at_200 >= 58


async def test_narrow_keys_typed_in_the_list_are_said_to_be_not_typed():
    """Narrow, with the list on screen and a conversation open behind it, letters typed
    in the list go nowhere: the toast says so (it said they went into the
    conversation, which then held nothing)."""
    async with narrow_in_the_list() as (app, pilot):
        main = app.main
        await pilot.press(*"hey")
        await pilot.pause()
        hints = [n.message for n in app._notifications]
        assert any(h.startswith("Not typed") and "F2" in h for h in hints), hints
        assert main.active_view().composer.text == ""


async def test_two_opens_of_one_room_at_once_both_get_its_view():
    """A tab reopened at start and its room's first event open it at the same time:
    the second open waits for the first one's view (it found the tab named but not
    mounted, and failed: the reopen worker's AssertionError, the tab never shown)."""
    app = app_with()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        views = await asyncio.gather(app.main.open_conversation("#lobby", activate=False),
                                     app.main.open_conversation("#lobby", activate=True))
        assert views[0] is views[1] is app.main.active_view()


async def test_the_connection_bar_is_cut_with_an_ellipsis_when_narrow():
    """At 60 columns the server address does not fit: it ends in "…", not cut bare (it
    showed "signed in as alice  ·" and nothing after, as if no server were named)."""
    from textual.widgets import Static

    app = app_with()
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        bar = app.main.query_one("#connection", Static)
        app.main.server = "ws://127.0.0.1:18741/ws,ws://127.0.0.1:18742/ws"
        bar.show(app.state, app.main.server)
        await pilot.pause()
        screen = app.screen._compositor.render_strips()  # the screen as drawn
        shown = screen[bar.region.y].text.rstrip()
        assert shown.endswith("…") and "signed in as alice" in shown, shown


async def test_alt_digit_in_the_narrow_list_switches_tabs_and_is_no_typed_key():
    """A terminal sends Alt+1 as a key with its character, "1": in the list, narrow, it
    said "Not typed" while it switched to the tab, as it should."""
    from textual import events

    async with narrow_in_the_list() as (app, pilot):
        main = app.main
        app.post_message(events.Key("alt+1", "1"))
        await pilot.pause()
        assert main.query_one("#chat-pane").display
        assert not any(n.message.startswith("Not typed") for n in app._notifications)
