"""Where the user types: Enter sends, Ctrl+J (or Shift+Enter) is a new line.

Enter takes the draft out of the box at once, in the same key handler, before the next
key is looked at: keys typed right after Enter (a paste tool, a macro, a fast typist, a
busy app) start the next draft instead of joining the one being sent, and a second
Enter finds the box empty. A draft the app refuses (too long, say) is put back with
:meth:`Composer.restore`, in front of anything typed since.

A paste arrives as one ``Paste`` event and is inserted as text, line breaks and all, so a
paste never sends by itself: only an Enter key press does.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea

NEWLINE_KEYS = frozenset({"ctrl+j", "newline", "shift+enter"})


class Composer(TextArea):
    # The keys people expect of a chat box (TextArea's own: Ctrl+U deletes to the start
    # of a wrapped line, Ctrl+A goes to its start, select-all is F7).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+a", "select_all", "Select all", show=False, id="composer.select_all"),
        Binding("ctrl+u", "clear_draft", "Clear", show=False, id="composer.clear"),
    ]

    _AT_ONCE: ClassVar[dict[str, str]] = {"ctrl+u": "action_clear_draft",
                                          "ctrl+a": "action_select_all"}

    class Submitted(Message):
        def __init__(self, composer: Composer, text: str) -> None:
            super().__init__()
            self.composer = composer
            self.text = text

    class Typed(Message):
        """The user changed the draft into something that is not a command (for "is
        typing")."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         **kwargs)  # type: ignore[arg-type]

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.submit()
            return
        if event.key in self._AT_ONCE:
            # A binding runs after the key has gone round the app, by which time the keys
            # typed right after it (same burst) are already in the box: Ctrl+U then "xyz"
            # would clear "xyz" too, or nothing. Handled here, in order, as Enter is.
            event.stop()
            event.prevent_default()
            getattr(self, self._AT_ONCE[event.key])()
            return
        if event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)

    def submit(self) -> None:
        """Take the draft out of the box now and ask for it to be sent."""
        text = self.text
        if text.strip():
            self.clear()
            self.post_message(self.Submitted(self, text.strip("\n")))

    def action_clear_draft(self) -> None:
        """Delete the whole draft (Ctrl+Z brings it back)."""
        self.select_all()
        self.action_delete_left()

    def restore(self, draft: str) -> None:
        """Put back a draft that was not sent, before whatever was typed since."""
        typed_since = self.text
        self.load_text(draft + ("\n" + typed_since if typed_since else ""))
        self.move_cursor(self.document.end)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        # Read when handled, not when typed: a draft sent since (Enter came in the same
        # burst) is no longer being typed, and a /command is never "typing".
        if self.text.strip() and not self.text.startswith("/"):
            self.post_message(self.Typed())
