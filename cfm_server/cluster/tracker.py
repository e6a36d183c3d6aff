"""The seq order of one subscribed room on this node (pure logic, no I/O).

Live messages reach a node by pub/sub, which may lose some (a dropped or half-open
connection) and may deliver a node's own appends after the node already knows them.
The tracker turns whatever arrives, in whatever order, into the room's messages in seq
order, each exactly once:

- ``last`` is the last seq handed on; anything at or below it is a duplicate;
- a message past ``last + 1`` is held, and :meth:`gap` names the range to read from the
  stream; the reader offers what it read, and the held messages follow in order;
- before the room's head is known (just subscribed) everything is held; :meth:`head`
  then drops what the head already covers (the hub replays that from history).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delivery:
    seq: int
    origin: str
    msg: bytes


class RoomTracker:
    __slots__ = ("epoch", "held", "last", "room", "target")

    def __init__(self, room: str) -> None:
        self.room = room
        self.last: int | None = None  # None until the head is known
        self.epoch: str | None = None
        self.target = 0  # the highest seq known to exist (from a head read)
        self.held: dict[int, Delivery] = {}

    def head(self, seq: int, epoch: str) -> list[Delivery]:
        """The room's head as read from Redis: what may be handed on now. A head without
        an epoch ("": Redis holds none) keeps the one the tracker has (the subscriber's,
        or a first message's)."""
        if self.last is None:
            self.last, self.epoch = seq, epoch or self.epoch
            self.held = {s: d for s, d in self.held.items() if s > seq}
            return self._drain()
        self.target = max(self.target, seq)
        return []

    def offer(self, seq: int, origin: str, msg: bytes) -> list[Delivery]:
        """A message of the current epoch: the messages that may be handed on now, in order."""
        if self.last is not None and seq <= self.last:
            return []
        self.held[seq] = Delivery(seq, origin, msg)
        return self._drain()

    def restart(self, epoch: str, last: int) -> None:
        """The room's epoch changed (its history was lost or reset): a new sequence, of
        which everything up to ``last`` counts as handed on."""
        self.last, self.epoch, self.target = last, epoch, 0
        self.held.clear()

    def gap(self) -> tuple[int, int] | None:
        """(after, upto): the seqs after ``after`` up to ``upto`` are missing; None: no gap."""
        if self.last is None:
            return None
        upto = self.target
        if self.held:
            upto = max(upto, min(self.held) - 1)
        return (self.last, upto) if upto > self.last else None

    def skip_to(self, seq: int) -> list[Delivery]:
        """Give up on the seqs up to ``seq`` (gone from the stream): deliver what follows."""
        if self.last is not None and seq > self.last:
            self.last = seq
            self.held = {s: d for s, d in self.held.items() if s > seq}
        return self._drain()

    def _drain(self) -> list[Delivery]:
        out: list[Delivery] = []
        if self.last is None:
            return out
        held = self.held
        nxt = self.last + 1
        while nxt in held:
            out.append(held.pop(nxt))
            nxt += 1
        self.last = nxt - 1
        return out
