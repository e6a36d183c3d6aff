"""One conversation tab: header, transcript, members (rooms), typing line, composer."""

from __future__ import annotations

from datetime import tzinfo

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Static

from cfm_common import rules
from cfm_tui import render
from cfm_tui.state import ChatState
from cfm_tui.widgets.composer import Composer
from cfm_tui.widgets.transcript import Transcript


class ConversationView(Vertical):
    """Posts ``Send``, ``NudgeRequested``, ``LoadOlder`` and ``Typed`` for its room."""

    class Send(Message):
        def __init__(self, room: str, text: str) -> None:
            super().__init__()
            self.room = room
            self.text = text

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

    def __init__(self, room: str, state: ChatState, tz: tzinfo | None,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.room = room
        self.state = state
        self.tz = tz
        self.loading_older = False
        self._composed = False
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
        yield Static(classes="conv-typing")
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
        self._composed = True
        self.show()

    def show(self) -> None:
        """Render the room from the state (a no-op until the children exist)."""
        state, tz = self.state, self.tz
        conv = state.conversations.get(self.room)
        if conv is None or not self._composed:
            return
        self.query_one(".conv-header", Static).update(render.conversation_header(self.room, state))
        lines = conv.lines()
        first_seq = conv.oldest_seq
        prepended = (self._first_seq is not None and first_seq is not None
                     and first_seq < self._first_seq)
        self._first_seq = first_seq
        if lines or self._line_count:
            text = render.transcript(lines, state, tz, width=self.transcript.text_width())
            self.transcript.show(text, prepended=prepended)
        self._line_count = len(lines)
        if self.is_group:
            members = render.member_lines(conv.members or set(), state)
            self.query_one(".conv-members", Static).update(members)
        self.show_typing()

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
        self.post_message(self.Send(self.room, event.text))

    def on_composer_typed(self, event: Composer.Typed) -> None:
        event.stop()
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
