"""One conversation (a DM or a group room) as plain data: its transcript and its marks.

A transcript merges three kinds of line: the room's messages (ordered and de-duplicated
by ``seq``, whatever order they arrive in: live, caught up, or paged in from history),
local notes ("You can't send a nudge that often.") pinned after the message they
followed, and the user's own messages still waiting for their ``ack``.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from enum import StrEnum

from cfm_common import rules
from cfm_common.frames import Msg, StoredMsg

TYPING_TIMEOUT_S = 5.0


class LineKind(StrEnum):
    SAY = "say"
    NUDGE = "nudge"
    NOTE = "note"
    PENDING = "pending"
    SEEN = "seen"  # under the newest of our messages the other side of a DM has read


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """What the transcript widget draws; ``sender`` is a handle (None for notes)."""

    kind: LineKind
    text: str
    ts: int
    sender: str | None = None
    seq: int | None = None


@dataclass(slots=True)
class _Note:
    after_seq: int
    order: int
    text: str
    ts: int


@dataclass(slots=True)
class PendingSend:
    id: str
    text: str
    ts: int


@dataclass
class Conversation:
    room: str
    me: str
    latest_seq: int = 0
    read_mark: int = 0
    peer_read: int = 0
    epoch: str | None = None
    # Group rooms: handle -> True while a member; None until a ``joined`` told us.
    members: set[str] | None = None
    loaded_all: bool = False
    messages: list[Msg] = field(default_factory=list)
    pending: dict[str, PendingSend] = field(default_factory=dict)
    typing: dict[str, float] = field(default_factory=dict)
    _seqs: set[int] = field(default_factory=set)
    # The lowest seq of a hidden placeholder (a message from someone this user blocked)
    # held in ``_seqs`` but not shown: paging older history goes on below it.
    _lowest_hidden: int | None = None
    _notes: list[_Note] = field(default_factory=list)
    _order: itertools.count = field(default_factory=itertools.count)

    # --- identity --------------------------------------------------------------------

    @property
    def is_group(self) -> bool:
        return rules.is_group_room(self.room)

    @property
    def peer(self) -> str | None:
        """The other handle of a DM room (None for group rooms)."""
        pair = rules.dm_members(self.room)
        if pair is None:
            return None
        a, b = pair
        return b if a == rules.normalize_name(self.me) else a

    # --- messages --------------------------------------------------------------------

    def add_message(self, msg: Msg | StoredMsg) -> bool:
        """Insert a message in ``seq`` order; False if that ``seq`` is already here."""
        if isinstance(msg, StoredMsg):
            msg = Msg.from_stored(msg)
        if msg.id is not None and msg.sender == self.me:
            self.pending.pop(msg.id, None)
        if msg.seq in self._seqs:
            return False
        self._seqs.add(msg.seq)
        if msg.hidden:  # a placeholder: it takes its seq and shows nothing
            self.latest_seq = max(self.latest_seq, msg.seq)
            if self._lowest_hidden is None or msg.seq < self._lowest_hidden:
                self._lowest_hidden = msg.seq
            return False
        bisect.insort(self.messages, msg, key=lambda m: m.seq)
        self.latest_seq = max(self.latest_seq, msg.seq)
        # Whoever speaks has stopped typing.
        self.typing.pop(msg.sender, None)
        if msg.sender == self.me:
            # Saying something means having read everything before it.
            self.read_mark = max(self.read_mark, msg.seq)
        return True

    def add_history(self, msgs: tuple[StoredMsg, ...] | list[StoredMsg], more: bool,
                    *, older: bool = True) -> int:
        """Merge a page of history; returns how many messages were new."""
        added = sum(self.add_message(m) for m in msgs)
        if older and not more:
            self.loaded_all = True
        return added

    @property
    def oldest_seq(self) -> int | None:
        shown = self.messages[0].seq if self.messages else None
        if self._lowest_hidden is None:
            return shown
        return self._lowest_hidden if shown is None else min(shown, self._lowest_hidden)

    @property
    def can_load_older(self) -> bool:
        if self.loaded_all:
            return False
        oldest = self.oldest_seq
        return oldest > 1 if oldest is not None else self.latest_seq > 0

    def reset(self, epoch: str | None) -> None:
        """The room's history was lost or reset on the server: start over."""
        self.epoch = epoch
        self.messages.clear()
        self._seqs.clear()
        self._lowest_hidden = None
        self.latest_seq = 0
        self.read_mark = 0
        self.peer_read = 0
        self.loaded_all = False

    # --- the user's own sends --------------------------------------------------------

    def add_pending(self, id: str, text: str, ts: int) -> None:
        self.pending[id] = PendingSend(id, text, ts)

    def confirm(self, id: str, seq: int, ts: int, kind: str = rules.MsgKind.TEXT) -> None:
        """The server acknowledged one of our sends: it is a message with a ``seq`` now."""
        sent = self.pending.pop(id, None)
        text = sent.text if sent is not None else ""
        self.add_message(Msg(self.room, seq, self.me, text, ts, kind, id))

    def fail(self, id: str, reason: str, ts: int) -> None:
        sent = self.pending.pop(id, None)
        if sent is not None:
            self.note(f"The following message could not be delivered ({reason}):\n{sent.text}",
                      ts)

    def note(self, text: str, ts: int) -> None:
        self._notes.append(_Note(self.latest_seq, next(self._order), text, ts))

    # --- marks -----------------------------------------------------------------------

    def unread(self) -> int:
        return sum(1 for m in self.messages if m.seq > self.read_mark and m.sender != self.me)

    def mark_seen(self) -> int | None:
        """Move the read mark to the newest message; the seq to send, or None."""
        newest = max(self.latest_seq, self.messages[-1].seq if self.messages else 0)
        if newest <= self.read_mark:
            return None
        self.read_mark = newest
        return newest

    def seen_seq(self) -> int | None:
        """The newest of our own messages the other member of a DM has read, or None."""
        if self.peer is None or self.peer_read <= 0:
            return None
        for m in reversed(self.messages):
            if m.seq <= self.peer_read and m.sender == self.me:
                return m.seq
        return None

    def set_typing(self, who: str, now: float, timeout: float = TYPING_TIMEOUT_S) -> None:
        self.typing[who] = now + timeout

    def typing_names(self, now: float) -> list[str]:
        for who in [w for w, until in self.typing.items() if until <= now]:
            del self.typing[who]
        return sorted(self.typing)

    # --- rendering -------------------------------------------------------------------

    def lines(self) -> list[TranscriptLine]:
        keyed: list[tuple[tuple[int, int, int], TranscriptLine]] = []
        for m in self.messages:
            kind = LineKind.NUDGE if m.kind == rules.MsgKind.NUDGE else LineKind.SAY
            keyed.append(((m.seq, 0, 0), TranscriptLine(kind, m.text, m.ts, m.sender, m.seq)))
        seen = self.seen_seq()
        if seen is not None:
            keyed.append(((seen, 0, 1), TranscriptLine(LineKind.SEEN, "Seen", 0, seq=seen)))
        for n in self._notes:
            keyed.append(((n.after_seq, 1, n.order), TranscriptLine(LineKind.NOTE, n.text, n.ts)))
        keyed.sort(key=lambda pair: pair[0])
        out = [line for _, line in keyed]
        out.extend(TranscriptLine(LineKind.PENDING, p.text, p.ts, self.me)
                   for p in self.pending.values())
        return out
