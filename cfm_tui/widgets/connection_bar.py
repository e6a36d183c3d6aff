"""The line above the footer: connection state, who we are, messages waiting to go."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from cfm_tui.sanitize import clean_line
from cfm_tui.state import ChatState, Link

LINK_COLOURS = {
    Link.CONNECTED: "#3cb043",
    Link.CONNECTING: "#f5a623",
    Link.RECONNECTING: "#f5a623",
    Link.CLOSED: "#e0301e",
}


class ConnectionBar(Static):
    def show(self, state: ChatState, server: str = "") -> None:
        conn = state.connection
        # Ended by the server (signed out, and what to do): the whole text, on as many
        # lines as it takes; otherwise one line, cut with "…".
        ended = conn.link is Link.CLOSED and conn.ended is not None
        text = Text(no_wrap=not ended, overflow="fold" if ended else "ellipsis")
        text.append("● ", style=Style(color=LINK_COLOURS[conn.link]))
        text.append(conn.describe(state.clock()), style=Style(bold=True))
        pending = sum(len(c.pending) for c in state.conversations.values())
        if pending:
            text.append(f"  ·  {pending} message{'s' if pending != 1 else ''} "
                        f"{'not sent' if ended else 'waiting to send'}")
        if state.me and not ended:
            text.append(f"  ·  signed in as {state.me}")
        if server:
            text.append(f"  ·  {clean_line(server)}", style=Style(dim=True))
        self.set_class(conn.link is not Link.CONNECTED, "-offline")
        self.set_class(ended, "-ended")
        self.update(text)
