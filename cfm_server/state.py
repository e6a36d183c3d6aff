"""The hub's live state: users and rooms as plain objects (no I/O, no protocol).

The hub loads these from the store at start-up and writes every change through; the
objects here are the source of truth for who is a member, who watches whom and which
sessions to deliver to.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from cfm_common import rules
from cfm_server.store import Commit, ContactRecord, UserRecord

if TYPE_CHECKING:
    from cfm_common.frames import StoredMsg
    from cfm_server.pages import AnswerItem


class BucketLimits(Protocol):
    """The per-kind rate buckets of one connection."""

    def lift_buckets(self) -> None:
        """Stop charging the per-kind buckets (the server's own bots answer everyone)."""


class Connection(Protocol):
    """One client connection, as the domain uses it."""

    # Given at sign-in ("s1", "s2", ...): the welcome names it, the log too.
    id: str
    # The client's address: the per-address sign-up limit.
    ip: str
    # Set at sign-in, None again at sign-out.
    user: User | None
    # hello.quiet: no member frames nor room-only presence.
    quiet: bool

    @property
    def limits(self) -> BucketLimits: ...

    def send(self, data: bytes) -> None:
        """Queue one encoded frame; never waits."""

    def send_framed(self, framed: bytes) -> None:
        """Queue a frame already framed by ``wsframe.frame_binary`` (shared by a fan-out)."""

    def answer(self, pages: Iterator[AnswerItem], ref: str | None = None) -> None:
        """Send an answer of framed pages, produced as the reader drains them (an item
        may be a read still under way: ``pages.AnswerItem``); a failed one is an
        ``internal`` error naming ``ref``."""

    def close(self, code: int, reason: str = "") -> None:
        """Start closing the connection with ``code``; later sends are dropped."""


@dataclass(slots=True)
class User:
    record: UserRecord
    sessions: list[Connection] = field(default_factory=list)
    rooms: set[str] = field(default_factory=set)  # lasting memberships, DM rooms included
    contacts: dict[str, ContactRecord] = field(default_factory=dict)  # the user's own list
    reads: dict[str, int] = field(default_factory=dict)
    # Cluster mode: the user holds a session on another node (always False on a single
    # node, where ``sessions`` are all there are).
    remote: bool = False

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def online(self) -> bool:
        return bool(self.sessions) or self.remote

    def has_blocked(self, name: str) -> bool:
        contact = self.contacts.get(name)
        return contact is not None and contact.blocked

    def status_for(self, viewer: str | None) -> str:
        """The status ``viewer`` sees (None: anyone who is not blocked)."""
        if not (self.sessions or self.remote) or (viewer is not None
                                                  and self.has_blocked(viewer)):
            return rules.Status.OFFLINE.value
        if viewer == self.name:
            return self.record.status
        return rules.public_status(self.record.status)


@dataclass(slots=True)
class Pending:
    """A stored message waiting for its commit before its ack and fan-out go out."""

    msg: StoredMsg
    data: bytes  # the `msg` frame, encoded once for every recipient
    commit: Commit
    sender: Connection
    started: float
    # Sessions that retried the same (sender, id) while it was in flight: they get the ack too.
    retries: list[Connection] = field(default_factory=list)
    # A DM message from a user its peer blocked: the peer's sessions get this placeholder
    # (``msg{hidden}``, no text) instead of ``data``; only the sender's sessions see ``data``.
    placeholder: bytes | None = None


@dataclass(slots=True)
class Room:
    name: str
    seq: int  # the latest assigned seq
    epoch: str
    members: set[str] = field(default_factory=set)
    # The same names, sorted: a capped ``joined.members`` or a ``members`` page is a slice.
    roster: list[str] = field(default_factory=list)
    # The sessions that still want this room's member/presence fan-out: the non-quiet
    # sessions of its members (group rooms only). A join or a presence change walks
    # these, not every member, so quiet sessions cost nothing there.
    loud: set[Connection] = field(default_factory=set)
    # Every session signed in here of a member (quiet ones too): where a message of the
    # room goes. A fan-out walks these, not every member — on a cluster node most members
    # may have no session here; on a single node, those offline none at all. Kept by
    # ``World`` (membership, sign-in, sign-out) and nowhere else.
    here: set[Connection] = field(default_factory=set)
    durable_seq: int = 0  # the latest seq whose commit completed
    # Messages in seq order whose commits have not all been handled yet.
    pending: collections.deque[Pending] = field(default_factory=collections.deque)
    # DM rooms: the members who have written in it since this server started. A reply to
    # someone who wrote first is no unsolicited message (the stranger bucket's target).
    wrote: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.durable_seq = self.seq

    @property
    def is_dm(self) -> bool:
        return self.name.startswith(rules.DM_PREFIX)

    def add_member(self, name: str) -> None:
        if name not in self.members:
            self.members.add(name)
            bisect.insort(self.roster, name)

    def remove_member(self, name: str) -> None:
        if name in self.members:
            self.members.discard(name)
            del self.roster[bisect.bisect_left(self.roster, name)]

    def roster_page(self, after: str | None, limit: int) -> tuple[list[str], bool]:
        """Up to ``limit`` member names sorted, each > ``after``; and whether more follow."""
        start = 0 if after is None else bisect.bisect_right(self.roster, after)
        names = self.roster[start:start + limit]
        return names, start + limit < len(self.roster)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq
