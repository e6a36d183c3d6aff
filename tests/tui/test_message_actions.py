"""Pilot tests at 80x24 of what is done to messages: changes arriving, select mode (F7),
reply, react, edit (Up), delete (asked first), the message menu, search (Ctrl+F).

Seeded state and events fed in (no server): what would go to the server is read from
the intents and drafts the app hands to its controller.
"""

from __future__ import annotations

from cfm_common import rules
from cfm_common.frames import Msg, StoredMsg
from cfm_tui.app import ChatApp, ChatOptions
from cfm_tui.config import ChatConfig
from cfm_tui.palette import Intent
from cfm_tui.screens.confirm import ConfirmScreen
from cfm_tui.screens.message_menu import EmojiPicker, MessageMenu
from cfm_tui.screens.search import SearchScreen
from cfm_tui.widgets.conversation_view import ConversationView
from tests.tui.helpers import plain, transcript_text, wait_until
from tests.tui.seed import TZ, seeded_state, ts

BOB = rules.dm_room("alice", "bob")
SIZE = (80, 24)


class RecordingApp(ChatApp):
    """The real app; it also keeps the intents and drafts it handed on."""

    def __init__(self) -> None:
        super().__init__(ChatOptions(config=ChatConfig(idle_minutes=0), animations=False),
                         state=seeded_state(), tz=TZ)
        self.intents: list[Intent] = []
        self.sends: list[tuple[str, str, int | None, int | None]] = []

    def run_intent(self, intent: Intent) -> None:
        self.intents.append(intent)
        super().run_intent(intent)

    def on_conversation_view_send(self, event: ConversationView.Send) -> None:
        # Textual calls the base class's handler too (it walks the MRO).
        self.sends.append((event.room, event.text, event.reply, event.edit))


async def open_bob(pilot) -> ConversationView:
    app = pilot.app
    await app.open_dm("bob")
    await wait_until(pilot, lambda: app.main.active_view() is not None
                     and app.main.active_view().drawn, "bob's conversation drawn")
    return app.main.active_view()


def mode_line(view: ConversationView) -> str:
    bar = view.query_one(".conv-mode")
    return plain(bar) if bar.display else ""


async def test_changes_arriving_show_in_place_and_never_as_messages():
    app = RecordingApp()
    async with app.run_test(size=SIZE) as pilot:
        await open_bob(pilot)
        for event in (Msg(BOB, 5, "bob", "@alice see above", ts(-8), "text", "b5",
                          reply=3, mentions=("alice",)),
                      Msg(BOB, 6, "bob", "awful but nearly done", ts(-7), "text", "b6",
                          change="edit", target=3),
                      Msg(BOB, 7, "bob", "👍", ts(-7), "text", "b7", change="react",
                          target=2, emoji="👍"),
                      Msg(BOB, 8, "bob", "", ts(-6), "text", "b8", change="delete", target=4)):
            await app.handle_event(event)
        await pilot.pause()
        text = transcript_text(app, BOB)
        assert "awful but nearly done (edited)" in text
        assert "┆ Bob: awful but nearly done" in text
        assert "  👍 1" in text
        assert "message deleted" in text and "still here" not in text
        # No entry is a message of its own: the 👍 of alice's (Y) and the reaction only.
        assert text.count("👍") == 2
        assert [line.seq for line in app.state.conversations[BOB].lines()] == [1, 2, 3, 4, 5]


async def test_f7_selects_up_moves_and_r_replies_to_the_selected_message():
    app = RecordingApp()
    async with app.run_test(size=SIZE) as pilot:
        view = await open_bob(pilot)
        await pilot.press("f7")
        assert view.selected == 4 and "r reply" in mode_line(view)
        await pilot.press("up")
        assert view.selected == 3
        await pilot.press("r")
        assert view.selected is None and view.mode == ("reply", 3)
        assert app.screen.focused is view.composer
        assert mode_line(view).startswith("Replying to Bob: awful")
        await pilot.press("o", "k", "enter")
        await pilot.pause()
        assert app.sends == [(BOB, "ok", 3, None)]
        assert view.mode is None and not view.query_one(".conv-mode").display
        pending = app.state.conversations[BOB].pending
        assert [p.reply for p in pending.values()] == [3]


async def test_up_in_an_empty_composer_edits_the_last_message_and_escape_cancels():
    app = RecordingApp()
    async with app.run_test(size=SIZE) as pilot:
        view = await open_bob(pilot)
        await pilot.press("up")
        assert view.mode == ("edit", 2)
        assert view.composer.text == "hi bob! how are the exams? (Y)"
        assert mode_line(view).startswith("Editing your message")
        await pilot.press("escape")
        assert view.mode is None and view.composer.text == ""
        await pilot.press("up", "ctrl+u", *"hi bob", "enter")
        await pilot.pause()
        assert app.sends == [(BOB, "hi bob", None, 2)]


async def test_up_with_a_draft_moves_the_cursor_and_edits_nothing():
    app = RecordingApp()
    async with app.run_test(size=SIZE) as pilot:
        view = await open_bob(pilot)
        await pilot.press("a", "ctrl+j", "b", "up")
        assert view.mode is None and view.composer.cursor_location == (0, 1)


async def test_a_reacts_with_an_emoji_from_the_picker_classics_first():
    app = RecordingApp()
    async with app.run_test(size=SIZE) as pilot:
        await open_bob(pilot)
        await pilot.press("f7", "a")
        await wait_until(pilot, lambda: isinstance(app.screen, EmojiPicker), "the picker")
        options = app.screen.query_one("OptionList")
        assert [options.get_option_at_index(i).id for i in range(4)] == ["👍", "👎", "🙂",
                                                                          "😃"]
        await pilot.press("enter")
        await pilot.pause()
        assert Intent("react", BOB, 4, "👍") in app.intents


async def test_d_asks_before_deleting_and_cancel_is_the_default():
    app = RecordingApp()
    async with app.run_test(size=SIZE) as pilot:
        await open_bob(pilot)
        await pilot.press("f7", "up", "up", "d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("enter")  # Cancel has the focus
        await pilot.pause()
        assert not [i for i in app.intents if i.action == "delete"]
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "asked again")
        await pilot.press("tab", "enter")
        await pilot.pause()
        assert Intent("delete", BOB, 2) in app.intents


async def test_enter_in_select_mode_offers_what_fits_the_message():
    app = RecordingApp()
    async with app.run_test(size=SIZE) as pilot:
        view = await open_bob(pilot)
        await pilot.press("f7", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MessageMenu), "the menu")
        menu = app.screen.query_one("OptionList")
        assert [menu.get_option_at_index(i).id for i in range(menu.option_count)] == \
            ["reply", "react"]  # bob's message, in a DM: not ours to edit or delete
        await pilot.press("enter")
        await pilot.pause()
        assert view.mode == ("reply", 4)


async def test_ctrl_f_searches_and_a_hit_opens_its_conversation_there():
    app = RecordingApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: isinstance(app.screen, SearchScreen), "search")
        await pilot.press(*"lake", "enter")
        await pilot.pause()
        assert Intent("search", value="lake") in app.intents
        screen = app.screen
        assert plain(screen.query_one("#search-status")) == "Not signed in."
        # What a server would answer (SDK search is wired in live tests).
        results = app.controller.search.results
        results.error = None
        results.hits = [StoredMsg(BOB, 3, "bob", "we can all go to the lake", ts(-10), "text")]
        screen.show_results()
        hits = screen.query_one("#search-hits")
        assert "Bob" in hits.get_option_at_index(0).prompt.plain
        assert "lake" in hits.get_option_at_index(0).prompt.plain
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: app.main.active_room == BOB
                         and app.main.active_view().selected == 3, "the hit selected")


async def test_the_selected_message_is_scrolled_into_view_and_a_click_back_types_again():
    app = RecordingApp()
    conv = app.state.conversation(BOB)
    for seq in range(5, 45):
        conv.add_message(Msg(BOB, seq, "bob", f"line {seq}", ts(seq), "text", f"b{seq}"))
    async with app.run_test(size=SIZE) as pilot:
        view = await open_bob(pilot)
        await pilot.press("f7", *["up"] * 30)
        assert view.selected == 14
        await pilot.pause()
        await pilot.pause()
        transcript = view.transcript
        body = view.query_one("#transcript-body")
        text = body.render().plain
        row = text.split("\n").index("  line 14")
        assert transcript.scroll_y <= row < transcript.scroll_y + transcript.size.height
        view.composer.focus()
        await pilot.pause()
        assert view.selected is None


async def test_the_message_menu_says_who_reacted():
    """The transcript shows counts (👍 2); the menu of a message names who reacted."""
    app = RecordingApp()
    async with app.run_test(size=SIZE) as pilot:
        await open_bob(pilot)
        for seq, who, emoji in ((5, "bob", "👍"), (6, "alice", "👍"), (7, "bob", "💖")):
            await app.handle_event(Msg(BOB, seq, who, emoji, ts(-7), "text", f"r{seq}",
                                       change="react", target=4, emoji=emoji))
        await pilot.pause()
        assert "👍 2" in transcript_text(app, BOB)
        await pilot.press("f7", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MessageMenu), "the menu")
        note = plain(app.screen.query_one(".picker-note"))
        assert "👍 Bob, Alice" in note.replace("\n", " ") and "💖 Bob" in note
