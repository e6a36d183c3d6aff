"""Search: a user's stored messages by their words, newest first, across the rooms and
DMs the user is a member of now (docs/protocol.md, "Search").

Which rooms is decided here, from the live memberships, and nowhere else: the store is
given the list and never widens it. A DM message hidden from the user by a block is
left out by the store (it knows the mark); what it holds is never found by its text.

The SQLite store indexes off the write path, a fraction of a second behind the commits
(cfm_server/store/searchindex.py). So that a search finds what was acked before it was
sent, it waits until the index holds every committed message of the rooms searched —
at most SEARCH_WAIT_S (usually a tenth of a second: the indexer's pass interval), and
only when the index is a little behind (a catch-up after a start is not waited for).
The answer's ``behind`` says how many of those messages the index did not hold when it
was read (none: the key is left out).
"""

from __future__ import annotations

from collections.abc import Generator

from cfm_common.codec import encode
from cfm_common.errors import ProtocolError
from cfm_common.frames import Search, SearchResults, StoredMsg
from cfm_common.rules import ErrorCode
from cfm_server.domain.ports import Connection
from cfm_server.domain.rooms import RoomHandler
from cfm_server.domain.world import World
from cfm_server.pages import AnswerItem, awaited, first_within, stored_msg_size
from cfm_server.read_budget import metered, read_credit
from cfm_server.state import User
from cfm_server.store import BadCursor
from cfm_server.store.searchwords import words_of
from cfm_server.wsframe import frame_binary

DEFAULT_SEARCH_LIMIT = 20
# How long a search waits for the index to reach the rooms' committed messages, and
# how far behind it may be for the wait to be worth it (more: a catch-up is under way;
# the answer says how much it could not see instead).
SEARCH_WAIT_S = 3.0
SEARCH_WAIT_MAX_BEHIND = 50_000


class SearchHandler:
    def __init__(self, world: World, rooms: RoomHandler) -> None:
        self.world = world
        self.rooms = rooms

    def search(self, session: Connection, frame: Search) -> None:
        world = self.world
        user = world.user_of(session)
        if not world.store.searchable:
            raise ProtocolError(ErrorCode.FORBIDDEN, world.store.search_unavailable)
        # Per user as well as per session: each session's bucket alone let one person
        # with 16 sessions make a node spend seconds on searches (docs/security.md).
        world.admission.charge(user, "search", frame.id or "search")
        words = words_of(frame.text)
        if not words:
            raise ProtocolError(ErrorCode.BAD_FRAME,
                                "search text holds no word to look for (letters or digits)")
        if frame.room is not None:
            self.rooms.readable_room(user, frame.room)  # history's errors
        if frame.before is not None:
            # Checked now, not when the answer is built: a bad cursor is the asker's error.
            try:
                world.store.check_search_cursor(frame.before)
            except BadCursor:
                raise ProtocolError(ErrorCode.BAD_FRAME,
                                    "before is not a cursor from a search answer (its next)"
                                    ) from None
        targets = self._targets(user, frame)

        def answer() -> None:
            # Built when the session sends it, from the memberships of that moment: a
            # room left while the search waited is not searched.
            # From the user's read budget too (read_budget): its hits are stored messages.
            credit = read_credit(world.admission, user, frame.id or frame.T,
                                 world.config.answer_page_bytes)
            session.answer(metered(self._answer(user, words, frame), credit), ref=frame.id)

        store = world.store
        behind = store.search_behind(targets)
        if 0 < behind <= SEARCH_WAIT_MAX_BEHIND:
            store.when_indexed(targets, answer, SEARCH_WAIT_S)
        else:
            answer()

    def _targets(self, user: User, frame: Search) -> dict[str, int]:
        """The rooms to search now, each with its newest committed seq."""
        rooms = self.world.rooms
        names = user.rooms if frame.room is None else (frame.room,)
        return {name: rooms[name].durable_seq for name in names if name in rooms}

    def _answer(self, user: User, words: list[str], frame: Search
                ) -> Generator[AnswerItem, None, None]:
        page = yield from self._page(user, words, frame)
        yield frame_binary(encode(page))

    def _page(self, user: User, words: list[str], frame: Search
              ) -> Generator[AnswerItem, None, SearchResults]:
        """The answer; a generator, since a cluster node's store reads the hits from
        Redis (a future: ``awaited``)."""
        world = self.world
        limit = frame.limit or DEFAULT_SEARCH_LIMIT
        if frame.room is not None:
            try:
                self.rooms.readable_room(user, frame.room)
            except ProtocolError:  # left (or the DM archived) while the search waited
                return SearchResults((), False, ref=frame.id)
        targets = self._targets(user, frame)
        try:
            found = yield from awaited(world.store.search(
                user.name, tuple(targets), words, frame.before, limit + 1))
        except BadCursor:  # checked when the frame came; a store may still refuse it
            found = []
        # A store that read from the network (a cluster node) took loop turns: only the
        # rooms the user may read now, after the read.
        if frame.room is not None:
            try:
                self.rooms.readable_room(user, frame.room)
            except ProtocolError:
                found = []
        else:
            found = [(cursor, m) for cursor, m in found if m.room in user.rooms]
        behind = world.store.search_behind(targets)
        more = len(found) > limit
        del found[limit:]
        last = found[-1][0] if found else None
        # Committed messages only, as history (the SQLite index reads committed rows
        # anyway; the memory store also sees writes whose commit may yet fail).
        rooms = world.rooms
        found = [(cursor, m) for cursor, m in found
                 if m.room in rooms and m.seq <= rooms[m.room].durable_seq]
        kept = first_within(found, lambda item: stored_msg_size(item[1]),
                            world.config.answer_page_bytes) if found else found
        more = more or len(kept) < len(found)
        msgs: tuple[StoredMsg, ...] = tuple(_as_sender_sees(m) for _, m in kept)
        world.metrics.count_out("search")
        after = kept[-1][0] if kept else last  # all of it still uncommitted: skip it
        return SearchResults(msgs, more, after if more else None, ref=frame.id,
                             behind=behind or None)


def _as_sender_sees(m: StoredMsg) -> StoredMsg:
    """A hidden message the store found is the reader's own: it shows as any other."""
    return m if not m.hidden else StoredMsg(m.room, m.seq, m.sender, m.text, m.ts, m.kind,
                                            m.id)
