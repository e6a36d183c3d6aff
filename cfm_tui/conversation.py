"""One conversation (a DM or a group room) as plain data: its transcript and its marks.

A transcript merges three kinds of line: the room's messages (ordered and de-duplicated
by ``seq``, whatever order they arrive in: live, caught up, or paged in from history),
local notes ("You can't send a nudge that often.") pinned after the message they
followed, and the user's own messages still waiting for their ``ack``.

Change entries (a ``msg`` with ``change`` and ``target``: edit, delete, react, unreact)
are applied to the message they target (:mod:`cfm_tui.changes`) and never shown as
messages of their own; history pages carry messages in their current state already.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from enum import StrEnum

from cfm_common import rules
from cfm_common.frames import Msg, StoredMsg
from cfm_tui.changes import apply_change, mentions

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
    # Message changes: edited (a time), a tombstone, reactions as (emoji, names), the
    # message this one answers (None: not a reply; a Msg, or None-held: see ``quote``),
    # and whether it mentions the user.
    edited: bool = False
    deleted: bool = False
    reactions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    reply: int | None = None
    quote: Msg | None = None
    mentions_me: bool = False


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
    reply: int | None = None


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
    # The members shown before a reconnect made ``members`` unknown again (who joined
    # or left meanwhile was never told us): the next ``joined`` is compared with them.
    members_before: set[str] | None = None
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
    # welcome.rooms[]'s counts for a returning client, true while the read mark is the
    # one they were counted from (``_server_read``) and only up to ``_server_upto``: the
    # messages they count are usually not loaded here.
    server_unread: int = 0
    server_mentions: int = 0
    _server_read: int = 0
    _server_upto: int = 0
    # Answered messages not held here, fetched on their own (seq -> message).
    quotes: dict[int, Msg] = field(default_factory=dict)
    # A DM whose other account the operator removed: what it shows is that account's
    # (its room archived on the server). A new account that claims the handle has a new
    # room whose seqs start at 1 again, so its first message starts this over
    # (``start_over``): kept, they would be dropped as duplicates of the old seqs.
    superseded: bool = False

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
        if self.superseded:
            self.start_over(msg.ts)
        if msg.id is not None and msg.sender == self.me:
            self.pending.pop(msg.id, None)
        if msg.seq in self._seqs:
            return False
        self._seqs.add(msg.seq)
        if msg.change is not None and not msg.hidden:
            # An entry that changes an earlier message: applied to it, never shown.
            self.latest_seq = max(self.latest_seq, msg.seq)
            return self._apply_change(msg)
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

    def _apply_change(self, entry: Msg) -> bool:
        """Apply a change entry to its target, if held; True if that changed it."""
        assert entry.target is not None
        i = bisect.bisect_left(self.messages, entry.target, key=lambda m: m.seq)
        if i == len(self.messages) or self.messages[i].seq != entry.target:
            quoted = self.quotes.get(entry.target)
            if quoted is not None:
                self.quotes[entry.target] = apply_change(quoted, entry)
            return False  # older than our copy: a page brings it in its current state
        changed = apply_change(self.messages[i], entry)
        if changed is self.messages[i]:
            return False
        self.messages[i] = changed
        return True

    def message(self, seq: int) -> Msg | None:
        """The message ``seq`` if held (loaded, or fetched as a quote)."""
        i = bisect.bisect_left(self.messages, seq, key=lambda m: m.seq)
        if i < len(self.messages) and self.messages[i].seq == seq:
            return self.messages[i]
        return self.quotes.get(seq)

    def missing_quotes(self) -> set[int]:
        """Messages answered by held ones that are not held themselves."""
        return {m.reply for m in self.messages
                if m.reply is not None and self.message(m.reply) is None}

    def last_own(self) -> Msg | None:
        """The user's newest message that can still be edited (text, not deleted)."""
        for m in reversed(self.messages):
            if m.sender == self.me and m.kind == rules.MsgKind.TEXT and not m.deleted:
                return m
        return None

    def selectable(self) -> list[int]:
        """The seqs of the messages a user can pick in the transcript (not tombstones)."""
        return [m.seq for m in self.messages if not m.deleted]

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
        self.quotes.clear()
        self.latest_seq = 0
        self.read_mark = 0
        self.peer_read = 0
        self.loaded_all = False
        self.set_server_counts(0, 0, None, None)

    def start_over(self, ts: int) -> None:
        """The handle of this DM is held by a new account: its room is a new one, so
        the removed account's lines (and the notes pinned among them) go."""
        self.superseded = False
        self.reset(None)
        self._notes.clear()
        self.note("A new account holds this handle now: this is a new conversation "
                  "(the one with the removed account is no longer shown).", ts)

    # --- the user's own sends --------------------------------------------------------

    def add_pending(self, id: str, text: str, ts: int, reply: int | None = None) -> None:
        self.pending[id] = PendingSend(id, text, ts, reply)

    def confirm(self, id: str, seq: int, ts: int, kind: str = rules.MsgKind.TEXT) -> None:
        """The server acknowledged one of our sends: it is a message with a ``seq`` now."""
        sent = self.pending.pop(id, None)
        text = sent.text if sent is not None else ""
        reply = sent.reply if sent is not None else None
        self.add_message(Msg(self.room, seq, self.me, text, ts, kind, id, reply=reply))

    def fail(self, id: str, reason: str, ts: int) -> None:
        sent = self.pending.pop(id, None)
        if sent is not None:
            self.note(f"The following message could not be delivered ({reason}):\n{sent.text}",
                      ts)

    def note(self, text: str, ts: int) -> None:
        self._notes.append(_Note(self.latest_seq, next(self._order), text, ts))

    # --- marks -----------------------------------------------------------------------

    def _counts_unread(self, m: Msg) -> bool:
        return m.seq > self.read_mark and m.sender != self.me and not m.deleted

    def _server_counts_hold(self) -> bool:
        return self.read_mark == self._server_read and self.read_mark < self._server_upto

    def unread(self) -> int:
        """Messages from others after the read mark (tombstones not counted); for a
        returning client, at least what the welcome counted that we have not loaded."""
        local = [m for m in self.messages if self._counts_unread(m)]
        if not self._server_counts_hold():
            return len(local)
        upto = self._server_upto
        within = sum(1 for m in local if m.seq <= upto)
        return max(self.server_unread, within) + (len(local) - within)

    def unread_mentions(self) -> int:
        """Unread messages that mention the user (highlighted, counted in tab and list)."""
        local = [m for m in self.messages if self._counts_unread(m) and self.me in mentions(m)]
        if not self._server_counts_hold():
            return len(local)
        upto = self._server_upto
        within = sum(1 for m in local if m.seq <= upto)
        return max(self.server_mentions, within) + (len(local) - within)

    def set_server_counts(self, read: int, upto: int, unread: int | None,
                          mentions: int | None) -> None:
        """welcome.rooms[]'s ``unread`` and ``mentions`` (absent: 0) from mark ``read``."""
        self._server_read, self._server_upto = read, upto
        self.server_unread, self.server_mentions = unread or 0, mentions or 0

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
            line = TranscriptLine(
                kind, m.text, m.ts, m.sender, m.seq, edited=m.edited is not None,
                deleted=bool(m.deleted),
                reactions=tuple((r.emoji, tuple(r.names)) for r in m.reactions or ()),
                reply=m.reply, quote=self.message(m.reply) if m.reply is not None else None,
                mentions_me=self.me in mentions(m))
            keyed.append(((m.seq, 0, 0), line))
        seen = self.seen_seq()
        if seen is not None:
            keyed.append(((seen, 0, 1), TranscriptLine(LineKind.SEEN, "Seen", 0, seq=seen)))
        for n in self._notes:
            keyed.append(((n.after_seq, 1, n.order), TranscriptLine(LineKind.NOTE, n.text, n.ts)))
        keyed.sort(key=lambda pair: pair[0])
        out = [line for _, line in keyed]
        out.extend(TranscriptLine(LineKind.PENDING, p.text, p.ts, self.me, reply=p.reply,
                                  quote=self.message(p.reply) if p.reply else None)
                   for p in self.pending.values())
        return out
