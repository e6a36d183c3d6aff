"""The scrolling transcript: it follows new lines while the reader is at the bottom.

Whether it follows is the reader's choice, kept as a flag: scrolling up leaves the
bottom, scrolling back down to it (or End) follows again. Layout changes — new lines, a
resize, the text wrapped again at a new width — never change the flag; while it is set
each of them ends at the bottom. (Deciding from the scroll position at the moment new
text arrived lost the bottom whenever a resize had already grown the text.) Whether it
follows also decides whether the newest lines were shown, so the app sends read marks
("Seen") only then. Scrolling to the top asks for older history.
"""

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

    class FollowChanged(Message):
        """The reader left the bottom, or came back to it (``following``)."""

        def __init__(self, following: bool) -> None:
            super().__init__()
            self.following = following

    _last_width = 0
    _following = True

    @property
    def following(self) -> bool:
        """Whether the newest line is on screen and new ones will be."""
        return self._following

    def text_width(self) -> int | None:
        """Cells a line of text may use, or None before the first layout."""
        width = self.scrollable_content_region.width - 1  # room for the scroll bar
        return width if width > 0 else None

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._last_width:
            self._last_width = event.size.width
            self.post_message(self.Resized())
        self._keep_bottom()

    def compose(self) -> ComposeResult:
        yield Static(id="transcript-body")

    def show(self, text: Text, *, prepended: bool = False) -> None:
        """Replace the content: followed if the reader is at the bottom, else the lines
        they are reading stay where they are (older lines added above push them down by
        as much)."""
        before_height = self.virtual_size.height
        before_y = self.scroll_y
        self.query_one("#transcript-body", Static).update(text)
        if self._following:
            self._keep_bottom()
        elif prepended:
            def keep_place() -> None:
                grown = self.virtual_size.height - before_height
                self.scroll_to(y=before_y + grown, animate=False)

            self.call_after_refresh(keep_place)

    def follow(self) -> None:
        """Go to the bottom and stay there as lines come."""
        self._set_following(True)
        self._keep_bottom()

    def _keep_bottom(self) -> None:
        if self._following:
            # After the next refresh, when the new size and text are laid out.
            self.call_after_refresh(self._to_bottom)

    def watch_virtual_size(self) -> None:
        # The text's laid-out height changed (new lines, or wrapped again at a new
        # width): only now is the new bottom known. Called in the middle of Textual's
        # size update, so the scroll waits for it to finish.
        if self._following:
            self.call_later(self._to_bottom)

    def _to_bottom(self) -> None:
        if self._following:
            self.scroll_end(animate=False, immediate=True)

    def _at_bottom(self) -> bool:
        return self.scroll_y >= self.max_scroll_y

    def _set_following(self, following: bool) -> None:
        if following != self._following:
            self._following = following
            self.post_message(self.FollowChanged(following))

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self._at_bottom():
            self._set_following(True)
        elif new < old:
            self._set_following(False)
        if new <= 0 < old and not self._following:  # the reader's doing, not a layout's
            self.post_message(self.ReachedTop())

    def on_mouse_scroll_up(self) -> None:
        # Already at the top (a short transcript cannot scroll): still ask for more.
        if self.scroll_y <= 0:
            self.post_message(self.ReachedTop())
