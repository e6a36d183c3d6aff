"""Messages: say, nudge, typing, history and read marks.

The hot path is ``say``: dedupe by (sender, id), ``Room.next_seq``, ``Writes.append``,
then — only when that write's commit completes — the ``ack`` to the sender and the
``msg``, encoded once, to every other session of every member (``_on_commit``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterator
from typing import Any

from cfm_common import rules
from cfm_common.codec import encode, encode_ack, encode_msg
from cfm_common.errors import ProtocolError
from cfm_common.frames import (
    Error,
    GetHistory,
    History,
    MarkRead,
    Nudge,
    Read,
    Say,
    SendTyping,
    StoredMsg,
    Typing,
)
from cfm_common.rules import ErrorCode, MsgKind, Status
from cfm_server.admission import RateLimited
from cfm_server.domain.annotations import annotations
from cfm_server.domain.awaiting import then_with
from cfm_server.domain.delivery import Delivery
from cfm_server.domain.durable import confirm
from cfm_server.domain.hidden import as_seen_by, hidden_from_peer, hidden_placeholder
from cfm_server.domain.ports import Connection
from cfm_server.domain.rooms import RoomHandler
from cfm_server.domain.world import World, now_ms
from cfm_server.limits import PairInterval
from cfm_server.pages import AnswerItem, awaited, first_within, last_within, stored_msg_size
from cfm_server.read_budget import metered, read_credit
from cfm_server.state import Pending, Room, User
from cfm_server.store import StoreError
from cfm_server.wsframe import frame_binary

log = logging.getLogger(__name__)


class MessageHandler:
    def __init__(self, world: World, delivery: Delivery, rooms: RoomHandler) -> None:
        self.world = world
        self.delivery = delivery
        self.rooms = rooms
        # (sender, client id) → the message in flight, for retries that arrive before its commit.
        self.inflight: dict[tuple[str, str], Pending] = {}
        self.nudge_pairs = PairInterval(world.config.nudge_interval)

    def _target(
        self, user: User, room_name: str | None, to: str | None, *, create: bool
    ) -> tuple[Room | None, str, User | None]:
        """Resolve ``room`` or ``to`` of say/typing: (room or None, room name, DM peer).

        Checks DM privacy and membership; a block is not refused here (blocking is
        private: see ``hidden.py``). A DM room is created only with ``create`` (a say);
        typing to a DM that has no message yet creates nothing.
        """
        world = self.world
        peer: User | None = None
        if to is not None:
            to_name = rules.normalize_name(to)
            if to_name == user.name:
                raise ProtocolError(ErrorCode.BAD_FRAME, "you cannot message yourself")
            peer = world.users.get(to_name)
            if peer is None:
                raise ProtocolError(ErrorCode.NO_SUCH_USER, f"no user {to_name!r}")
            room_name = rules.dm_room(user.name, to_name)
        assert room_name is not None
        if room_name.startswith(rules.DM_PREFIX):
            if peer is None:
                peer = self.rooms.check_dm_access(user, room_name)
            room = world.rooms.get(room_name)
            if room is None and create:
                world.admission.admit_new_dm(user, peer, world.rooms)
                room = world.create_room(room_name)
            if room is not None and create:
                for member in (user, peer):
                    if member.name not in room.members:
                        self.rooms.add_member(room, member)
            return room, room_name, peer
        room = world.rooms.get(room_name)
        if room is None or user.name not in room.members:
            raise ProtocolError(ErrorCode.NOT_MEMBER, f"join {room_name} first")
        return room, room_name, None

    # --- say and nudge: stored, acked after commit, fanned out -------------------------

    def say(self, session: Connection, frame: Say) -> None:
        user = self.world.user_of(session)
        if self._resend_ack(session, user, frame.id):
            return
        # Resolved without creating anything first: a say refused by a limit leaves no
        # new DM room behind.
        room, _, peer = self._target(user, frame.room, frame.to, create=False)
        if frame.reply is not None and room is not None and frame.reply <= room.durable_seq:
            # The answered message is read first (a cluster node reads it from Redis).
            then_with(session, frame.id, self.world.reads.get_message(room.name, frame.reply),
                      lambda answered: self._say(session, user, frame, room, peer, answered))
            return
        self._say(session, user, frame, room, peer, None)

    def _say(self, session: Connection, user: User, frame: Say, room: Room | None,
             peer: User | None, answered: StoredMsg | None) -> None:
        extra = None
        if frame.reply is not None or "@" in frame.text:  # replies, mentions (annotations.py)
            extra = annotations(self.world, room, user, peer, frame.reply, frame.text,
                                answered)
        self.world.admission.charge_message(user, peer, frame.id, room, frame.text)
        if peer is not None and (room is None or len(room.members) < 2):
            room, _, _ = self._target(user, frame.room, frame.to, create=True)
        assert room is not None
        self._store_message(session, user, room, frame.text, MsgKind.TEXT, frame.id,
                            hidden=hidden_from_peer(user, peer), extra=extra)

    def nudge(self, session: Connection, frame: Nudge) -> None:
        world = self.world
        user = world.user_of(session)
        if frame.id is not None and self._resend_ack(session, user, frame.id):
            return
        room, _, peer = self._target(user, None, frame.to, create=False)
        assert peer is not None
        now = time.monotonic()
        retry_ms = self.nudge_pairs.wait(user.name, peer.name, now, frame.id)
        if retry_ms and world.config.rate_limits:
            raise RateLimited(retry_ms, frame.id or "nudge",
                              "one nudge to the same person at a time: wait a moment")
        # Charged before the pair's clock restarts: a charge Redis decides (a cluster)
        # handles the frame again, which must not find its own nudge's clock.
        world.admission.charge_message(user, peer, frame.id or "nudge", room)
        self.nudge_pairs.check(user.name, peer.name, now, frame.id)
        room, _, _ = self._target(user, None, frame.to, create=True)
        assert room is not None
        self._store_message(session, user, room, "", MsgKind.NUDGE, frame.id,
                            hidden=hidden_from_peer(user, peer))

    def _resend_ack(self, session: Connection, user: User, client_id: str) -> bool:
        """A retried (sender, id): the original ack again, nothing stored or fanned out."""
        pending = self.inflight.get((user.name, client_id))
        if pending is not None:
            pending.retries.append(session)
            return True
        stored = self.world.store.find_message(user.name, client_id)
        if stored is None:
            return False
        session.send(encode_ack(stored))
        self.world.metrics.count_out("ack")
        return True

    def _store_message(
        self,
        session: Connection,
        user: User,
        room: Room,
        text: str,
        kind: MsgKind,
        client_id: str | None,
        *,
        hidden: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Store a message — or, with ``extra`` (StoredMsg fields: a reply, mentions, a
        change entry's ``change``/``target``/``emoji``), an entry of the extensions —
        then ack and fan it out once committed."""
        self._append(session, user, room, text, kind, client_id, hidden, extra)
        if room.is_dm and not hidden and user.name not in room.wrote:
            room.wrote.add(user.name)

    def _append(self, session: Connection, user: User, room: Room, text: str,
                kind: MsgKind, client_id: str | None, hidden: bool,
                extra: dict[str, Any] | None = None) -> None:
        """Number and store the message; its commit releases the ack and the fan-out
        (``_on_commit``). A cluster node overrides this (Redis numbers the message:
        cfm_server/cluster/messages.py); the rules above stay here."""
        seq = room.next_seq()
        stored = StoredMsg(room.name, seq, user.name, text, now_ms(), kind.value, client_id)
        if extra:
            stored = dataclasses.replace(stored, **extra)
        data = encode_msg(stored)
        placeholder = None
        if hidden:  # stored with its mark; the sender's sessions see it as any other
            stored = dataclasses.replace(stored, hidden=True)
            placeholder = encode_msg(hidden_placeholder(stored))
        try:
            commit = self.world.writes.append(stored)
        except StoreError:
            # A store that refuses at once: the seq was never used.
            room.seq -= 1
            raise
        pending = Pending(stored, data, commit, session, time.perf_counter(),
                          placeholder=placeholder)
        room.pending.append(pending)
        if client_id is not None:
            self.inflight[(user.name, client_id)] = pending
        commit.add_done_callback(lambda _: self._on_commit(room))

    # --- the entries of the message changes (changes.py), stored as says are ------------

    def answered_retry(self, session: Connection, user: User, client_id: str,
                       room: str | None = None) -> bool | asyncio.Future[bool]:
        """A retried (sender, id): the original ack again; True if so. (A cluster node
        looks it up in ``room``'s dedupe hash: a future.)"""
        return self._resend_ack(session, user, client_id)

    def store_entry(self, session: Connection, user: User, room: Room, text: str,
                    client_id: str, *, hidden: bool, extra: dict[str, Any],
                    target: StoredMsg | None = None) -> None:
        """``target``: the message the entry changes, as read (a cluster node stores a
        deleted message's tombstone from it; a single node's store has it)."""
        self._store_message(session, user, room, text, MsgKind.TEXT, client_id,
                            hidden=hidden, extra=extra)

    def _on_commit(self, room: Room) -> None:
        """Handle the room's messages whose commits completed, strictly in seq order."""
        pending_queue = room.pending
        metrics = self.world.metrics
        while pending_queue and pending_queue[0].commit.done():
            pending = pending_queue.popleft()
            stored = pending.msg
            if stored.id is not None:
                self.inflight.pop((stored.sender, stored.id), None)
            commit = pending.commit
            failed = commit.cancelled() or commit.exception() is not None
            waiters = [pending.sender, *pending.retries]
            if failed:
                log.error("commit of %s#%d failed: %s", room.name, stored.seq,
                          "cancelled" if commit.cancelled() else commit.exception())
                error = encode(Error(ErrorCode.INTERNAL.value,
                                     "the message could not be stored; send it again",
                                     stored.id or stored.kind))
                for session in waiters:
                    session.send(error)
                metrics.error[ErrorCode.INTERNAL.value].inc(len(waiters))
                if not pending_queue:
                    room.seq = room.durable_seq  # the store rolled the failed writes back
                continue
            room.durable_seq = stored.seq
            metrics.commit_seconds.observe(time.perf_counter() - pending.started)
            metrics.count_stored()
            ack = encode_ack(stored)
            for session in waiters:
                session.send(ack)
            metrics.count_out("ack", len(waiters))
            if pending.placeholder is None:
                self.delivery.to_room(room, pending.data, "msg", skip=pending.sender)
            else:
                self.delivery.hidden_to_room(room, pending)

    # --- typing, history, read marks -----------------------------------------------------

    def typing(self, session: Connection, frame: SendTyping) -> None:
        user = self.world.user_of(session)
        room, room_name, peer = self._target(user, frame.room, frame.to, create=False)
        self.world.admission.charge(user, "typing", "typing")
        if user.record.status == Status.INVISIBLE:
            return  # "is typing" would show that the user is there, as a read mark would
        data = encode(Typing(room_name, user.name))
        if peer is not None:
            if hidden_from_peer(user, peer) or user.has_blocked(peer.name):
                return  # dropped: across a block each looks offline to the other
            self.delivery.to_user(peer, data, "typing")
        elif room is not None:
            self.delivery.to_room(room, data, "typing", skip_user=user.name)

    def history(self, session: Connection, frame: GetHistory) -> None:
        user = self.world.user_of(session)
        room = self.rooms.readable_room(user, frame.room)
        # Read when the session is ready to send it (Session.answer), from the user's
        # read budget (read_budget).
        ref = frame.id or frame.T
        credit = read_credit(self.world.admission, user, ref,
                             self.world.config.answer_page_bytes)
        session.answer(metered(self._history_page(user, room, frame), credit), ref)

    def _history_page(self, user: User, room: Room, frame: GetHistory) -> Iterator[AnswerItem]:
        """A ``history`` answer for ``user``: at most ``limit`` messages and
        ``page_bytes`` bytes."""
        world = self.world
        limit = frame.limit or world.config.history_limit
        budget = world.config.answer_page_bytes
        # Committed messages only (see RoomHandler.join): the store's reads also see
        # writes whose commit is still to come, and may yet fail.
        top = room.durable_seq
        # One more than the limit tells whether the range goes on; a read that stopped
        # short at the budget (a cluster node's) tells it by where it stopped, having
        # kept at least what the cut below keeps (Reads.history_slice).
        if frame.after is not None:
            read = yield from awaited(world.reads.history_slice(
                room.name, after=frame.after, before=None, limit=limit + 1, budget=budget))
            msgs = read.msgs
            if msgs and msgs[-1].seq > top:
                msgs = [m for m in msgs if m.seq <= top]
            more = len(msgs) > limit or (read.stopped is not None and read.stopped <= top)
            del msgs[limit:]
            kept = first_within(msgs, stored_msg_size, budget) if msgs else msgs
        else:
            before = top + 1 if frame.before is None else min(frame.before, top + 1)
            read = yield from awaited(world.reads.history_slice(
                room.name, after=None, before=before, limit=limit + 1, budget=budget))
            msgs = read.msgs
            more = len(msgs) > limit or read.stopped is not None
            del msgs[: max(0, len(msgs) - limit)]  # the extra one is the oldest
            kept = last_within(msgs, stored_msg_size, budget) if msgs else msgs
        world.metrics.count_out("history")
        shown = as_seen_by(user, room, kept)
        yield frame_binary(encode(History(room.name, tuple(shown),
                                          more or len(kept) < len(msgs), ref=frame.id)))

    def read(self, session: Connection, frame: MarkRead) -> None:
        world = self.world
        user = world.user_of(session)
        room = self.rooms.readable_room(user, frame.room)
        seq = min(frame.seq, room.durable_seq)  # nobody was shown more
        before = user.reads.get(room.name, 0)
        if not world.move_read_mark(user, room.name, seq):
            return
        commit = world.writes.set_read(user.name, room.name, seq)
        settle = world.unsettled.track(("read", user.name, room.name), before, seq,
                                       lambda mark: _restore_mark(user, room.name, mark))
        data = encode(Read(room.name, user.name, seq))
        # The peers a "seen" mark goes to, worked out now, told once it is durable.
        peers: list[User] = []
        if room.is_dm and user.record.status != Status.INVISIBLE:
            # The "seen" mark goes to the peer unless it would show the user is there:
            # invisible, or a block either way (each looks offline to the other).
            for name in room.members:
                peer = world.users[name]
                if name != user.name and not peer.has_blocked(user.name) \
                        and not user.has_blocked(name):
                    peers.append(peer)

        def told() -> None:
            self.delivery.to_user(user, data, "read", skip=session)
            for peer in peers:
                self.delivery.to_user(peer, data, "read")

        confirm(session, frame.T, commit, world.metrics, told, settle)


def _restore_mark(user: User, room: str, mark: int) -> None:
    """A read mark the store did not take: back to the stored one (marks only move
    forward, so this is the one place one goes back)."""
    if mark:
        user.reads[room] = mark
    else:
        user.reads.pop(room, None)
