"""The outbox, and which answer belongs to which request: reply matching, by ids only.

Every ``say``/``nudge``, every message change (``edit``, ``delete``, ``react``,
``unreact``) and every request (``join``, ``leave``, ``history``, ``members``,
``contact``, ``moderators``, ``search``) is an :class:`Outgoing` entry here from the
moment it is made until it is answered, failed or withdrawn; entries keep the order
they were made in (their ``slot``), which is the order a reconnect sends them again in.

Matching is by id and nothing else (docs/protocol.md, "Request ids"): a ``say``,
``nudge`` or change carries the client's message id, which its ``ack`` and its ``error`` name; a
request gets a request id of its own (``~q<n>``), which its answer and its error carry
back as ``ref``. An answer whose ``ref`` names no entry of ours, or none at all, is not
ours to take (a copy meant for another session of the same user): the caller hands it
to the program as an event. No I/O and no event loop: a :class:`Reply` is settled here
and tells whoever waits through its ``on_settled`` callback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from cfm_common import frames as f
from cfm_common import rules

# The kinds whose entry is keyed by the message id the caller chose (or was given): each
# is stored as an entry of its room's sequence and acked, so each is retried like a say
# (same id, in order) and its ack stands for our own entry (the server echoes none).
CHANGES = frozenset({"edit", "delete", "react", "unreact"})
MESSAGES = frozenset({"say", "nudge"}) | CHANGES
ChangeFrame = f.Edit | f.Delete | f.React | f.Unreact


class Reply:
    """The outcome of one entry once there is one: a value, an error, or withdrawn (the
    caller gave up, or the connection it was made for went)."""

    __slots__ = ("_done", "error", "on_settled", "value", "withdrawn")

    def __init__(self) -> None:
        self._done = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.withdrawn = False
        self.on_settled: Callable[[Reply], None] | None = None

    def done(self) -> bool:
        return self._done


@dataclass(eq=False)
class Outgoing:
    """A frame waiting for its answer (or for a connection to be sent on)."""

    frame: f.ClientFrame
    kind: str  # say, nudge, a change, or a request: join, history, contact, leave, ...
    key: Any  # for people: the message id, the room, or (op, name) of a contact request
    reply: Reply = field(default_factory=Reply)
    slot: int = 0  # its place in the send order
    sent_on: int = 0  # the connection generation it was last written on
    writes: int = 0  # how often it was written: more than once means a retry
    refusals: int = 0  # how often the server answered ``internal``
    unsent: bool = False  # waiting in this connection's queue
    written_at: float = 0.0  # when it was last written (the caller's clock)

    @property
    def ident(self) -> str:
        """The id its answer names: the message id, or the request id."""
        ident = getattr(self.frame, "id", None)
        assert isinstance(ident, str)
        return ident

    def target(self, me: str) -> str | None:
        """The room a say, nudge or change lands in (None for requests)."""
        frame = self.frame
        if isinstance(frame, f.Say | ChangeFrame) and frame.room:
            return frame.room
        if isinstance(frame, f.Say | f.Nudge) and frame.to is not None:
            return rules.dm_room(me, frame.to)
        return None


class Outbox:
    """Entries in the order they were made, and by the id their answer will name."""

    def __init__(self) -> None:
        self.entries: dict[int, Outgoing] = {}  # by slot: insertion order = send order
        self.by_id: dict[str, Outgoing] = {}
        self._next_slot = 0
        self._next_request = 0

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, frame: f.ClientFrame, kind: str, key: Any) -> Outgoing:
        """A new entry; a request gets its request id here (a say keeps its own id)."""
        if kind not in MESSAGES:
            frame = replace(frame, id=self._request_id())  # type: ignore[type-var]
        self._next_slot += 1
        entry = Outgoing(frame, kind, key, slot=self._next_slot)
        self.entries[entry.slot] = entry
        self.by_id[entry.ident] = entry
        return entry

    def _request_id(self) -> str:
        """``~q<n>``: skipped if a say of this client's happens to use it."""
        while True:
            self._next_request += 1
            rid = f"~q{self._next_request}"
            if rid not in self.by_id:
                return rid

    def find(self, ident: str | None) -> Outgoing | None:
        """The unanswered entry an ``ack``, answer or ``error`` names."""
        return self.by_id.get(ident) if ident is not None else None

    def answer(self, ref: str | None, kind: str, value: Any) -> bool:
        """Settle the request ``value`` (a frame of ``kind``) answers, by its ``ref``;
        False if it answers none of ours."""
        entry = self.find(ref)
        if entry is None or entry.kind != kind:
            return False
        self.settle(entry, value)
        return True

    def settle(self, entry: Outgoing, value: Any = None, error: BaseException | None = None,
               *, withdrawn: bool = False) -> None:
        """The entry's outcome: it leaves the outbox, and whoever waits is told."""
        reply = entry.reply
        if reply.done():
            return
        reply._done = True
        reply.value, reply.error, reply.withdrawn = value, error, withdrawn
        self.entries.pop(entry.slot, None)
        if self.by_id.get(entry.ident) is entry:
            del self.by_id[entry.ident]
        if reply.on_settled is not None:
            reply.on_settled(reply)

    def withdraw(self, entry: Outgoing) -> None:
        """Nobody waits for it any more (timed out, cancelled): it is not sent again."""
        self.settle(entry, withdrawn=True)

    def fail_all(self, error: BaseException) -> None:
        for entry in list(self.entries.values()):
            self.settle(entry, error=error)

    def unanswered(self) -> list[Outgoing]:
        """Every entry still waiting, oldest first (a copy: settling changes the dict)."""
        return list(self.entries.values())

    def toward(self, room: str, me: str) -> list[Outgoing]:
        """Our says, nudges and changes to ``room`` that wait for their ack."""
        return [entry for entry in self.entries.values()
                if entry.kind in MESSAGES and entry.target(me) == room]
