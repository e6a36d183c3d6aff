"""The message the screens and the command palette post up for everything that is more
than layout: "do what this :class:`~cfm_tui.palette.Intent` says". The app hands it to
the controller; none of them calls the app."""

from __future__ import annotations

from textual.message import Message

from cfm_tui.palette import Intent


class IntentRequested(Message):
    def __init__(self, intent: Intent) -> None:
        super().__init__()
        self.intent = intent
