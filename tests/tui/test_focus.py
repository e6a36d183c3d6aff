"""Keys pressed as a user would: focus, app-level keys over the composer, narrow panes.

Seeded state, no server: what is checked here is where keys and focus go.
"""

from __future__ import annotations

from cfm_common import rules
from cfm_common.frames import Msg
from cfm_tui.app import ChatApp, ChatOptions
from cfm_tui.config import ChatConfig
from cfm_tui.screens.ask import AskScreen
from cfm_tui.widgets.buddy_list import BuddyList
from cfm_tui.widgets.composer import Composer
from tests.tui.helpers import transcript_text, wait_until
from tests.tui.seed import TZ, seeded_state, ts

WIDE = (120, 40)
NARROW = (80, 30)


def seeded_app() -> ChatApp:
    options = ChatOptions(config=ChatConfig(idle_minutes=0), animations=False)
    return ChatApp(options, state=seeded_state(), tz=TZ)


async def test_app_keys_win_over_the_composer():
    app = seeded_app()
    async with app.run_test(size=WIDE) as pilot:
        await app.open_dm("bob")
        await pilot.pause()
        assert isinstance(app.focused, Composer)
        # The footer offers the window's keys while the user types.
        shown = {key for key, active in app.screen.active_bindings.items()
                 if active.binding.show and active.node is app.screen}
        assert {"f2", "f4", "f5", "f6"} <= shown, shown
        await pilot.press(*"draft", "f6")
        await pilot.pause()
        assert isinstance(app.screen, AskScreen)  # not TextArea's "select line"
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("f5")
        await pilot.pause()
        assert isinstance(app.screen, AskScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.main.active_view().composer.text == "draft"


async def test_f2_at_full_width_moves_focus_between_list_and_composer():
    app = seeded_app()
    async with app.run_test(size=WIDE) as pilot:
        await app.open_dm("bob")
        await pilot.pause()
        composer = app.main.active_view().composer
        assert app.focused is composer
        await pilot.press("f2")
        assert isinstance(app.focused, BuddyList)
        await pilot.press("f2")
        assert app.focused is composer
        await pilot.press("f2")
        assert isinstance(app.focused, BuddyList)


async def test_narrow_f2_switches_the_visible_pane_with_the_focus():
    app = seeded_app()
    async with app.run_test(size=NARROW) as pilot:
        await app.open_dm("bob")
        await pilot.pause()
        await pilot.press("f2")
        main = app.main
        assert main.query_one("#buddy-pane").display and isinstance(app.focused, BuddyList)
        await pilot.press("f2")
        assert main.query_one("#chat-pane").display
        assert app.focused is main.active_view().composer


async def test_narrowing_while_typing_keeps_the_conversation_and_the_focus():
    app = seeded_app()
    async with app.run_test(size=WIDE) as pilot:
        await app.open_dm("bob")
        await pilot.pause()
        await pilot.press("f2")  # a look at the list, then a click back into the composer
        await pilot.click(".composer")
        await pilot.press(*"half a")
        await pilot.resize_terminal(*NARROW)
        await pilot.pause()
        main = app.main
        assert main.query_one("#chat-pane").display
        assert not main.query_one("#buddy-pane").display
        composer = main.active_view().composer
        assert app.focused is composer
        await pilot.press(*" thought")
        assert composer.text == "half a thought"


async def test_narrowing_in_the_buddy_list_shows_the_list():
    app = seeded_app()
    async with app.run_test(size=WIDE) as pilot:
        await app.open_dm("bob")
        await pilot.pause()
        await pilot.click("#buddies")
        await pilot.resize_terminal(*NARROW)
        await pilot.pause()
        assert app.main.query_one("#buddy-pane").display
        assert isinstance(app.focused, BuddyList)


async def test_f4_with_tabs_left_focuses_the_next_composer():
    app = seeded_app()
    async with app.run_test(size=WIDE) as pilot:
        await app.open_dm("bob")
        await app.open_room("#lobby")
        await pilot.pause()
        await pilot.press("f4")
        await pilot.pause()
        main = app.main
        assert main.active_room is not None and main.active_room != "#lobby"
        composer = main.active_view().composer
        assert app.focused is composer
        await pilot.press(*"still here")
        assert composer.text == "still here"
        await pilot.press("f4")
        await pilot.pause()
        assert isinstance(app.focused, BuddyList)


async def test_message_toasts_show_emoticons_as_the_transcript_does():
    app = seeded_app()
    async with app.run_test(size=WIDE) as pilot:
        await app.open_room("#lobby")
        bob = rules.dm_room("alice", "bob")
        await app.apply_update(app.state.apply(
            Msg(bob, 5, "bob", "see you at the lake :) (H)", ts(0), "text", "t1")))
        await pilot.pause()
        toasts = [n.message for n in app._notifications]
        assert "Bob says: see you at the lake 🙂 😎" in toasts, toasts
        assert "see you at the lake 🙂 😎" in transcript_text(app, bob)


def footer_keys(app: ChatApp) -> set[str]:
    return {key for key, active in app.screen.active_bindings.items() if active.binding.show}


async def test_ctrl_g_is_offered_only_in_a_one_to_one_conversation():
    app = seeded_app()
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        assert "ctrl+g" not in footer_keys(app)  # no conversation open
        await app.open_room("#lobby")
        await pilot.pause()
        assert "ctrl+g" not in footer_keys(app)
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert "Nudges are for" not in transcript_text(app, "#lobby")
        await app.open_dm("bob")
        await pilot.pause()
        assert "ctrl+g" in footer_keys(app)
        await pilot.press("f4")  # back to #lobby
        await pilot.pause()
        assert app.main.active_room == "#lobby" and "ctrl+g" not in footer_keys(app)


async def test_ctrl_page_keys_and_alt_digits_move_between_tabs():
    app = seeded_app()
    async with app.run_test(size=WIDE) as pilot:
        bob = rules.dm_room("alice", "bob")
        carol = rules.dm_room("alice", "carol")
        await app.open_dm("bob")
        await app.open_room("#lobby")
        await app.open_dm("carol")
        await pilot.pause()
        main = app.main
        assert main.open_rooms() == [bob, "#lobby", carol] and main.active_room == carol
        await pilot.press("ctrl+pagedown")  # wraps around
        await pilot.pause()
        assert main.active_room == bob and app.focused is main.active_view().composer
        await pilot.press("ctrl+pageup")
        await pilot.pause()
        assert main.active_room == carol
        await pilot.press("alt+2")
        await pilot.pause()
        assert main.active_room == "#lobby" and app.focused is main.active_view().composer
        await pilot.press(*"hi")  # typing goes on in the tab switched to
        assert main.active_view().composer.text == "hi"
        await pilot.press("alt+9")  # no ninth tab: nothing happens
        await pilot.pause()
        assert main.active_room == "#lobby"
        titles = [title for title, _, _ in app.palette_commands()]
        assert "Go to conversation with Bob" in titles and "Go to #lobby" in titles
        run = next(cb for title, cb, _ in app.palette_commands()
                   if title == "Go to conversation with Bob")
        run()
        await wait_until(pilot, lambda: main.active_room == bob, "bob's tab shown")


async def test_the_buddy_list_greys_its_dots_while_reconnecting():
    from cfm_common.client import ConnectionState, StateChanged

    app = seeded_app()
    async with app.run_test(size=WIDE) as pilot:
        buddies = app.main.query_one(BuddyList)

        def rows() -> str:
            return "\n".join(str(buddies.get_option_at_index(i).prompt)
                             for i in range(buddies.option_count))

        assert "(Busy)" in rows()
        await app.handle_event(StateChanged(ConnectionState.RECONNECTING, 5.0, "test"))
        await pilot.pause()
        assert "(Busy)" not in rows()  # statuses unknown until the connection is back
        await app.handle_event(StateChanged(ConnectionState.CONNECTED, None, None))
        await pilot.pause()
        assert "(Busy)" in rows()
