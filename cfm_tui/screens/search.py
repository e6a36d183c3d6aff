"""The search screen (Ctrl+F, ``/search words``): words to find, and the hits — where,
who, when, the text — newest first. Enter on a hit opens its conversation there.

The screen posts the search as an intent and shows the controller's results
(:class:`cfm_tui.search.Search`) when the app says they changed; the last line offers
older hits when the server has more.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from cfm_tui import render
from cfm_tui.emoticons import replace_emoticons
from cfm_tui.intents import IntentRequested
from cfm_tui.palette import Intent
from cfm_tui.sanitize import clean_line
from cfm_tui.search import Search
from cfm_tui.state import ChatState

MORE = "more"
HIT = "hit:"


def where(room: str, state: ChatState) -> str:
    """A hit's conversation: the room, or the other person of a DM."""
    return render.conversation_title(room, state)


def hit_line(room: str, sender: str, ts: int, text: str, state: ChatState,
             tz: tzinfo | None, width: int = 76) -> Text:
    """``#lobby  Bob  04 Dec 09:58  the text…`` on one line of ``width`` cells (an
    option list wraps its prompts, so the line is cut here)."""
    when = datetime.fromtimestamp(ts / 1000, tz=tz).strftime("%d %b %H:%M")
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(f"{clean_line(where(room, state))[:14]:<14} ", style=render.GROUP_STYLE)
    line.append(f"{clean_line(state.label(sender))[:12]:<12} ", style=render.SAYS_STYLE)
    line.append(f"{when}  ", style=render.PSM_STYLE)
    line.append(replace_emoticons(clean_line(" ".join(text.split()))))
    line.truncate(width)  # with an ellipsis (the Text's overflow) when longer
    return line


class SearchScreen(ModalScreen[tuple[str, int] | None]):
    """Dismisses with (room, seq) of the chosen hit, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Close", id="search.close"),
        Binding("down", "to_hits", "Hits", show=False, id="search.hits"),
    ]

    def __init__(self, search: Search, state: ChatState, tz: tzinfo | None) -> None:
        super().__init__()
        self.search = search
        self.state = state
        self.tz = tz

    def compose(self) -> ComposeResult:
        with Vertical(id="search-box"):
            yield Static(Text("Search messages"), id="search-title")
            yield Input(self.search.results.text, placeholder="words to find, then Enter",
                        id="search-input")
            yield Static(id="search-status")
            yield OptionList(id="search-hits")

    def on_mount(self) -> None:
        self.show_results()
        self.query_one(Input).focus()

    def action_to_hits(self) -> None:
        hits = self.query_one(OptionList)
        if hits.option_count:
            hits.focus()
            if hits.highlighted is None:
                hits.highlighted = 0

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.post_message(IntentRequested(Intent("search", value=event.value)))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        option_id = event.option.id or ""
        if option_id == MORE:
            self.post_message(IntentRequested(Intent("search_more")))
        elif option_id.startswith(HIT):
            room, _, seq = option_id[len(HIT):].rpartition(":")
            self.dismiss((room, int(seq)))

    def show_results(self) -> None:
        """The hits as they are now (the app calls this when they change)."""
        r = self.search.results
        status = self.query_one("#search-status", Static)
        if r.error:
            status.update(Text(r.error, style=Style(color="#e0301e")))
        elif r.busy:
            status.update(Text("Searching…", style=render.NOTE_STYLE))
        elif r.text:
            count = f"{len(r.hits)}{'+' if r.more else ''}"
            note = f" ({r.behind} newest not indexed yet)" if r.behind else ""
            keys = " · ↓ then Enter opens one · Esc closes" if r.hits else ""
            status.update(Text(f"{count} message{'s' if len(r.hits) != 1 else ''} "
                               f"with {r.text!r}{note}{keys}", style=render.NOTE_STYLE))
        else:
            status.update(Text("Enter searches every conversation you are in.",
                               style=render.NOTE_STYLE))
        hits = self.query_one(OptionList)
        keep = hits.highlighted
        # The screen's width less the box's padding, the list's frame and scroll bar.
        width = max(20, self.app.size.width - 7)
        options = [Option(hit_line(m.room, m.sender, m.ts, m.text, self.state, self.tz, width),
                          id=f"{HIT}{m.room}:{m.seq}") for m in r.hits]
        if r.more:
            options.append(Option(Text("Older hits…", style=render.NOTE_STYLE), id=MORE))
        hits.set_options(options)
        if keep is not None and options:
            hits.highlighted = min(keep, len(options) - 1)
