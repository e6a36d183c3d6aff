"""The records every node must agree on, kept in Redis and followed by every node.

Users (with their token hashes), contacts, lasting memberships, read marks and invite
uses are small, change at the pace of people, and are read on every frame: a node keeps
all of them in memory, as the single-node hub does. What cluster mode adds is that a
change made on one node reaches every other node, in one order, exactly once.

So the records are logged like a room's messages (the log named ``state``, see keys.py):

- every change is one run of ``state_change.lua``: it checks the change's condition,
  writes the record into one hash (the snapshot), appends ``p <key> <value>`` or
  ``d <key>`` to the log under the next gapless seq and publishes it, atomically;
- every node follows the log through the broker's room machinery (pub/sub, seq
  tracking, gap filling from the stream, resync after a reconnect), so each change
  reaches ``on_change`` once and in seq order, the node's own included;
- a node starting up subscribes first, then reads the snapshot, then applies the changes
  that arrived meanwhile. Every change carries the record's whole new value, so applying
  a change the snapshot already holds again is harmless: the node ends where Redis is.

Conditions make the rules that need one winner hold across nodes: ``create`` (a handle
taken by two nodes at once goes to one of them), a count with a limit (an invite's
uses never exceed it wherever the sign-ups land: counted in the same call as the
identity's ``create``, so a use is counted exactly when its account is made).

A change the node made is applied as soon as Redis answers it (read your own writes);
its published copy is then a duplicate the tracker drops. When the log's epoch changes
(Redis lost its data, or was emptied), the node reloads the snapshot (``on_reset``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cfm_server.cluster import keys, scripts
from cfm_server.cluster.broker import Broker, new_epoch
from cfm_server.cluster.errors import ClusterError
from cfm_server.cluster.outage import level

log = logging.getLogger(__name__)

SCAN_PAGE = 1000  # records per HSCAN call while loading the snapshot
# Every read mark, contact and presence change is an entry of the log, so an untrimmed
# log grows for ever. A node needs only the snapshot and what follows its position; one
# behind the trim (cut off from Redis through that many changes) reloads the snapshot.
# Nodes bound the log in bytes (``state_log_bytes``): counted in entries, 100,000 user
# records with a long display name and personal message were ~83 MB of Redis.
LOG_BYTES = 8 << 20
# The entries kept by a writer that gives no byte budget (``cfm admin --redis``).
LOG_KEEP = 100_000

CHANGED, UNCHANGED, REFUSED, USED_UP = 1, 0, -1, -2


@dataclass(frozen=True, slots=True)
class Change:
    """One record changed: ``value`` None means it was deleted."""
    seq: int
    key: str
    value: bytes | None
    origin: str


@dataclass(frozen=True, slots=True)
class Written:
    """Redis's answer to a change: ``status`` CHANGED, UNCHANGED or REFUSED, and the
    record's value now (for a refused ``create``, the winner's)."""
    seq: int
    status: int
    value: bytes | None

    @property
    def changed(self) -> bool:
        return self.status == CHANGED

    @property
    def refused(self) -> bool:
        return self.status == REFUSED

    @property
    def used_up(self) -> bool:
        """A ``create`` whose count was at its limit (``create(counted=…)``)."""
        return self.status == USED_UP


def check_key(key: str) -> str:
    if not key or " " in key or "\n" in key:
        raise ValueError(f"a record key is non-empty, without spaces: {key!r}")
    return key


def parse_entry(seq: int, origin: str, entry: bytes) -> Change:
    """``p <key> <value>`` or ``d <key>`` → Change; ValueError on anything else."""
    op, _, rest = entry.partition(b" ")
    if op == b"p":
        key, sep, value = rest.partition(b" ")
        if sep:
            return Change(seq, key.decode(), value, origin)
    elif op == b"d" and rest and b" " not in rest:
        return Change(seq, rest.decode(), None, origin)
    raise ValueError(f"not a state log entry: {entry[:80]!r}")


class SharedState:
    """A node's copy of the shared records, kept current from the log.

        state = SharedState(broker, on_change=apply)     # broker routes keys.STATE here
        records = await state.load()                    # the snapshot, then live changes
        done = await state.create("u:alice", packed)    # Written; .refused: taken
    """

    def __init__(self, broker: Broker, on_change: Callable[[Change], None] | None = None,
                 origin: str | None = None, log_bytes: int = LOG_BYTES, *,
                 keep: int | None = None) -> None:
        self._broker = broker
        self._keep = b"" if keep is None else b"%d" % keep
        self._log_bytes = b"%d" % log_bytes
        self._on_change = on_change
        self.origin = scripts.check_token(origin or broker.node, "origin")
        self.records: dict[str, bytes] = {}
        self.seq = 0  # the last change applied
        self._loading = False
        self._early: list[Change] = []  # changes that arrived while the snapshot was read
        self._reload: asyncio.Task[None] | None = None
        # The change asked for last: a frame's answer waits for it (ClusterNode.written_since).
        self.last_write: asyncio.Future[Written] | None = None

    # --- following the log ------------------------------------------------------------

    async def load(self) -> dict[str, bytes]:
        """Subscribe to the log, read the snapshot, apply what came meanwhile."""
        self._loading, self._early = True, []
        try:
            head = await self._broker.subscribe(keys.STATE)
            records = await self._scan()
        except BaseException:
            self._loading = False
            raise
        self.records, self.seq = records, head.seq
        early, self._early, self._loading = self._early, [], False
        for change in early:
            self._apply(change)
        return dict(self.records)

    async def _scan(self) -> dict[str, bytes]:
        records: dict[str, bytes] = {}
        cursor: int | bytes = 0
        while True:
            cursor, page = await self._broker.batcher.call(
                "HSCAN", keys.state_records(), cursor, "COUNT", SCAN_PAGE)
            flat: list[bytes] = page
            for key, value in zip(flat[::2], flat[1::2], strict=True):
                records[key.decode()] = value
            if int(cursor) == 0:
                return records

    def deliver(self, seq: int, origin: str, entry: bytes) -> None:
        """The broker's ``on_message`` for the ``state`` log (in seq order, once each)."""
        try:
            change = parse_entry(seq, origin, entry)
        except ValueError:
            log.error("state log #%d: %r ignored", seq, entry[:80])
            return
        if self._loading:
            self._early.append(change)
        else:
            self._apply(change)

    def _apply(self, change: Change) -> None:
        if change.value is None:
            self.records.pop(change.key, None)
        else:
            self.records[change.key] = change.value
        self.seq = max(self.seq, change.seq)
        if self._on_change is not None:
            try:
                self._on_change(change)
            except Exception:
                log.exception("applying state change #%d (%s) failed", change.seq, change.key)

    def reset(self, epoch: str) -> None:
        """The broker's ``on_reset`` for the ``state`` log: Redis lost or dropped the log;
        the snapshot is what counts now."""
        log.warning("the shared records' log restarted (epoch %s): reloading them", epoch)
        self._reload_soon()

    def lost(self) -> None:
        """The broker's ``on_lost`` for the ``state`` log: changes this node missed are
        trimmed from the log (it was cut off from Redis through more than its byte
        budget of changes); the snapshot holds them."""
        log.warning("changes of the shared records this node missed are trimmed from the "
                    "log: reloading the records")
        self._reload_soon()

    def _reload_soon(self) -> None:
        if self._reload is None or self._reload.done():
            self._reload = asyncio.create_task(self._reload_snapshot())

    async def _reload_snapshot(self) -> None:
        while True:
            try:
                before = self.records
                await self.load()
            except ClusterError as exc:
                log.log(level(exc), "reloading the shared records failed (%s); trying again",
                        exc)
                await asyncio.sleep(getattr(exc, "retry_ms", 1000) / 1000)
                continue
            if self._on_change is not None:
                for key in before.keys() - self.records.keys():
                    self._on_change(Change(self.seq, key, None, self.origin))
                for key, value in self.records.items():
                    if before.get(key) != value:
                        self._on_change(Change(self.seq, key, value, self.origin))
            return

    async def close(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            await asyncio.gather(self._reload, return_exceptions=True)

    # --- changing ---------------------------------------------------------------------

    def put(self, key: str, value: bytes, guard: bytes = b"",
            also: tuple[str, bytes] | None = None) -> asyncio.Future[Written]:
        """Store the record; with a ``guard``, only if it exists and begins with those
        bytes (else ``refused``). ``also``: a second record (key, value) stored in the
        same change, both or neither."""
        if also is None:
            return self._change("put", key, value, guard)
        return self._change("put", key, value, guard, check_key(also[0]), also[1])

    def create(self, key: str, value: bytes, counted: str = "",
               limit: int | None = None) -> asyncio.Future[Written]:
        """Store the record only if the key is free; ``refused`` (with the holder's
        value) if any node created it first. ``counted``: a count record that gets one
        more in the same change (both or neither), unless it reached ``limit``
        (``used_up``)."""
        return self._change("create", key, value,
                            b"" if limit is None else b"%d" % limit, check_key(counted)
                            if counted else "")

    def delete(self, key: str) -> asyncio.Future[Written]:
        return self._change("delete", key, b"")

    def _change(self, op: str, key: str, value: bytes, limit: bytes = b"",
                counted: str = "", also: bytes = b"") -> asyncio.Future[Written]:
        check_key(key)
        origin = self.origin

        def settle(reply: list[Any]) -> Written:
            seq, status, now, epoch = int(reply[0]), int(reply[1]), reply[2], reply[3]
            done = Written(seq, status, now if isinstance(now, bytes) else None)
            if done.changed:
                if len(reply) > 4:  # the count (the second record) changed with it,
                    # logged just before
                    self._broker.offer(keys.STATE, int(reply[4]), epoch.decode(), origin,
                                       b"p %s %s" % (counted.encode(), reply[5]))
                entry = (b"p %s %s" % (key.encode(), done.value) if done.value is not None
                         else b"d " + key.encode())
                # Apply it now (read your own writes) if it is next in line; the
                # published copy is then a duplicate.
                self._broker.offer(keys.STATE, seq, epoch.decode(), origin, entry)
            return done

        written = self.last_write = self._broker.batcher.eval(
            scripts.STATE_CHANGE,
            [keys.room_meta(keys.STATE), keys.room_log(keys.STATE), keys.state_records()],
            [op, key, value, limit, new_epoch(), keys.room_channel(keys.STATE), origin,
             self._keep, self._log_bytes, counted, also],
            convert=settle,
        )
        return written
