"""Gap and duplicate bookkeeping: every room's messages once each, in ``seq`` order.

Pure data, no I/O: the client feeds it ``welcome``/``joined`` frames and every ``msg`` it
sees (live, replayed, fetched with ``history`` or made from its own ``ack``), and it
answers with the messages that may be handed to the application now and with the
ranges that must be fetched. One rule does all the work: a room's next message is
``delivered + 1``; anything at or below ``delivered`` is a duplicate, anything past it
waits in ``ahead`` until the hole before it is filled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from cfm_common import rules
from cfm_common.frames import Joined, Msg, RoomState

log = logging.getLogger(__name__)


@dataclass
class RoomCursor:
    """Where the application's copy of one room stands."""

    epoch: str | None
    delivered: int
    ahead: dict[int, Msg] = field(default_factory=dict)

    def reset(self, epoch: str | None) -> None:
        self.epoch = epoch
        self.delivered = 0
        self.ahead.clear()


class Resume:
    """Per-room cursors; ``saved`` maps room → (last seq handed over, epoch or None)."""

    def __init__(self, saved: dict[str, tuple[int, str | None]] | None = None) -> None:
        self.rooms: dict[str, RoomCursor] = {
            room: RoomCursor(epoch, seq) for room, (seq, epoch) in (saved or {}).items()
        }

    # --- what the server says about rooms -------------------------------------------

    def on_welcome(self, states: Iterable[RoomState]) -> list[str]:
        """Line the cursors up with ``welcome.rooms``; the rooms with messages to fetch.

        A room seen for the first time counts as read up to the user's read mark, so a
        fresh client shows only unread messages. An epoch that changed means the room's
        history was reset: start again from 0. Rooms the user no longer belongs to are
        forgotten.
        """
        to_fetch = []
        present = set()
        for state in states:
            present.add(state.room)
            cursor = self.rooms.get(state.room)
            if cursor is None:
                cursor = RoomCursor(state.epoch, min(state.read, state.seq))
                self.rooms[state.room] = cursor
            elif cursor.epoch is None:
                cursor.epoch = state.epoch
            elif cursor.epoch != state.epoch:
                log.info("room %s has a new epoch (%s); fetching it from the start",
                         state.room, state.epoch)
                cursor.reset(state.epoch)
            if state.seq > cursor.delivered:
                to_fetch.append(state.room)
        for room in set(self.rooms) - present:
            del self.rooms[room]
        return to_fetch

    def join_since(self, room: str) -> tuple[int | None, str | None]:
        """The ``since`` and ``epoch`` a ``join`` should carry: replay what we lack."""
        cursor = self.rooms.get(room)
        if cursor is None or cursor.epoch is None:
            return None, None
        return cursor.delivered, cursor.epoch

    def on_joined(self, joined: Joined) -> bool:
        """Take a ``joined`` in; True if more than its replay must be fetched."""
        cursor = self.rooms.get(joined.room)
        if cursor is None:
            # A join without `since` replays nothing: the room starts for us here.
            self.rooms[joined.room] = RoomCursor(joined.epoch, joined.seq)
            return False
        if joined.reset or (cursor.epoch is not None and cursor.epoch != joined.epoch):
            cursor.reset(joined.epoch)
        cursor.epoch = joined.epoch
        return bool(joined.more)

    def forget(self, room: str) -> None:
        """The user left the room: a later join starts afresh."""
        self.rooms.pop(room, None)

    # --- messages -------------------------------------------------------------------

    def offer(self, msg: Msg) -> list[Msg]:
        """Take one message in; return those now deliverable, in order (maybe none)."""
        cursor = self.rooms.get(msg.room)
        if cursor is None:
            # A room we have not heard of (created or joined after our welcome, perhaps
            # by another session of ours). A DM room is ours entirely: take it from the
            # start. A group room starts where we came in.
            baseline = 0 if rules.dm_members(msg.room) else msg.seq - 1
            cursor = RoomCursor(None, baseline)
            self.rooms[msg.room] = cursor
        if msg.seq <= cursor.delivered or msg.seq in cursor.ahead:
            return []
        if msg.seq != cursor.delivered + 1:
            cursor.ahead[msg.seq] = msg
            return []
        out = [msg]
        cursor.delivered = msg.seq
        while cursor.delivered + 1 in cursor.ahead:
            cursor.delivered += 1
            out.append(cursor.ahead.pop(cursor.delivered))
        return out

    def has_gap(self, room: str) -> bool:
        """True if messages wait behind a hole in ``room``."""
        cursor = self.rooms.get(room)
        return cursor is not None and bool(cursor.ahead)

    def delivered(self, room: str) -> int:
        cursor = self.rooms.get(room)
        return cursor.delivered if cursor is not None else 0

    def epoch(self, room: str) -> str | None:
        cursor = self.rooms.get(room)
        return cursor.epoch if cursor is not None else None

    def skip_gap(self, room: str) -> list[Msg]:
        """Give up on a hole the server cannot fill: release what waits behind it.

        The server's sequences are gapless, so this is a last resort against a stall
        (a store that lost messages without changing the epoch), never the normal path.
        """
        cursor = self.rooms.get(room)
        if cursor is None or not cursor.ahead:
            return []
        first = min(cursor.ahead)
        log.warning("room %s: messages %d..%d cannot be fetched; skipping them",
                    room, cursor.delivered + 1, first - 1)
        cursor.delivered = first - 1
        return self.offer(cursor.ahead.pop(first))
