"""Where the user types: Enter sends, Ctrl+J (or Shift+Enter) is a new line.

Enter only asks to send: the draft is cleared by the app once it accepts the message,
so a message it refuses (too long, say) is still there to fix.

A paste arrives as one ``Paste`` event and is inserted as text, line breaks and all, so a
paste never sends by itself: only an Enter key press does.
"""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea

NEWLINE_KEYS = frozenset({"ctrl+j", "newline", "shift+enter"})


class Composer(TextArea):
    class Submitted(Message):
        def __init__(self, composer: Composer, text: str) -> None:
            super().__init__()
            self.composer = composer
            self.text = text

    class Typed(Message):
        """The user changed the draft (for "is typing")."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         **kwargs)  # type: ignore[arg-type]

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.submit()
            return
        if event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)

    def submit(self) -> None:
        text = self.text
        if text.strip():
            self.post_message(self.Submitted(self, text.strip("\n")))

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        if self.text:
            self.post_message(self.Typed())
