"""Messages on a cluster node: numbered and stored by Redis, acked on its reply.

The domain's ``MessageHandler`` decides everything about a ``say`` or a ``nudge`` (who
may send what where, rate limits, private blocking); only the storing differs
(``_append``). On a single node the store's commit releases the ack and the fan-out; here
the append script numbers the message (one seq per room across all nodes), stores it,
deduplicates a retry of the same (sender, id) landing on any node (the reply then carries
the original seq and ts) and publishes it. The ``ack`` goes out on the script's reply; the
fan-out comes from the room's subscription (``ClusterNode``), on every node alike.

The entries of the message changes go the same way: the domain decides (changes.py,
after reading the target through ``World.reads``), and the append script applies the
change to its target in the same atomic call that stores the entry (append.lua).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from cfm_common.codec import encode, encode_ack, encode_msg
from cfm_common.frames import Ack, Error, StoredMsg
from cfm_common.rules import ChangeKind, ErrorCode, MsgKind
from cfm_server.cluster import keys
from cfm_server.cluster.broker import Appended
from cfm_server.cluster.outage import level
from cfm_server.domain.delivery import Delivery
from cfm_server.domain.messages import MessageHandler
from cfm_server.domain.ports import Connection
from cfm_server.domain.rooms import RoomHandler
from cfm_server.domain.world import World, now_ms
from cfm_server.state import Room, User

if TYPE_CHECKING:
    from cfm_server.cluster.broker import Broker

log = logging.getLogger(__name__)


class MessageNode(Protocol):
    """What the messages need of their node (``node.ClusterNode``)."""

    broker: Broker

    def session_origin(self, session_id: str, hidden: bool) -> str: ...


class ClusterMessages(MessageHandler):
    def __init__(self, world: World, delivery: Delivery, rooms: RoomHandler,
                 node: MessageNode) -> None:
        super().__init__(world, delivery, rooms)
        self._node = node
        self._tombstone = b""  # the delete being stored: its target's tombstone

    def answered_retry(self, session: Connection, user: User, client_id: str,
                       room: str | None = None) -> bool | asyncio.Future[bool]:
        """A change retried on any node: its first ack, from the room's dedupe hash (the
        append script would dedupe it too, but the domain's rules, read against the
        changed target, would refuse it first: "you already reacted")."""
        if room is None:
            return super().answered_retry(session, user, client_id)

        def settle(seen: bytes | None) -> bool:
            if seen is None:
                return False
            seq, _, ts = seen.partition(b":")
            session.send(encode_ack(Ack(room, int(seq), int(ts), client_id)))
            self.world.metrics.count_out("ack")
            return True

        return self._node.broker.batcher.call("HGET", keys.room_ids(room),
                                              f"{user.name}:{client_id}", convert=settle)

    def store_entry(self, session: Connection, user: User, room: Room, text: str,
                    client_id: str, *, hidden: bool, extra: dict[str, Any],
                    target: StoredMsg | None = None) -> None:
        # A delete gives the script its target's tombstone: the frame without its text,
        # which the changes hash keeps under the target's seq once the stream entry is
        # gone (append.lua). Encoded here, where the message is at hand.
        self._tombstone = b""
        if extra.get("change") == ChangeKind.DELETE.value and target is not None:
            self._tombstone = encode_msg(dataclasses.replace(
                target, text="", deleted=True, edited=None, mentions=None, reactions=None,
                hidden=None))
        try:
            super().store_entry(session, user, room, text, client_id, hidden=hidden,
                                extra=extra, target=target)
        finally:
            self._tombstone = b""

    def _append(self, session: Connection, user: User, room: Room, text: str,
                kind: MsgKind, client_id: str | None, hidden: bool,
                extra: dict[str, Any] | None = None) -> None:
        node = self._node
        appended = node.broker.submit(room.name, user.name, client_id, kind.value, text,
                                      now_ms(), origin=node.session_origin(session.id, hidden),
                                      extra=extra, tombstone=self._tombstone,
                                      epoch=proposed_epoch(room))
        appended.add_done_callback(functools.partial(
            self._on_appended, session, room.name, client_id or kind.value, client_id,
            time.perf_counter()))

    def _on_appended(self, session: Connection, room: str, ref: str, client_id: str | None,
                     started: float, appended: asyncio.Future[Appended]) -> None:
        metrics = self.world.metrics
        if appended.cancelled():
            return  # the node is closing
        exc = appended.exception()
        if exc is not None:
            retry_ms = getattr(exc, "retry_ms", None)
            log.log(level(exc), "a message for %s was not stored: %s", room, exc)
            session.send(encode(Error(ErrorCode.INTERNAL.value,
                                      "the message could not be stored; send it again",
                                      ref, retry_ms)))
            metrics.error[ErrorCode.INTERNAL.value].inc()
            return
        done = appended.result()
        metrics.commit_seconds.observe(time.perf_counter() - started)
        if not done.duplicate:
            metrics.count_stored()
        session.send(encode_ack(Ack(room, done.seq, done.ts, client_id)))
        metrics.count_out("ack")


def proposed_epoch(room: Room) -> str | None:
    """The epoch an append gives the room if Redis holds none for it (append.lua).

    The node's own only while it knows of no message in the room: a room just made,
    whose joiners were told that epoch with seq 0 (its meta may not be in Redis yet, or
    its ``put_room`` failed), keeps it with its first message. A room the node knows
    messages of and Redis has no meta for lost its history (Redis restarted without its
    AOF, the keys evicted or deleted): its new seq 1 must come under a new epoch, or a
    client could not tell it from the old seq 1 (docs/protocol.md, "Sequence"). None:
    the broker proposes a fresh one."""
    return room.epoch if not room.durable_seq else None
