"""The top of the buddy list: own display name, status picker, personal message."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select

from cfm_common import rules
from cfm_tui import render
from cfm_tui.sanitize import clean_line
from cfm_tui.state import ChatState

STATUS_CHOICES = [(label, status.value) for status, label in rules.STATUS_LABELS.items()
                  if status is not rules.Status.OFFLINE]


class MeHeader(Vertical):
    class StatusChosen(Message):
        def __init__(self, status: str) -> None:
            super().__init__()
            self.status = status

    class PsmChanged(Message):
        def __init__(self, psm: str) -> None:
            super().__init__()
            self.psm = psm

    def __init__(self, status: str = "online", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._shown_status = status

    def compose(self) -> ComposeResult:
        yield Label(id="me-name")
        yield Select(STATUS_CHOICES, allow_blank=False, value=self._shown_status,
                     id="me-status", compact=True)
        yield Input(placeholder="<Type a personal message>", id="me-psm",
                    max_length=rules.MAX_PSM, compact=True)

    def show(self, state: ChatState) -> None:
        name = Text(no_wrap=True, overflow="ellipsis")
        name.append_text(render.status_dot(state.status))
        name.append(" ")
        name.append(clean_line(state.display or state.me), style=Style(bold=True))
        name.append(f" ({render.status_label(state.status)})", style=render.PSM_STYLE)
        self.query_one("#me-name", Label).update(name)
        select = self.query_one("#me-status", Select)
        self._shown_status = state.status
        if select.value != state.status:
            # Showing the state is not the user choosing a status.
            with select.prevent(Select.Changed):
                select.value = state.status
        psm = self.query_one("#me-psm", Input)
        if not psm.has_focus and psm.value != state.psm:
            psm.value = state.psm

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if isinstance(event.value, str) and event.value != self._shown_status:
            self._shown_status = event.value
            self.post_message(self.StatusChosen(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.PsmChanged(clean_line(event.value)))
