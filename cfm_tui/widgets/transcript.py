"""The scrolling transcript; scrolling to its top asks for older history."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static


class Transcript(VerticalScroll, can_focus=True):
    class ReachedTop(Message):
        """The user scrolled to the top: time to fetch older messages, if any."""

    class Resized(Message):
        """The width changed: the text has to be wrapped again."""

    _last_width = 0

    def text_width(self) -> int | None:
        """Cells a line of text may use, or None before the first layout."""
        width = self.scrollable_content_region.width - 1  # room for the scroll bar
        return width if width > 0 else None

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._last_width:
            self._last_width = event.size.width
            self.post_message(self.Resized())

    def compose(self) -> ComposeResult:
        yield Static(id="transcript-body")

    def show(self, text: Text, *, prepended: bool = False) -> None:
        """Replace the content; stick to the bottom if we were there, or keep the
        reader's place when older lines were added above."""
        at_bottom = self.scroll_y >= self.max_scroll_y - 1
        before_height = self.virtual_size.height
        before_y = self.scroll_y
        self.query_one("#transcript-body", Static).update(text)

        def settle() -> None:
            if prepended and not at_bottom:
                grown = self.virtual_size.height - before_height
                self.scroll_to(y=before_y + grown, animate=False)
            elif at_bottom or prepended:
                self.scroll_end(animate=False)

        self.call_after_refresh(settle)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new <= 0 < old:
            self.post_message(self.ReachedTop())

    def on_mouse_scroll_up(self) -> None:
        # Already at the top (a short transcript cannot scroll): still ask for more.
        if self.scroll_y <= 0:
            self.post_message(self.ReachedTop())
