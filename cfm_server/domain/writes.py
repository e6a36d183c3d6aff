"""The one door for durable writes: every change the domain makes to lasting state.

The live state in memory is the truth while the server runs; each change is written
through here to the ``Store``. A write returns its :class:`Commit`, which releases what
tells of the change: a message's ``append`` its ``ack``, a new identity's ``put_user``
its ``welcome``, and a ``contact``, ``presence``, ``read``, ``leave``, ``join``,
``moderators`` change or a sign-in's status its echo and notices (durable.py, where a
failed one's change is taken back and its sender answered ``internal``). An invite's
use is written with the identity it makes (both or neither). A failure is logged here
too. An AI contact's provisioning is live once its write is durable
(``SignInHandler.provision_bot``).
A new group room's first membership and its creator are one write (``add_creator``).

A cluster backend replaces what stands behind these methods (users, contacts,
memberships, read marks, invites and moderators in Redis; ``append`` a broker call that
also assigns the seq — and, for a change entry, applies its change: see
``Store.append``), not the domain modules that call them.
"""

from __future__ import annotations

import asyncio
import logging

from cfm_common.frames import StoredMsg
from cfm_server.store import Commit, ContactRecord, RoomRecord, Store, UserRecord

log = logging.getLogger(__name__)


class Writes:
    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    def append(self, msg: StoredMsg) -> Commit:
        """A message, its seq the room's latest + 1; its commit releases the ack (the
        caller watches it). Raises StoreError when the store refuses at once."""
        return self._store.append(msg)

    def create_user(self, record: UserRecord) -> Commit:
        """A new identity. Its commit releases its ``welcome``, or fails with
        ``IdentityTaken`` where the handle can be claimed elsewhere at the same moment
        (a cluster); the caller watches it. One process holds all of a single node's
        claims, so here it is a put."""
        return self._store.put_user(record)

    def put_user(self, record: UserRecord) -> Commit:
        return _logged(self._store.put_user(record))

    def put_room(self, record: RoomRecord) -> Commit:
        return _logged(self._store.put_room(record))

    def add_member(self, room: str, user: str) -> Commit:
        return _logged(self._store.add_member(room, user))

    def add_creator(self, room: str, user: str) -> Commit:
        """A new group room's first member, who is its creator (its first moderator):
        both or neither, one commit. (Here one transaction: the two writes share the
        open batch; a cluster stores them in one change.)"""
        member = self._store.add_member(room, user)
        return _logged(_both(member, self._store.put_moderator(room, user, True)))

    def remove_member(self, room: str, user: str) -> Commit:
        return _logged(self._store.remove_member(room, user))

    def put_contact(self, record: ContactRecord) -> Commit:
        return _logged(self._store.put_contact(record))

    def set_read(self, user: str, room: str, seq: int) -> Commit:
        return _logged(self._store.set_read(user, room, seq))

    def count_invite_use(self, nonce: str, limit: int = 0) -> Commit:
        """One more sign-up with the code ``nonce``, in the commit of the identity
        created next (both or neither); ``limit`` (0: none) is for a cluster, where
        Redis counts the use with the identity and refuses one past the limit."""
        return _logged(self._store.count_invite_use(nonce))

    def put_moderator(self, room: str, name: str, creator: bool) -> Commit:
        return _logged(self._store.put_moderator(room, name, creator))

    def remove_moderator(self, room: str, name: str) -> Commit:
        return _logged(self._store.remove_moderator(room, name))

    def drop_notices(self, name: str) -> Commit | None:
        """``name``'s notices of removed accounts are told (domain/notices.py); a
        failure leaves them to be told once more after the next start."""
        commit = self._store.drop_notices(name)
        return None if commit is None else _logged(commit)


def _both(first: Commit, second: Commit) -> Commit:
    """Done when both are; failed (or cancelled) as the first of them that was."""
    both: Commit = asyncio.get_running_loop().create_future()

    def settle(_: Commit) -> None:
        if both.done() or not (first.done() and second.done()):
            return
        if first.cancelled() or second.cancelled():
            both.cancel()
            return
        failed = first.exception() or second.exception()  # (each read: none unretrieved)
        if failed is not None:
            both.set_exception(failed)
        else:
            both.set_result(None)

    first.add_done_callback(settle)
    second.add_done_callback(settle)
    return both


def _logged(commit: Commit) -> Commit:
    commit.add_done_callback(_log_failed_write)
    return commit


def _log_failed_write(commit: Commit) -> None:
    if commit.cancelled():
        return
    exc = commit.exception()
    if exc is not None:
        log.error("a state write failed: %s", exc)
