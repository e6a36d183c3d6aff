"""MSN's "bob has added you to their contact list" prompt: add back, block, or not now."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Static

from cfm_tui import render
from cfm_tui.state import ChatState


class AddedYouPrompt(Vertical):
    class Answer(Message):
        """``action`` is ``add``, ``block`` or ``dismiss``."""

        def __init__(self, name: str, action: str) -> None:
            super().__init__()
            self.name = name
            self.action = action

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.asking: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="added-you-text")
        with Horizontal(id="added-you-buttons"):
            yield Button("Add back", id="added-you-add", variant="primary", compact=True)
            yield Button("Block", id="added-you-block", variant="error", compact=True)
            yield Button("Not now", id="added-you-dismiss", compact=True)

    def show(self, state: ChatState) -> None:
        self.asking = state.added_you[0] if state.added_you else None
        self.display = self.asking is not None
        if self.asking is not None:
            who = render.label_with_handle(self.asking, state)
            text = Text(f"{who} has added you to their contact list.")
            self.query_one("#added-you-text", Static).update(text)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if self.asking is None or event.button.id is None:
            return
        action = event.button.id.removeprefix("added-you-")
        self.post_message(self.Answer(self.asking, action))
