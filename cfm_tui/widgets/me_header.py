"""The top of the buddy list: own display name, status picker, personal message.

The personal message is edited as MSN did it: a field you go into, type, and leave.
Enter (or leaving it with Tab or a click) commits, Escape puts the old text back; after
Enter or Escape the focus goes back where the user types (:class:`MeHeader.EditDone`),
so a chat reply typed next can never end up broadcast as the personal message.
"""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select

from cfm_common import rules
from cfm_tui import render
from cfm_tui.emoticons import replace_emoticons
from cfm_tui.sanitize import clean_line
from cfm_tui.state import ChatState

STATUS_CHOICES = [(label, status.value) for status, label in rules.STATUS_LABELS.items()
                  if status is not rules.Status.OFFLINE]


class PsmInput(Input):
    """The personal-message field; Escape gives up the edit."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="psm.cancel"),
    ]

    class Cancelled(Message):
        pass

    def action_cancel(self) -> None:
        self.post_message(self.Cancelled())

    @property
    def _value(self) -> Text:
        """Emoticons as emoji, as contacts see it; the typed codes while editing."""
        if self.has_focus:
            return super()._value
        return Text(replace_emoticons(self.value), no_wrap=True, overflow="ignore", end="")


class MeHeader(Vertical):
    class StatusChosen(Message):
        def __init__(self, status: str) -> None:
            super().__init__()
            self.status = status

    class PsmChanged(Message):
        def __init__(self, psm: str) -> None:
            super().__init__()
            self.psm = psm

    class EditDone(Message):
        """Enter or Escape in the personal-message field: the focus should leave it."""

    def __init__(self, status: str = "online", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._shown_status = status
        self._psm = ""  # the committed personal message (what others see)

    def compose(self) -> ComposeResult:
        yield Label(id="me-name")
        yield Select(STATUS_CHOICES, allow_blank=False, value=self._shown_status,
                     id="me-status", compact=True)
        yield PsmInput(placeholder="<Type a personal message>", id="me-psm",
                       max_length=rules.MAX_PSM, compact=True)

    def show(self, state: ChatState) -> None:
        name = Text(no_wrap=True, overflow="ellipsis")
        shown = state.shown_status  # offline while the connection is down
        name.append_text(render.status_dot(shown))
        name.append(" ")
        name.append(clean_line(state.display or state.me), style=Style(bold=True))
        name.append(f" ({render.status_label(shown)})", style=render.PSM_STYLE)
        self.query_one("#me-name", Label).update(name)
        select = self.query_one("#me-status", Select)
        self._shown_status = state.status
        if select.value != state.status:
            # Showing the state is not the user choosing a status.
            with select.prevent(Select.Changed):
                select.value = state.status
        self._psm = state.psm
        psm = self.query_one("#me-psm", Input)
        if not psm.has_focus and psm.value != state.psm:
            psm.value = state.psm

    def editing_psm(self) -> bool:
        """Whether the personal-message field holds an edit not committed yet."""
        return self.query_one("#me-psm", Input).value != self._psm

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if isinstance(event.value, str) and event.value != self._shown_status:
            self._shown_status = event.value
            self.post_message(self.StatusChosen(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._commit(event.value)
        self.post_message(self.EditDone())

    def on_input_blurred(self, event: Input.Blurred) -> None:
        event.stop()
        self._commit(event.value)

    def on_psm_input_cancelled(self, event: PsmInput.Cancelled) -> None:
        event.stop()
        self.query_one("#me-psm", Input).value = self._psm
        self.post_message(self.EditDone())

    def _commit(self, value: str) -> None:
        psm = clean_line(value)
        if psm != self._psm:
            self._psm = psm
            self.post_message(self.PsmChanged(psm))
