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

Not here yet (docs/cluster.md, "What is left"): messages (``append``), which the
broker's append script numbers and stores, and an invite's use, which should be counted
against its limit in Redis (``SharedState.count``) rather than written as a number.
Those raise ``StoreError`` saying so, so nothing half-works silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from cfm_common.frames import StoredMsg
from cfm_server.cluster import keys, records
from cfm_server.cluster.broker import Broker
from cfm_server.cluster.errors import ClusterError
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
    __slots__ = ("_broker", "_state", "_tasks", "on_epoch")

    def __init__(self, state: SharedState, broker: Broker) -> None:
        self._state = state
        self._broker = broker
        self._tasks: set[asyncio.Task[None]] = set()  # room creations in flight
        # (room, epoch): another node made the room first, with this epoch.
        self.on_epoch: Callable[[str, str], None] | None = None

    def create_user(self, record: UserRecord) -> Commit:
        return _commit(self._state.create(records.user_key(record.name),
                                          records.user_value(record)),
                       taken=record.name)

    def put_user(self, record: UserRecord) -> Commit:
        return _logged(self._state.put(records.user_key(record.name), records.user_value(record)))

    def add_member(self, room: str, user: str) -> Commit:
        return _logged(self._state.put(records.member_key(room, user), b""))

    def remove_member(self, room: str, user: str) -> Commit:
        return _logged(self._state.delete(records.member_key(room, user)))

    def put_contact(self, record: ContactRecord) -> Commit:
        key = records.contact_key(record.owner, record.name)
        if record.in_list or record.blocked:
            return _logged(self._state.put(key, records.contact_value(record)))
        return _logged(self._state.delete(key))

    def set_read(self, user: str, room: str, seq: int) -> Commit:
        return _logged(self._state.put(records.read_key(user, room), records.count_value(seq)))

    def put_invite_use(self, nonce: str, used: int) -> Commit:
        raise StoreError("cluster mode does not count invite uses yet (docs/cluster.md)")

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
                commit.set_exception(StoreError(f"Redis: {exc}"))
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


def _done() -> Commit:
    commit: Commit = asyncio.get_running_loop().create_future()
    commit.set_result(None)
    return commit


def _commit(written: asyncio.Future[Written], *, taken: str | None = None) -> Commit:
    """The domain's Commit for a change: done when Redis has it; StoreError when Redis
    cannot be reached, IdentityTaken when a ``create`` found the key taken."""
    commit: Commit = asyncio.get_running_loop().create_future()

    def settle(done: asyncio.Future[Written]) -> None:
        if commit.done():
            return
        if done.cancelled():
            commit.cancel()
            return
        exc = done.exception()
        if isinstance(exc, ClusterError):
            commit.set_exception(StoreError(f"Redis: {exc}"))
        elif exc is not None:
            commit.set_exception(exc)
        elif taken is not None and done.result().refused:
            commit.set_exception(IdentityTaken(f"{taken!r} was created elsewhere first"))
        else:
            commit.set_result(None)

    written.add_done_callback(settle)
    return commit


def _logged(written: asyncio.Future[Written]) -> Commit:
    commit = _commit(written)
    commit.add_done_callback(_log_failed)
    return commit


def _log_failed(commit: Commit) -> None:
    if not commit.cancelled() and commit.exception() is not None:
        log.error("a shared record could not be written: %s", commit.exception())
