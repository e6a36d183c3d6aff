"""A yes/no question before something hard to undo (block, remove, leave a room).

Keyboard-safe: *Cancel* has the focus, so a stray Enter does nothing, and no letter
confirms — the question can open in the middle of a word typed into the buddy list
("bye": ``b`` asks to block, and a ``y`` shortcut would have said yes). Going ahead takes
the button: Tab (or an arrow key) to it, then Enter, or a click. ``n`` or Escape cancels.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True when confirmed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
        Binding("left,right", "app.focus_previous", show=False),
    ]

    def __init__(self, question: str, detail: str, confirm: str) -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(self.question), id="confirm-question")
            yield Static(Text(self.detail), id="confirm-detail")
            with Horizontal(id="confirm-buttons"):
                yield Button(self.confirm, id="confirm-yes", variant="error", compact=True)
                yield Button("Cancel", id="confirm-no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


# What the buddy list's keys ask before acting: question, detail, the confirm button.
CONTACT_QUESTIONS = {
    "block": ("Block {who}?", "They won't be able to message you or see your status.",
              "Block"),
    "remove": ("Remove {who} from your contacts?", "You can add them again later.",
               "Remove"),
}


def confirm_contact(op: str, name: str, label: str) -> ConfirmScreen | None:
    """The question before ``op`` on ``name`` (shown as ``label``); None: ask nothing."""
    if op not in CONTACT_QUESTIONS:
        return None
    question, detail, button = CONTACT_QUESTIONS[op]
    # "Remove Bob (bob)", but "Remove bob", not "Remove bob (bob)".
    who = label if label.casefold() == name.casefold() else f"{label} ({name})"
    return ConfirmScreen(question.format(who=who), detail, button)


def confirm_leave(room: str) -> ConfirmScreen:
    return ConfirmScreen(f"Leave {room}?", "Its messages stop coming; F6 joins it again.",
                         "Leave")
