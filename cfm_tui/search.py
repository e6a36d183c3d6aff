"""Search (``/search words``, Ctrl+F): the server's hits, and jumping to one of them.

The server answers ``search`` with stored messages, newest first, and an opaque cursor
for older ones (docs/protocol.md, "Search"). Jumping to a hit opens its conversation
with the history down to it loaded (pages up to it, so that the transcript has no gap
that paging could skip) and the hit selected. Part of the controller; no Textual.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from cfm_common import rules
from cfm_common.errors import ClientError, LocalRefusal
from cfm_common.frames import StoredMsg
from cfm_tui import message_actions
from cfm_tui.message_actions import MessageActions
from cfm_tui.outcome import Outcome
from cfm_tui.session import friendly_error
from cfm_tui.state import Notice, NoticeKind, Update


class Host(message_actions.Host, Protocol):
    messages: MessageActions

log = logging.getLogger(__name__)

SEARCH_PAGE = 50
JUMP_PAGE = 200
JUMP_PAGES = 25  # at most this many pages back to a hit (5000 messages)
CONTEXT_BEFORE = 5  # messages shown above a hit
NO_SEARCH = "Search is not available with this version of cfm."


@dataclass
class SearchResults:
    """The last search: its words, the room it was limited to, the hits so far."""

    text: str = ""
    room: str | None = None
    hits: list[StoredMsg] = field(default_factory=list)
    cursor: str | None = None
    more: bool = False
    busy: bool = False
    error: str | None = None
    behind: int = 0  # messages the server's index has not caught up with yet


class Search:
    def __init__(self, ctl: Host) -> None:
        self.ctl = ctl
        self.results = SearchResults()

    def search(self, text: str, room: str | None = None, *, older: bool = False) -> Outcome:
        """Ask for ``text`` (in ``room`` only, if given); ``older``: the next page."""
        r = self.results
        text = " ".join(text.split()) if not older else r.text
        if not text:
            return Outcome()
        if not older:
            self.results = r = SearchResults(text, room)
        elif not r.more or r.busy:
            return Outcome()
        r.busy = True
        shown = Update(search=True, open_search=not older)
        if self.ctl.session is None:
            r.busy, r.error = False, "Not signed in."
            return Outcome(shown)
        return Outcome(shown, [lambda: self._ask(r)])

    async def _ask(self, r: SearchResults) -> Outcome:
        session = self.ctl.session
        try:
            assert session is not None
            page = await session.search(r.text, room=r.room, before=r.cursor,
                                        limit=SEARCH_PAGE)
        except ClientError as exc:
            # Refused before sending: this protocol version has no search (yet).
            r.error = NO_SEARCH if isinstance(exc, LocalRefusal) and \
                exc.code == rules.ErrorCode.BAD_FRAME else friendly_error(exc)
            log.info("search %r failed: %s", r.text, exc)
        else:
            if r is not self.results:
                return Outcome()  # a newer search replaced this one
            r.hits.extend(page.msgs)
            r.cursor, r.more, r.behind = page.next, page.more, page.behind or 0
        finally:
            r.busy = False
        return Outcome(Update(search=True))

    def jump(self, room: str, seq: int) -> Outcome:
        """Open ``room`` at the message ``seq``: history loaded down to it, selected."""
        state = self.ctl.state
        if rules.is_group_room(room) and room not in state.conversations:
            return Outcome(Update(notices=[Notice(NoticeKind.ERROR,
                                                  text=f"You are no longer in {room}.")]))
        state.conversation(room)
        out = Outcome(Update(opened={room: True}))
        return out.then(Outcome(jobs=[lambda: self._load_to(room, seq)]))

    async def _load_to(self, room: str, seq: int) -> Outcome:
        conv, session = self.ctl.state.conversation(room), self.ctl.session
        for _ in range(JUMP_PAGES):
            oldest = conv.oldest_seq
            if session is None or not conv.can_load_older or (
                    oldest is not None and oldest <= max(1, seq - CONTEXT_BEFORE)):
                break
            try:
                page = await session.client.history(room, before=oldest, limit=JUMP_PAGE)
            except ClientError as exc:
                log.info("history of %s to reach %s failed: %s", room, seq, exc)
                break
            if not conv.add_history(page.msgs, page.more) and page.more:
                break
        if conv.message(seq) is None:
            return self.ctl.note(room, "That message is too far back to show here, or it "
                                       "is gone.")
        return Outcome(Update(rooms={room}, select=(room, seq))).then(
            self.ctl.messages.fetch_quotes(room))
