"""The ``Store`` interface: what the hub needs to keep, and nothing about how.

The hub keeps the live state (users, rooms, memberships, contacts, read marks) in memory,
loads it from the store once at start-up, and writes every change through. Messages
are the exception: they stay in the store and are read back by range.

Writes are applied at once (a read right after sees them) and become durable together:
each write returns a :class:`Commit`, an awaitable that completes when the transaction
holding the write has committed (group commit: one transaction for everything written
in the last few milliseconds). The hub sends an ``ack`` and fans a message out only after
its commit completes, so an acknowledged message survives a SIGKILL.

Reads are plain calls: the stores are embedded and answer in microseconds.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from cfm_common.frames import StoredMsg

# BadCursor is defined beside the cursors it refuses, and is part of this interface.
from cfm_server.store.searchwords import BadCursor as BadCursor
from cfm_server.store.searchwords import parse_position

# Completes when the write is durable; raises StoreError if the commit failed.
Commit = asyncio.Future[None]


class StoreError(Exception):
    """The store cannot do its job (unwritable, full, corrupt or locked): not the client's fault."""

    # When a retry is worth it, where the store knows (a cluster's Redis out of reach):
    # the ``retry_ms`` of the ``internal`` error the client gets.
    retry_ms: int | None = None


class IdentityTaken(StoreError):
    """A new identity's handle was claimed first elsewhere (another node of a cluster,
    at the same moment): the sign-up is refused as ``name_taken``."""


@dataclass(slots=True)
class UserRecord:
    name: str  # lower-cased handle
    token_hash: str  # hex sha256 of the token; the token itself is never stored
    display: str
    psm: str
    status: str  # the last status the user chose (restored on the next sign-in if none given)
    bot: bool
    created_ms: int


@dataclass(slots=True)
class RoomRecord:
    room: str
    seq: int  # the latest stored seq (0: no message yet)
    epoch: str


@dataclass(slots=True)
class ContactRecord:
    owner: str
    name: str
    in_list: bool  # on the owner's contact list
    blocked: bool  # blocked by the owner (may be true without being in the list)


@dataclass(frozen=True, slots=True)
class NoticeRecord:
    """What ``name`` is told at their next sign-in of the account ``subject`` the
    operator removed while they were away (schema v5, domain/notices.py): its request
    withdrawn (``room`` empty) or its leave of the DM ``room``."""

    name: str
    subject: str
    room: str
    display: str
    bot: bool


class Store(ABC):
    """Persistence for the hub. Implementations: ``SqliteStore`` (default), ``MemoryStore``."""

    # --- lifecycle -------------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Open or create the store; raise StoreError with a message a person can act on."""

    @abstractmethod
    async def flush(self) -> None:
        """Commit whatever is pending now and wait for it."""

    @abstractmethod
    async def close(self) -> None:
        """Flush, then release everything. Safe to call twice."""

    # --- start-up snapshot ------------------------------------------------------------

    @abstractmethod
    def load_users(self) -> Iterable[UserRecord]: ...

    @abstractmethod
    def load_rooms(self) -> Iterable[RoomRecord]:
        """Every room with its latest seq and its epoch. A room that has messages but
        whose own write was lost (its batch failed) comes with an empty epoch: the hub
        gives it a new one rather than leave its messages unreachable."""

    @abstractmethod
    def load_members(self) -> Iterable[tuple[str, str]]:
        """(room, user) for every lasting membership, DM rooms included."""

    @abstractmethod
    def load_contacts(self) -> Iterable[ContactRecord]: ...

    @abstractmethod
    def load_reads(self) -> Iterable[tuple[str, str, int]]:
        """(user, room, seq): every read mark."""

    @abstractmethod
    def load_invite_uses(self) -> dict[str, int]:
        """Invite nonce → how many sign-ups it has let in."""

    @abstractmethod
    def load_moderators(self) -> Iterable[tuple[str, str, bool]]:
        """(room, name, creator) for every moderator of every group room."""

    def load_notices(self) -> Iterable[NoticeRecord]:
        """What users are told of removed accounts at their next sign-in (only a single
        node's database keeps these: a cluster's nodes tell their sessions at once)."""
        return ()

    # --- writes (applied now, durable when the returned Commit completes) -------------

    def drop_notices(self, name: str) -> Commit | None:
        """``name``'s notices are told (None: this store keeps none)."""
        return None

    @abstractmethod
    def count_invite_use(self, nonce: str) -> Commit:
        """One more sign-up with the invite ``nonce``. A count, not a total: rolled back
        with its batch, it leaves the others' uses counted (a total written by a later
        sign-up would count a use whose sign-up was rolled back)."""

    @abstractmethod
    def put_user(self, user: UserRecord) -> Commit:
        """Insert or replace a user."""

    @abstractmethod
    def put_room(self, room: RoomRecord) -> Commit:
        """Insert a room, or replace its epoch (the seq follows the messages)."""

    @abstractmethod
    def add_member(self, room: str, user: str) -> Commit: ...

    @abstractmethod
    def remove_member(self, room: str, user: str) -> Commit: ...

    @abstractmethod
    def put_contact(self, contact: ContactRecord) -> Commit:
        """Insert or replace; a record with neither in_list nor blocked is deleted."""

    @abstractmethod
    def set_read(self, user: str, room: str, seq: int) -> Commit: ...

    @abstractmethod
    def append(self, msg: StoredMsg) -> Commit:
        """Store one message. Its seq must be the room's latest + 1 (the hub assigns it).

        In the same commit: a message with ``mentions`` (and not hidden) is noted for
        each mentioned user (``unread_counts``); a change entry (``msg.change``) applies
        its change to its target, which the hub checked exists and may be changed so:
        ``edit`` replaces the target's text and sets ``edited`` to the entry's ts;
        ``delete`` makes it a tombstone (text erased, ``deleted``), erases the text of
        its earlier edit entries, and drops its reactions and mentions; ``react`` adds
        (sender, emoji) to its reactions, ``unreact`` removes it. A hidden entry (sent
        across a block) changes nothing in place but a delete: what it carries must not
        reach the blocker, not even in a page of history, while a delete still erases.
        """

    @abstractmethod
    def put_moderator(self, room: str, name: str, creator: bool) -> Commit:
        """Make ``name`` a moderator of the group room (``creator``: as its creator)."""

    @abstractmethod
    def remove_moderator(self, room: str, name: str) -> Commit: ...

    # --- reads -----------------------------------------------------------------------

    @abstractmethod
    def find_message(self, sender: str, client_id: str) -> StoredMsg | None:
        """The message ``sender`` stored under its client id, for idempotent retries."""

    @abstractmethod
    def history_before(self, room: str, before: int | None, limit: int) -> list[StoredMsg]:
        """Up to ``limit`` messages with seq < before (None: the newest), ascending seq."""

    @abstractmethod
    def history_after(self, room: str, after: int, limit: int) -> list[StoredMsg]:
        """Up to ``limit`` messages with seq > after, ascending seq.

        Both history reads return each message in its current state: edited text with
        ``edited``, tombstones, and its ``reactions`` (emoji in the order of their first
        reaction, names in the order they reacted)."""

    @abstractmethod
    def get_message(self, room: str, seq: int) -> StoredMsg | None:
        """One message in its current state, as history returns it; None if not stored."""

    @abstractmethod
    def unread_counts(self, user: str, room: str, after: int, cap: int) -> tuple[int, int]:
        """(unread, mentions) of ``user`` in ``room`` past seq ``after``: the messages
        of others that are no change entry, no tombstone and not hidden, and the
        mentions of ``user`` among them; each counted up to ``cap``."""

    @abstractmethod
    def search(self, reader: str, rooms: Collection[str], words: Sequence[str],
               before: str | None, limit: int) -> list[tuple[str, StoredMsg]]:
        """Up to ``limit`` messages of ``rooms`` holding every one of ``words`` (whole
        words, any case), newest stored first, each with its cursor: the string a next
        page passes as ``before`` to get only what is older. A message hidden from
        ``reader`` (a DM message marked hidden that ``reader`` did not send) is never
        found. Raises BadCursor for a ``before`` this store did not give out.

        Only what the store's search index holds is found: an index kept off the write
        path (SQLite's) lags a little behind the commits, see ``search_behind``."""

    @property
    def searchable(self) -> bool:
        """False when this store keeps no search index (``search`` raises StoreError)."""
        return True

    # Why not, when ``searchable`` is False: the sentence a client's refusal carries.
    search_unavailable = "search is turned off on this server (search_index)"

    def check_search_cursor(self, before: str) -> None:
        """Raise BadCursor unless ``before`` could be a cursor this store gave out (the
        single-node stores' cursors are decimal positions)."""
        parse_position(before)

    def search_behind(self, rooms: Mapping[str, int]) -> int:
        """How many messages of each room, up to the seq given for it, the search index
        does not hold yet (0: it is in step)."""
        return 0

    def when_indexed(self, rooms: Mapping[str, int], callback: Callable[[], None],
                     timeout_s: float) -> None:
        """Call ``callback`` on the event loop, once, when ``search_behind(rooms)`` is 0
        or ``timeout_s`` has passed (at once by default: nothing lags)."""
        callback()

    # --- retention -------------------------------------------------------------------

    @abstractmethod
    def retention_cut(self, room: str, min_ts: int | None,
                      max_bytes: int | None) -> tuple[int, int] | None:
        """(the room's oldest stored seq, the lowest seq to keep) so that what stays is
        no older than ``min_ts`` and holds at most ``max_bytes`` of text; None when
        nothing has to go. The room's latest message always stays: it carries the seq."""

    @abstractmethod
    def delete_before(self, room: str, seq: int) -> Commit:
        """Delete the room's messages with a seq below ``seq`` (retention), with their
        reactions and mentions."""
