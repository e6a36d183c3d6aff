"""The main window: buddy list beside the conversation tabs, connection bar, footer.

Below 100 columns only one pane shows at a time (F2 switches). The screen renders the
:class:`ChatState` when told what changed. It does what is layout (tabs, panes, focus)
and asks the questions (add whom? block them?); everything else its widgets and the
palette ask for goes up as an :class:`IntentRequested` message, for the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import tzinfo
from typing import Any, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static, TabbedContent, TabPane

from cfm_tui import palette, render
from cfm_tui.intents import IntentRequested
from cfm_tui.palette import Intent
from cfm_tui.sanitize import clean_line
from cfm_tui.screens.ask import ask_contact, ask_display, ask_room, room_of
from cfm_tui.screens.confirm import confirm_contact, confirm_leave
from cfm_tui.screens.hints import CHAT_HIDDEN, EMPTY_HINT, HINT_EVERY_S, NOWHERE_TO_TYPE
from cfm_tui.screens.message_menu import ask_about_message
from cfm_tui.screens.shake import SHAKE_OFFSETS, shake_window
from cfm_tui.state import ChatState, Update
from cfm_tui.widgets.added_you import AddedYouPrompt
from cfm_tui.widgets.buddy_list import BuddyList
from cfm_tui.widgets.connection_bar import ConnectionBar
from cfm_tui.widgets.conversation_view import ConversationView
from cfm_tui.widgets.footer import ChatFooter
from cfm_tui.widgets.me_header import MeHeader
from cfm_tui.widgets.message_select import MessageSelect

NARROW_BELOW = 100
__all__ = ["SHAKE_OFFSETS", "MainScreen"]


class MainScreen(Screen[None]):
    AUTO_FOCUS = "#buddies"
    # Priority: the window's keys must win over the focused widget's own (the composer
    # is a TextArea, which binds F6 and F7 to selections), and show in the footer then.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+g", "nudge", "Nudge", id="chat.nudge", priority=True),
        Binding("f2", "switch_pane", "Buddies/Chat", id="chat.switch_pane", priority=True),
        Binding("f3", "answer_request", "Answer request", id="chat.answer", priority=True),
        Binding("f4", "close_conversation", "Close", id="chat.close", priority=True),
        Binding("f5", "add_contact", "Add contact", id="chat.add_contact", priority=True),
        Binding("f6", "join_room", "Join room", id="chat.join_room", priority=True),
        Binding("ctrl+f", "search", "Search", id="chat.search", show=False, priority=True),
        # Not in the footer: it has no room for them at 80 columns (docs/tui.md lists them).
        Binding("ctrl+pagedown", "next_tab(1)", "Next tab", id="chat.next_tab", show=False,
                priority=True),
        Binding("ctrl+pageup", "next_tab(-1)", "Previous tab", id="chat.previous_tab",
                show=False, priority=True),
        *(Binding(f"alt+{n}", f"go_to_tab({n})", f"Tab {n}", id=f"chat.tab_{n}",
                  show=False, priority=True) for n in range(1, 10)),
    ]

    narrow: reactive[bool] = reactive(False)
    show_chat: reactive[bool] = reactive(False)

    def __init__(self, state: ChatState, *, tz: tzinfo | None = None, server: str = "") -> None:
        super().__init__()
        self.state = state
        self.tz = tz
        self.server = server
        self.shakes = 0
        self.ready = asyncio.Event()  # set once mounted: events may be rendered
        self._pane_ids: dict[str, str] = {}
        # Tabs being added (set once mounted): a second open of the same room meanwhile
        # (a reopened tab and its room's first event) waits for the first one's view.
        self._mounting: dict[str, asyncio.Event] = {}
        self._told_where_to_type = -HINT_EVERY_S
        self._next_pane = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="window"):
            with Vertical(id="buddy-pane"):
                yield MeHeader(self.state.status, id="me")
                yield AddedYouPrompt(id="added-you")
                yield BuddyList(id="buddies")
            with Vertical(id="chat-pane"):
                yield Static(Text(EMPTY_HINT), id="no-conversation")
                yield TabbedContent(id="tabs")
        yield ConnectionBar(id="connection")
        yield ChatFooter()

    def on_mount(self) -> None:
        self.query_one(TabbedContent).display = False
        self.narrow = self.app.size.width < NARROW_BELOW
        self.render_all()
        self.focus_now(self.query_one(BuddyList))
        self.ready.set()

    # --- layout ----------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < NARROW_BELOW
        if narrow and not self.narrow:
            # One pane is about to go: keep the one the user is in, and with it the focus
            # (a hidden composer would lose it mid-sentence).
            self.show_chat = self.focus_in_chat()
        self.narrow = narrow

    def watch_narrow(self, narrow: bool) -> None:
        self.set_class(narrow, "-narrow")

    def watch_show_chat(self, show_chat: bool) -> None:
        self.set_class(show_chat, "-show-chat")

    def focus_now(self, widget: Widget) -> None:
        """Move the focus before the next key is handed on.

        ``Widget.focus()`` moves it on a later turn of the app's queue, behind keys that
        are already waiting there: the end of a burst (Alt+2 then "hi", F2 then text)
        would go to the widget the focus is leaving.
        """
        self.set_focus(widget)

    def focus_in_chat(self) -> bool:
        """Whether the focus is in the conversation pane (a composer, a tab, a button)."""
        focused = self.focused
        return focused is not None and self.query_one("#chat-pane") in focused.ancestors

    def action_switch_pane(self) -> None:
        """Move the focus to the other pane; narrow, show the pane that gets it.

        Decided from where the focus is, never from ``show_chat`` alone: at full width
        that flag does not say which pane the user is in.
        """
        view = self.active_view()
        if self.focus_in_chat() or view is None:
            self.show_chat = False
            self.focus_now(self.query_one(BuddyList))
        else:
            self.show_chat = True
            self.focus_now(view.composer)
        self.shown()

    # --- rendering -------------------------------------------------------------------

    def render_all(self) -> None:
        self.render_update(Update(rooms=set(self._pane_ids), roster=True, me=True,
                                  connection=True))

    def render_update(self, update: Update) -> None:
        state = self.state
        if update.me:
            self.query_one(MeHeader).show(state)
        if update.roster or update.me:
            self.query_one(BuddyList).show(state)
            prompt = self.query_one(AddedYouPrompt)
            prompt.show(state)
            if not prompt.display and self.focused is not None \
                    and prompt in self.focused.ancestors:
                self.restore_focus()  # its button was pressed and went away with it
            self.refresh_bindings()  # F3 comes and goes with the request
            self._retitle_tabs()
        if update.connection or update.rooms:
            self.query_one(ConnectionBar).show(state, self.server)
        for room in update.rooms:
            view = self.view_for(room)
            if view is not None:
                view.show()
        for room in update.closed:
            self.close_conversation(room)

    def refresh_typing(self) -> None:
        for view in self.query(ConversationView):
            conv = self.state.conversations.get(view.room)
            if conv is not None and conv.typing:
                view.show_typing()

    def _tab_title(self, room: str) -> Content:
        title = render.conversation_title(room, self.state)
        conv = self.state.conversations.get(room)
        unread = conv.unread() if conv else 0
        if unread and room != self.active_room:
            title += render.counts(unread, conv.unread_mentions() if conv else 0).plain
        return Content(title)

    def _retitle_tabs(self) -> None:
        tabs = self.query_one(TabbedContent)
        for room, pane_id in self._pane_ids.items():
            with contextlib.suppress(NoMatches):
                tabs.get_tab(pane_id).label = self._tab_title(room)

    # --- conversations ---------------------------------------------------------------

    @property
    def active_room(self) -> str | None:
        active = self.query_one(TabbedContent).active
        for room, pane_id in self._pane_ids.items():
            if pane_id == active:
                return room
        return None

    def active_view(self) -> ConversationView | None:
        room = self.active_room
        return self.view_for(room) if room is not None else None

    def view_for(self, room: str) -> ConversationView | None:
        pane_id = self._pane_ids.get(room)
        if pane_id is None:
            return None
        try:
            return self.query_one(f"#{pane_id}", TabPane).query_one(ConversationView)
        except NoMatches:
            return None

    def is_open(self, room: str) -> bool:
        return room in self._pane_ids

    def chat_visible(self) -> bool:
        return not self.narrow or self.show_chat

    def room_on_screen(self) -> str | None:
        """The active conversation, when its newest lines are on screen: its pane
        visible, its transcript at the bottom."""
        room = self.active_room
        view = self.view_for(room) if room is not None else None
        if view is None or not self.chat_visible() or not view.transcript.following:
            return None
        return room

    def shown(self) -> None:
        """The active conversation may have come on screen (a tab, a pane): read it."""
        room = self.room_on_screen()
        if room is not None:
            self.intent("seen", room)  # if the terminal window has the focus

    async def open_conversation(self, room: str, *, activate: bool) -> ConversationView:
        """Open the room's tab; with ``activate`` also switch to it and focus its composer.

        Without ``activate`` (a message arrived) the tab appears but the focus and the
        active tab stay where the user is typing.
        """
        tabs = self.query_one(TabbedContent)
        if room not in self._pane_ids:
            pane_id = f"conv-{self._next_pane}"
            self._next_pane += 1
            self._pane_ids[room] = pane_id
            view = ConversationView(room, self.state, self.tz)
            focused = self.focused
            first = len(self._pane_ids) == 1
            self._mounting[room] = mounted = asyncio.Event()
            try:
                await tabs.add_pane(TabPane(self._tab_title(room), view, id=pane_id))
            finally:
                mounted.set()
                del self._mounting[room]
            self.query_one("#no-conversation").display = False
            tabs.display = True
            if not activate and focused is not None and self.focused is not focused:
                self.focus_now(focused)
            if not activate and (self._focus_parked_in_psm() or (
                    first and (self.focused is None or isinstance(self.focused, BuddyList)))):
                # Nothing typed there (the list, with no conversation before this one, or
                # the untouched PSM box): the keys that follow are meant for this chat.
                self.restore_focus()
            elif not activate and self.focused is not None and self.focused.id == "me-psm":
                # Mid-edit: moving the focus would send the rest of it to the chat, so it
                # stays, but the user is told where the keys go.
                self.notify("You are still editing your personal message: Enter sets "
                                "it, Escape cancels, F2 goes to the conversation.",
                                markup=False)
        elif room in self._mounting:
            await self._mounting[room].wait()
        view = self.view_for(room)
        assert view is not None
        if activate:
            tabs.active = self._pane_ids[room]
            self.show_chat = True  # also when wide: a later narrowing keeps this pane
            self.focus_now(view.composer)
            self._retitle_tabs()
        return view

    def _focus_parked_in_psm(self) -> bool:
        me = self.query_one(MeHeader)
        return (self.focused is not None and self.focused.id == "me-psm"
                and not me.editing_psm())

    def take_typed_key(self, event: events.Key) -> bool:
        """Type-to-compose: a printable key pressed in the buddy list belongs to the
        conversation on screen — unless the list uses that key on the highlighted row
        (b on a contact). True when the focus moved to that conversation's composer.

        Called by the app before it hands the key to the focused widget, and the focus
        moves at once (not on the next turn, as ``focus()`` does): the keys that follow
        in the same burst, Enter included, go to the composer too, in order.
        """
        buddies = self.query_one(BuddyList)
        # Alt+1 comes from a terminal with its character, "1": a window key, not text.
        if (self.focused is not buddies or not event.is_printable or not event.character
                or "alt+" in event.key or buddies.uses_key(event.key)):
            return False
        view = self.active_view()
        if view is None or not self.chat_visible():
            # Nowhere on screen to type: say where, rather than losing the keys quietly.
            now = time.monotonic()
            if now - self._told_where_to_type >= HINT_EVERY_S:  # once per word typed
                self._told_where_to_type = now
                self.notify(NOWHERE_TO_TYPE if view is None else CHAT_HIDDEN,
                                markup=False)
            return False
        self.set_focus(view.composer)
        return True

    def on_me_header_edit_done(self, event: MeHeader.EditDone) -> None:
        event.stop()
        self.restore_focus()

    def close_conversation(self, room: str) -> None:
        pane_id = self._pane_ids.pop(room, None)
        if pane_id is None:
            return
        tabs = self.query_one(TabbedContent)
        # Closing the tab that has the focus would leave it on the tab strip, where
        # typed keys vanish: the next tab's composer gets it once the pane is gone.
        refocus = self.focused is None or self.focus_in_chat()
        removal = tabs.remove_pane(pane_id)
        if not self._pane_ids:
            self.query_one("#no-conversation").display = True
            tabs.display = False
            self.show_chat = False
            self.refresh_bindings()
            self.focus_now(self.query_one(BuddyList))
        elif refocus:
            async def focus_next_tab() -> None:
                await removal
                self.restore_focus()

            self.run_worker(focus_next_tab(), group="focus")

    def restore_focus(self) -> None:
        """Focus where the user would type next: the active composer, else the list.

        Narrow, with the buddy list on screen, the list keeps it.
        """
        view = self.active_view()
        if view is None or (self.narrow and not self.show_chat):
            self.focus_now(self.query_one(BuddyList))
        else:
            self.focus_now(view.composer)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self._retitle_tabs()
        self.refresh_bindings()  # Ctrl+G comes and goes with the kind of conversation
        self.shown()

    # --- the nudge: the window shakes (cfm_tui/screens/shake.py) ----------------------

    def shake(self, *, animate: bool = True) -> None:
        self.shakes += 1
        if animate:
            shake_window(self, lambda x, y: self.shake_to(x, y))

    def shake_to(self, x: int, y: int) -> None:
        self.query_one("#window").styles.offset = (x, y)

    # --- actions: the app does the work (told by a message) ---------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "nudge":
            # Only a one-to-one conversation can be nudged: elsewhere the key is hidden.
            # Nor one whose other account the operator removed.
            room = self.active_room
            conv = self.state.conversations.get(room) if room is not None else None
            return conv is not None and conv.peer is not None \
                and conv.peer not in self.state.gone
        if action == "close_conversation":
            return self.active_room is not None  # no tab, nothing to close: not listed
        if action == "answer_request":
            return bool(self.state.added_you)  # only while "X has added you" shows
        return True

    def action_answer_request(self) -> None:
        if self.state.added_you:
            self.focus_now(self.query_one("#added-you-add"))

    def action_nudge(self) -> None:
        room = self.active_room
        if room is not None:
            self.intent("nudge", room)

    def action_close_conversation(self) -> None:
        room = self.active_room
        if room is not None:
            self.close_conversation(room)

    def open_rooms(self) -> list[str]:
        """The open conversations, in the order of their tabs."""
        return list(self._pane_ids)  # tabs are only ever added at the end

    async def action_next_tab(self, step: int) -> None:
        rooms, active = self.open_rooms(), self.active_room
        if rooms and active is not None:
            await self.go_to(rooms[(rooms.index(active) + step) % len(rooms)])

    async def action_go_to_tab(self, number: int) -> None:
        rooms = self.open_rooms()
        if 1 <= number <= len(rooms):
            await self.go_to(rooms[number - 1])

    async def go_to(self, room: str) -> None:
        """Show an open conversation, with the focus in its composer."""
        await self.open_conversation(room, activate=True)
        self.shown()

    def action_add_contact(self) -> None:
        self.intent("ask_contact")

    def action_join_room(self) -> None:
        self.intent("ask_room")

    def action_search(self) -> None:
        self.intent("search_screen")

    def palette_entries(self) -> list[palette.Entry]:
        """The command palette's list (cfm_tui.commands asks the screen it opened on)."""
        view = self.active_view()
        return palette.entries(self.state, self.open_rooms(), self.active_room,
                               view.selected if view is not None else None)

    def on_message_select_ask(self, event: MessageSelect.Ask) -> None:
        event.stop()
        question, intent = ask_about_message(event)
        self.app.push_screen(question, lambda answer: None if (i := intent(answer)) is None
                             else self.post_message(IntentRequested(i)))

    def _in_view(self, room: str, act: Callable[[ConversationView], object]) -> None:
        """A message action of the palette or a question, done by its conversation."""
        view = self.view_for(room)
        if view is not None:
            act(view)

    # --- intents: layout and questions here, the rest up to the app -------------------

    def intent(self, action: str, arg: str = "") -> None:
        self.post_message(IntentRequested(Intent(action, arg)))

    def _ask_then(self, question: Any, action: str, arg: Callable[[Any], str]) -> None:
        """Ask; an answer (not a cancel) becomes the intent ``action`` on ``arg(answer)``."""
        self.app.push_screen(question, lambda answer: None if answer in (None, False)
                             else self.intent(action, arg(answer)))

    def on_intent_requested(self, event: IntentRequested) -> None:
        arg = event.intent.arg
        here: dict[str, Callable[[], object]] = {
            "ask_contact": lambda: self._ask_then(ask_contact(), "add", str),
            "ask_room": lambda: self._ask_then(ask_room(), "join", room_of),
            "ask_display": lambda: self._ask_then(ask_display(self.state.display), "display",
                                                  str),
            "switch_pane": self.action_switch_pane,
            "edit_psm": self.query_one("#me-psm").focus,
            "go_to": lambda: self.run_worker(self.go_to(arg)),
            "close": lambda: self.close_conversation(arg),
            "select": lambda: self._in_view(arg, lambda v: v.action_select_message()),
            "edit_last": lambda: self._in_view(arg, lambda v: v.edit_last()),
            "message_do": lambda: self._in_view(arg, lambda v: v.action_message_do(
                event.intent.value, event.intent.seq)),
        }
        if event.intent.action in here:  # else not the screen's: on up to the app
            event.stop()
            here[event.intent.action]()

    def on_buddy_list_contact_action(self, event: BuddyList.ContactAction) -> None:
        """A key in the list is easy to press by accident: block and remove ask first."""
        event.stop()
        op, name = event.op, event.name
        question = confirm_contact(op, name, clean_line(self.state.label(name)))
        if question is None:
            self.intent(op, name)
        else:
            self._ask_then(question, op, lambda _: name)

    def on_buddy_list_leave_room(self, event: BuddyList.LeaveRoom) -> None:
        event.stop()
        room = event.room
        self._ask_then(confirm_leave(room), "leave", lambda _: room)

    def on_added_you_prompt_answer(self, event: AddedYouPrompt.Answer) -> None:
        event.stop()
        self.intent(event.action, event.name)  # add (back), block, dismiss (not now)

    def on_me_header_status_chosen(self, event: MeHeader.StatusChosen) -> None:
        event.stop()
        if event.status != self.state.status:
            self.intent("status", event.status)

    def on_me_header_psm_changed(self, event: MeHeader.PsmChanged) -> None:
        event.stop()
        self.intent("psm", event.psm)
