"""A small modal question with one text field ("Add a contact", "Join a room")."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from cfm_common import rules
from cfm_tui.slash import display_refusal


class AskScreen(ModalScreen[str | None]):
    """Dismisses with the answer, or None on Escape. ``check`` returns an error or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="ask.cancel")]

    def __init__(self, title: str, prompt: str, *, placeholder: str = "",
                 check: Callable[[str], str | None] | None = None, value: str = "") -> None:
        super().__init__()
        self.value = value
        self.title_text = title
        self.prompt = prompt
        self.placeholder = placeholder
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(id="ask-box"):
            yield Static(Text(self.title_text), id="ask-title")
            yield Label(self.prompt)
            yield Input(self.value, placeholder=self.placeholder, id="ask-input")
            yield Static(id="ask-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        error = self.check(value) if self.check else None
        if error:
            self.query_one("#ask-error", Static).update(Text(error))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


# --- the questions the main window asks -------------------------------------------------

def room_of(value: str) -> str:
    """A room as typed ("lobby" or "#lobby"), with its #."""
    return value if value.startswith("#") else f"#{value}"


def ask_contact() -> AskScreen:
    def check(value: str) -> str | None:
        return None if rules.is_valid_name(value) else "That is not a valid handle."

    return AskScreen("Add a contact", "Their handle:", placeholder="e.g. bob", check=check)


def ask_room() -> AskScreen:
    """Dismisses with the room as typed: :func:`room_of` gives it its #."""
    def check(value: str) -> str | None:
        return None if rules.is_group_room(room_of(value)) else \
            "A room is # and 1-32 of a-z 0-9 _ - (e.g. #lobby)."

    return AskScreen("Join a group room", "Room:", placeholder="#lobby", check=check)


def ask_display(current: str) -> AskScreen:
    return AskScreen("Change display name", "Your display name (empty: your handle):",
                     placeholder=current, check=display_refusal, value=current)
