"""Search: a user's stored messages by their words, newest first, across the rooms and
DMs the user is a member of now (docs/protocol.md, "Search").

Which rooms is decided here, from the live memberships, and nowhere else: the store is
given the list and never widens it. A DM message hidden from the user by a block is
left out by the store (it knows the mark); what it holds is never found by its text.
"""

from __future__ import annotations

from cfm_common.codec import encode
from cfm_common.errors import ProtocolError
from cfm_common.frames import Search, SearchResults, StoredMsg
from cfm_common.rules import ErrorCode
from cfm_server.domain.ports import Connection
from cfm_server.domain.rooms import RoomHandler
from cfm_server.domain.world import World
from cfm_server.pages import first_within, one_page, stored_msg_size
from cfm_server.state import User
from cfm_server.store import BadCursor
from cfm_server.store.searchwords import words_of

DEFAULT_SEARCH_LIMIT = 20


class SearchHandler:
    def __init__(self, world: World, rooms: RoomHandler) -> None:
        self.world = world
        self.rooms = rooms

    def search(self, session: Connection, frame: Search) -> None:
        user = self.world.user_of(session)
        words = words_of(frame.text)
        if not words:
            raise ProtocolError(ErrorCode.BAD_FRAME,
                                "search text holds no word to look for (letters or digits)")
        if frame.room is not None:
            room = self.rooms.readable_room(user, frame.room)  # history's errors
            rooms: set[str] | frozenset[str] = frozenset((room.name,))
        else:
            rooms = user.rooms
        # Checked now, not when the answer is built: a bad cursor is the asker's error.
        page = self._page(user, rooms, words, frame)
        session.answer(one_page(lambda: encode(page)))

    def _page(self, user: User, rooms: set[str] | frozenset[str], words: list[str],
              frame: Search) -> SearchResults:
        world = self.world
        limit = frame.limit or DEFAULT_SEARCH_LIMIT
        try:
            found = world.store.search(user.name, tuple(rooms), words, frame.before,
                                       limit + 1)
        except BadCursor:
            raise ProtocolError(ErrorCode.BAD_FRAME,
                                "before is not a cursor from a search answer (its next)"
                                ) from None
        more = len(found) > limit
        del found[limit:]
        last = found[-1][0] if found else None
        # Committed messages only, as history: the store also sees writes whose commit
        # is still to come, and may yet fail.
        found = [(cursor, m) for cursor, m in found
                 if m.room in world.rooms and m.seq <= world.rooms[m.room].durable_seq]
        kept = first_within(found, lambda item: stored_msg_size(item[1]),
                            world.config.answer_page_bytes) if found else found
        more = more or len(kept) < len(found)
        msgs: tuple[StoredMsg, ...] = tuple(_as_sender_sees(m) for _, m in kept)
        world.metrics.count_out("search")
        after = kept[-1][0] if kept else last  # all of it still uncommitted: skip it
        return SearchResults(msgs, more, after if more else None, ref=frame.id)


def _as_sender_sees(m: StoredMsg) -> StoredMsg:
    """A hidden message the store found is the reader's own: it shows as any other."""
    return m if not m.hidden else StoredMsg(m.room, m.seq, m.sender, m.text, m.ts, m.kind,
                                            m.id)
