"""The domain's ``Writes`` on a cluster node: the shared records in Redis.

Every write becomes a change of the shared records (state.py), which Redis numbers and
every other node applies (apply.py). What the domain waits for behaves as on a single
node: the returned ``Commit`` completes when Redis has the change (durable as its
``appendfsync`` makes it) and fails with ``StoreError`` when Redis is out of reach, or
with ``IdentityTaken`` when another node created the same user first.

A room's epoch lives in its meta key (where the append script reads it): ``put_room``
sets it only if the room has none, and when another node was first, hands the epoch
that stands to ``on_epoch`` (the node's World takes it; a client that was told the
other one sees a reset, a full replay, never a wrong seq).

An invite's use is counted against the code's limit in Redis in the same change as the
identity's creation (``SharedState.create(counted=…)``): ``count_invite_use`` names the
code for the ``create_user`` that follows it (the same call of the sign-in). So a use is
counted exactly when its account is made — never for an identity that was not created,
never given back for one that was, whatever reply is lost (cluster/invites.py). A use
past the limit fails the identity's commit with ``InviteUsedUp``.

A ``create_user`` whose reply was lost (the node's link to Redis cut after the script
ran) fails with ``StoreError``, though the account exists: the client's retry of the
same claim (``hello.claim``, its token) signs in with it, and one that reaches a node
that has not applied the account yet finds the create refused by its own record, which
counts as done (``_commit``'s ``ours``).

Messages (``append``) do not come here: the broker's append script numbers and stores
them; ``append`` raises ``StoreError`` saying so, so nothing half-works silently.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from cfm_common.frames import StoredMsg
from cfm_server.cluster import keys, records
from cfm_server.cluster.broker import Broker
from cfm_server.cluster.errors import ClusterError
from cfm_server.cluster.outage import level
from cfm_server.cluster.state import SharedState, Written
from cfm_server.domain.writes import Writes
from cfm_server.store import (
    Commit,
    ContactRecord,
    IdentityTaken,
    RoomRecord,
    StoreError,
    UserRecord,
)

log = logging.getLogger(__name__)


class ClusterWrites(Writes):
    __slots__ = ("_broker", "_invite_use", "_state", "_tasks", "on_epoch")

    def __init__(self, state: SharedState, broker: Broker) -> None:
        self._state = state
        self._broker = broker
        self._tasks: set[asyncio.Task[None]] = set()  # room creations in flight
        # (room, epoch): another node made the room first, with this epoch.
        self.on_epoch: Callable[[str, str], None] | None = None
        # The invite use (nonce, limit, its commit) counted with the identity created
        # next (see count_invite_use).
        self._invite_use: tuple[str, int, Commit] | None = None

    def create_user(self, record: UserRecord) -> Commit:
        pending, self._invite_use = self._invite_use, None
        key, value = records.user_key(record.name), records.user_value(record)
        ours = records.user_guard(value)  # (its token hash: the client's claim's)
        if pending is None:
            return _commit(self._state.create(key, value), taken=record.name, ours=ours)
        nonce, limit, use = pending
        commit = _commit(self._state.create(key, value, records.invite_key(nonce),
                                            limit or None), taken=record.name, ours=ours)
        # The use's own commit says the same (the identity's is what the sign-in reads).
        commit.add_done_callback(functools.partial(_same_outcome, use))
        return commit

    def put_user(self, record: UserRecord) -> Commit:
        """The user's record, whole. A change that keeps the token this node knows (a
        status, a display name) is stored only if Redis still holds that token: else
        the operator replaced it, or removed the user, and this node has not applied it
        yet (its copy is stale; the change would undo theirs). It is then dropped: the
        user's sessions are being closed. A new token (the AI contacts') is stored."""
        key, value = records.user_key(record.name), records.user_value(record)
        known = self._state.records.get(key)
        guard = records.user_guard(value)
        if known is None or records.user_guard(known) != guard:
            guard = b""
        written = self._state.put(key, value, guard)
        written.add_done_callback(functools.partial(_log_refused, record.name))
        return _logged(written)

    def add_member(self, room: str, user: str) -> Commit:
        return _logged(self._state.put(records.member_key(room, user), b""))

    def add_creator(self, room: str, user: str) -> Commit:
        """The membership and the creator in one change (state_change.lua's second
        record): two calls could store the first and lose the second to an outage."""
        return _logged(self._state.put(
            records.member_key(room, user), b"",
            also=(records.moderator_key(room, user), records.moderator_value(True))))

    def remove_member(self, room: str, user: str) -> Commit:
        return _logged(self._state.delete(records.member_key(room, user)))

    def put_contact(self, record: ContactRecord) -> Commit:
        key = records.contact_key(record.owner, record.name)
        if record.in_list or record.blocked:
            return _logged(self._state.put(key, records.contact_value(record)))
        return _logged(self._state.delete(key))

    def set_read(self, user: str, room: str, seq: int) -> Commit:
        return _logged(self._state.put(records.read_key(user, room), records.count_value(seq)))

    def count_invite_use(self, nonce: str, limit: int = 0) -> Commit:
        """One use of the code, unless it reached ``limit`` (0: none): counted in Redis
        with the identity created next, in one change (``create_user``)."""
        use: Commit = asyncio.get_running_loop().create_future()
        use.add_done_callback(_quiet)  # its failure is the identity's to report
        self._invite_use = (nonce, limit, use)
        return use

    def put_room(self, record: RoomRecord) -> Commit:
        meta = keys.room_meta(record.room)
        batcher = self._broker.batcher
        commit: Commit = asyncio.get_running_loop().create_future()

        async def settle() -> None:
            try:
                if not await batcher.call("HSETNX", meta, "epoch", record.epoch):
                    standing: Any = await batcher.call("HGET", meta, "epoch")
                    if standing and standing.decode() != record.epoch \
                            and self.on_epoch is not None:
                        self.on_epoch(record.room, standing.decode())
            except ClusterError as exc:
                commit.set_exception(_store_error(exc))
                return
            commit.set_result(None)

        task = asyncio.create_task(settle())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        commit.add_done_callback(_log_failed)
        return commit

    def append(self, msg: StoredMsg) -> Commit:
        raise StoreError("cluster mode stores messages through the broker (docs/cluster.md)")

    def put_moderator(self, room: str, name: str, creator: bool) -> Commit:
        return _logged(self._state.put(records.moderator_key(room, name),
                                       records.moderator_value(creator)))

    def remove_moderator(self, room: str, name: str) -> Commit:
        return _logged(self._state.delete(records.moderator_key(room, name)))


def _store_error(exc: ClusterError) -> StoreError:
    """What the domain sees of a change Redis did not take; its ``retry_ms`` goes to the
    client (``error{internal, retry_ms}``, as for a say)."""
    error = StoreError(f"Redis: {exc}")
    error.retry_ms = getattr(exc, "retry_ms", None)
    error.__cause__ = exc  # what _log_failed's level is chosen by
    return error


def _commit(written: asyncio.Future[Written], *, taken: str | None = None,
            ours: bytes = b"") -> Commit:
    """The domain's Commit for a change: done when Redis has it; StoreError when Redis
    cannot be reached, IdentityTaken when a ``create`` found the key taken — unless by
    a record that starts with ``ours`` (a user's token hash): the same claim, tried
    again after Redis stored it and its reply was lost, is that account's (its token is
    the claim, which only that client holds)."""
    commit: Commit = asyncio.get_running_loop().create_future()

    def settle(done: asyncio.Future[Written]) -> None:
        if commit.done():
            return
        if done.cancelled():
            commit.cancel()
            return
        exc = done.exception()
        if isinstance(exc, ClusterError):
            commit.set_exception(_store_error(exc))
        elif exc is not None:
            commit.set_exception(exc)
        elif taken is not None and done.result().refused:
            holder = done.result().value
            if ours and holder is not None and records.user_guard(holder) == ours:
                commit.set_result(None)
                return
            commit.set_exception(IdentityTaken(f"{taken!r} was created elsewhere first"))
        elif done.result().used_up:
            from cfm_server.cluster.invites import InviteUsedUp

            commit.set_exception(InviteUsedUp())
        else:
            commit.set_result(None)

    written.add_done_callback(settle)
    return commit


def _logged(written: asyncio.Future[Written]) -> Commit:
    commit = _commit(written)
    commit.add_done_callback(_log_failed)
    return commit


def _quiet(commit: Commit) -> None:
    if not commit.cancelled():
        commit.exception()  # read: its failure is the identity's to report


def _same_outcome(use: Commit, identity: Commit) -> None:
    if use.done():
        return
    if identity.cancelled():
        use.cancel()
    elif identity.exception() is not None:
        use.set_exception(identity.exception())  # type: ignore[arg-type]
    else:
        use.set_result(None)


def _log_refused(name: str, done: asyncio.Future[Written]) -> None:
    if not done.cancelled() and done.exception() is None and done.result().refused:
        log.info("a change of %s's record was not stored: its token was replaced, or the "
                 "user removed, on another node or by the operator", name)


def _log_failed(commit: Commit) -> None:
    if not commit.cancelled() and commit.exception() is not None:
        exc = commit.exception()
        # By the Redis error behind it: Redis out of reach is the outage tracker's to log,
        # once, not an ERROR per change refused meanwhile (the client was told retry_ms).
        log.log(level(exc.__cause__ or exc, logging.ERROR),
                "a shared record could not be written: %s", exc)
