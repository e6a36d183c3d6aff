"""One conversation tab: header, transcript, members (rooms), typing line, composer."""

from __future__ import annotations

from datetime import tzinfo
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Static

from cfm_common import rules
from cfm_tui import render
from cfm_tui.state import ChatState
from cfm_tui.widgets.composer import Composer
from cfm_tui.widgets.message_select import MessageSelect
from cfm_tui.widgets.transcript import Transcript


class NewMessagesMarker(Static):
    """"3 new messages ↓" while the reader is scrolled up; a click goes down to them."""

    class Clicked(Message):
        pass

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.post_message(self.Clicked())


class ConversationView(MessageSelect, Vertical):
    """Posts ``Send``, ``NudgeRequested``, ``LoadOlder``, ``Typed`` and ``CaughtUp`` for
    its room; picking a message and acting on it: :class:`MessageSelect`."""

    # Priority: the composer (a TextArea) has its own PageUp/PageDown/Home/End. Home and
    # End scroll only while the draft is empty; with a draft they move its cursor.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("pageup", "scroll_transcript('page_up')", "Scroll up", show=False,
                priority=True, id="conv.page_up"),
        Binding("pagedown", "scroll_transcript('page_down')", "Scroll down", show=False,
                priority=True, id="conv.page_down"),
        Binding("home", "scroll_transcript('home')", "Oldest", show=False, priority=True,
                id="conv.home"),
        Binding("end", "scroll_transcript('end')", "Newest", show=False, priority=True,
                id="conv.end"),
    ]

    class Send(Message):
        """A draft to send: an answer to ``reply``, or the new text of ``edit``."""

        def __init__(self, room: str, text: str, reply: int | None = None,
                     edit: int | None = None) -> None:
            super().__init__()
            self.room = room
            self.text = text
            self.reply = reply
            self.edit = edit

    class NudgeRequested(Message):
        def __init__(self, room: str) -> None:
            super().__init__()
            self.room = room

    class LoadOlder(Message):
        def __init__(self, room: str) -> None:
            super().__init__()
            self.room = room

    class Typed(Message):
        def __init__(self, room: str) -> None:
            super().__init__()
            self.room = room

    class CaughtUp(Message):
        """The newest messages are on screen again (the reader scrolled down to them)."""

        def __init__(self, room: str) -> None:
            super().__init__()
            self.room = room

    def __init__(self, room: str, state: ChatState, tz: tzinfo | None,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.room = room
        self.state = state
        self.tz = tz
        self._mounted = False
        self.drawn = False  # show() has drawn the room at least once (tests wait on it)
        self._line_count = 0
        self._first_seq: int | None = None

    @property
    def is_group(self) -> bool:
        return rules.is_group_room(self.room)

    def compose(self) -> ComposeResult:
        yield Static(classes="conv-header")
        with Horizontal(classes="conv-body"):
            yield Transcript()
            if self.is_group:
                yield Static(classes="conv-members")
        with Horizontal(classes="conv-status"):
            yield Static(classes="conv-typing")
            yield NewMessagesMarker(classes="conv-new")
        yield Static(classes="conv-mode")  # replying, editing, selecting: what keys do
        with Horizontal(classes="conv-input"):
            yield Composer(classes="composer")
            with Vertical(classes="conv-buttons"):
                yield Button("Send", classes="send", compact=True)
                if not self.is_group:
                    yield Button("Nudge", classes="nudge", compact=True, variant="warning")

    @property
    def composer(self) -> Composer:
        return self.query_one(Composer)

    @property
    def transcript(self) -> Transcript:
        return self.query_one(Transcript)

    def on_mount(self) -> None:
        # Not `is_mounted`: that only turns true after this handler has run.
        self._mounted = True
        self.show()

    @property
    def _composed(self) -> bool:
        """This view and the widgets in its rows are in the DOM. The rows (Horizontal)
        mount their own children after this view's Mount: under load they are not
        there yet when on_mount runs."""
        return self._mounted and bool(self.query(NewMessagesMarker)) and \
            bool(self.query(".conv-typing")) and bool(self.query(Transcript)) and \
            (not self.is_group or bool(self.query(".conv-members")))

    def show(self) -> None:
        """Render the room from the state (a no-op until the children exist)."""
        state, tz = self.state, self.tz
        conv = state.conversations.get(self.room)
        if conv is None or not self._mounted:
            return
        if not self._composed:
            self.call_after_refresh(self.show)  # once the rows have their children
            return
        self.query_one(".conv-header", Static).update(render.conversation_header(self.room, state))
        for nudge in self.query(".nudge"):  # nobody to nudge once their account is gone
            nudge.display = conv.peer not in state.gone
        lines = conv.lines()
        first_seq = conv.oldest_seq
        prepended = (self._first_seq is not None and first_seq is not None
                     and first_seq < self._first_seq)
        self._first_seq = first_seq
        if lines or self._line_count:
            text = render.transcript(lines, state, tz, width=self.transcript.text_width(),
                                     selected=self.selected)
            self.transcript.show(text, prepended=prepended)
            if self.selected is not None:
                self._scroll_to_selected(text)
        self._line_count = len(lines)
        if self.is_group:
            members = render.member_lines(conv.members or set(), state)
            self.query_one(".conv-members", Static).update(members)
        self.show_typing()
        self.show_new_marker()
        self.drawn = True

    def _scroll_to_selected(self, text: Text) -> None:
        """Bring the selected message's lines on screen (its highlight tells where)."""
        plain = text.plain
        spans = [span for span in text.spans if span.style == render.SELECTED_STYLE]
        if not spans:
            return
        top = plain.count("\n", 0, spans[0].start)
        bottom = plain.count("\n", 0, spans[0].end)
        transcript = self.transcript

        def scroll() -> None:
            height = transcript.scrollable_content_region.height
            if top < transcript.scroll_y or bottom >= transcript.scroll_y + height:
                transcript.scroll_to(y=max(0, bottom - height + 1) if bottom - top < height
                                     else top, animate=False)

        self.call_after_refresh(scroll)

    def show_new_marker(self) -> None:
        """How many messages came below while the reader is scrolled up."""
        conv = self.state.conversations.get(self.room)
        waiting = conv.unread() if conv is not None and not self.transcript.following else 0
        marker = self.query_one(NewMessagesMarker)
        marker.display = waiting > 0
        if waiting:
            marker.update(Text(f"{waiting} new message{'s' if waiting != 1 else ''} ↓"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "scroll_transcript" and parameters and parameters[0] in ("home", "end"):
            return not self.composer.text or self.focused_outside_composer()
        return super().check_action(action, parameters)

    def focused_outside_composer(self) -> bool:
        return self.screen.focused is not self.composer

    def action_scroll_transcript(self, where: str) -> None:
        transcript = self.transcript
        if where == "page_up":
            transcript.scroll_page_up(animate=False)
        elif where == "page_down":
            transcript.scroll_page_down(animate=False)
        elif where == "home":
            transcript.scroll_home(animate=False)
        elif where == "end":
            transcript.follow()
        else:
            raise SkipAction()

    def show_typing(self) -> None:
        state = self.state
        conv = state.conversations.get(self.room)
        if not self._composed:
            return
        names = conv.typing_names(state.clock()) if conv else []
        self.query_one(".conv-typing", Static).update(
            render.typing_line(names, state) if names else Text(" "))

    def on_composer_submitted(self, event: Composer.Submitted) -> None:
        event.stop()
        self.transcript.follow()  # what you send is shown, and what comes after it
        reply, edit = self.sent()
        self.post_message(self.Send(self.room, event.text, reply, edit))

    def on_transcript_follow_changed(self, event: Transcript.FollowChanged) -> None:
        event.stop()
        self.show_new_marker()
        if event.following:
            self.post_message(self.CaughtUp(self.room))

    def on_new_messages_marker_clicked(self, event: NewMessagesMarker.Clicked) -> None:
        event.stop()
        self.transcript.follow()

    def on_composer_typed(self, event: Composer.Typed) -> None:
        event.stop()
        if self.mode is not None and self.mode[0] == "edit":
            return  # correcting a message sent is not "typing a message": none follows
        self.post_message(self.Typed(self.room))

    def on_transcript_resized(self, event: Transcript.Resized) -> None:
        event.stop()
        self.show()

    def on_transcript_reached_top(self, event: Transcript.ReachedTop) -> None:
        event.stop()
        self.post_message(self.LoadOlder(self.room))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.has_class("send"):
            self.composer.submit()
        elif event.button.has_class("nudge"):
            self.post_message(self.NudgeRequested(self.room))
