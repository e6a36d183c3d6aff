"""Message changes: edit, delete, reactions, replies, mentions and a room's moderators.

A change is an entry in the room's sequence, exactly like a message (docs/protocol.md,
"Message changes"): a ``msg`` whose ``change`` says what it does to the message ``target``
names. It is stored through the same door as a ``say`` (``MessageHandler``: dedupe by
(sender, id), the room's next seq, ``Writes.append``, the ack and the fan-out once its
commit completes), so ``join{since}`` and ``history{after}`` deliver it, and a retry is
answered with the first ack. The store applies the change to the target in the same
commit (``Store.append``), so a page of old history shows every message as it is now.

This module holds the rules of who may change what (``ChangeHandler``), a group room's
moderators, and the counts a ``welcome`` gives per room (``unread_counts``); what a
``say`` carries besides its text (a reply, mentions) is in ``annotations``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cfm_common import rules
from cfm_common.codec import encode
from cfm_common.errors import ProtocolError
from cfm_common.frames import (
    Delete,
    Edit,
    Moderators,
    React,
    SetModerators,
    StoredMsg,
    Unreact,
)
from cfm_common.rules import ChangeKind, ErrorCode, MsgKind
from cfm_server.admission import text_charge
from cfm_server.domain.awaiting import then_with
from cfm_server.domain.delivery import Delivery
from cfm_server.domain.durable import Settle, confirm
from cfm_server.domain.hidden import hidden_from_peer
from cfm_server.domain.messages import MessageHandler
from cfm_server.domain.ports import Connection
from cfm_server.domain.rooms import RoomHandler
from cfm_server.domain.world import World
from cfm_server.state import Room, User
from cfm_server.store import Commit, StoreError

log = logging.getLogger(__name__)

# welcome.rooms[].unread counts at most this many (100: "100 or more", a client shows
# "99+"): the count is a read of up to this many rows per room with something past the
# read mark, at every sign-in, on the event loop (~20 us a room at 100, ~200 at 1000).
UNREAD_CAP = 100
# Distinct emoji one user may put on one message: what one message's reactions may hold
# stays bounded however many reactions a user sends.
MAX_EMOJI_PER_USER = 20


def _bad(msg: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FRAME, msg)


def _forbidden(msg: str) -> ProtocolError:
    return ProtocolError(ErrorCode.FORBIDDEN, msg)


def _authored(user: User, msg: StoredMsg) -> bool:
    """Whether ``user`` wrote ``msg``: its sender, and not an earlier holder of the
    handle (``cfm admin remove-user`` frees a handle and keeps its group messages)."""
    return msg.sender == user.name and msg.ts >= user.record.created_ms


def unread_counts(world: World, user: User, room: Room, read: int) -> tuple[int | None,
                                                                             int | None]:
    """``welcome.rooms[]``'s ``unread`` and ``mentions`` for one room (None, None when
    nothing lies past the read mark, or the store cannot say: a count never fails a
    sign-in)."""
    if room.durable_seq <= read:
        return None, None
    try:
        return world.reads.unread_counts(user.name, room.name, read, UNREAD_CAP)
    except StoreError as e:
        log.warning("cannot count %s's unread messages in %s: %s", user.name, room.name, e)
        return None, None


class ChangeHandler:
    def __init__(self, world: World, delivery: Delivery, rooms: RoomHandler,
                 messages: MessageHandler) -> None:
        self.world = world
        self.delivery = delivery
        self.rooms = rooms
        self.messages = messages
        # Group rooms' moderators: the creator (rooms made since moderators exist) and
        # whoever the creator named.
        self.creators: dict[str, str] = {}
        self.moderators: dict[str, set[str]] = {}

    def load(self, source: Any = None) -> None:
        """From the store, or ``source`` (a cluster node's snapshot: its shared records)."""
        store = source if source is not None else self.world.store
        for room, name, creator in store.load_moderators():
            self.moderators.setdefault(room, set()).add(name)
            if creator:
                self.creators[room] = name

    def room_created(self, room: Room, user: User) -> None:
        """A group room's first join: its creator is its first moderator. (Stored with
        that join's membership, one write: if it fails, ``room_dropped``.)"""
        self.creators[room.name] = user.name
        self.moderators[room.name] = {user.name}

    def room_dropped(self, room: Room) -> None:
        """A room whose first join could not be stored: it has no creator yet."""
        self.creators.pop(room.name, None)
        self.moderators.pop(room.name, None)

    # --- the changes -------------------------------------------------------------------

    def edit(self, session: Connection, frame: Edit) -> None:
        user = self.world.user_of(session)

        def go(room: Room, target: StoredMsg, peer: User | None) -> None:
            if not _authored(user, target):
                raise _forbidden("only its author can edit a message")
            if target.kind != MsgKind.TEXT:
                raise _bad("only a text message can be edited")
            self._store(session, user, room, peer, frame.text, frame.id, ChangeKind.EDIT,
                        target)

        self._with_target(session, user, frame.room, frame.target, frame.id, go)

    def delete(self, session: Connection, frame: Delete) -> None:
        user = self.world.user_of(session)

        def go(room: Room, target: StoredMsg, peer: User | None) -> None:
            if not _authored(user, target) and (
                    room.is_dm or user.name not in self.moderators.get(room.name, ())):
                raise _forbidden("only its author or a moderator of the room can delete a "
                                 "message")
            self._store(session, user, room, peer, "", frame.id, ChangeKind.DELETE, target)

        self._with_target(session, user, frame.room, frame.target, frame.id, go)

    def react(self, session: Connection, frame: React) -> None:
        user = self.world.user_of(session)

        def go(room: Room, target: StoredMsg, peer: User | None) -> None:
            mine = [r.emoji for r in target.reactions or () if user.name in r.names]
            if frame.emoji in mine:
                raise _forbidden("you already reacted with this emoji")
            if len(mine) >= MAX_EMOJI_PER_USER:
                raise _forbidden(f"at most {MAX_EMOJI_PER_USER} emoji per message")
            # The text is the emoji: a client that does not know reactions shows it as a
            # message, which is what people sent before there were reactions.
            self._store(session, user, room, peer, frame.emoji, frame.id, ChangeKind.REACT,
                        target, frame.emoji)

        self._with_target(session, user, frame.room, frame.target, frame.id, go)

    def unreact(self, session: Connection, frame: Unreact) -> None:
        user = self.world.user_of(session)

        def go(room: Room, target: StoredMsg, peer: User | None) -> None:
            if not any(r.emoji == frame.emoji and user.name in r.names
                       for r in target.reactions or ()):
                raise _forbidden("you have not reacted with this emoji")
            self._store(session, user, room, peer, "", frame.id, ChangeKind.UNREACT, target,
                        frame.emoji)

        self._with_target(session, user, frame.room, frame.target, frame.id, go)

    def _with_target(self, session: Connection, user: User, room_name: str, seq: int,
                     ref: str, go: Callable[[Room, StoredMsg, User | None], None]) -> None:
        """A retry of (user, ``ref``) gets its first ack again; else ``go(room, target,
        peer)`` (peer: the DM's other user, None in a group room) once the user may touch
        the room and the message is one that can still change. The retry and the
        target are looked up through the message handler and ``World.reads`` (a
        cluster node reads both from Redis: ``go`` then runs when the reads are done,
        its refusals sent as errors)."""
        def unless_retried(retried: bool) -> None:
            if not retried:
                self._check_target(session, user, room_name, seq, ref, go)

        then_with(session, ref, self.messages.answered_retry(session, user, ref, room_name),
                  unless_retried)

    def _check_target(self, session: Connection, user: User, room_name: str, seq: int,
                      ref: str, go: Callable[[Room, StoredMsg, User | None], None]) -> None:
        room = self.rooms.readable_room(user, room_name)  # a member, or one of the two
        peer = self.rooms.check_dm_access(user, room_name) if room.is_dm else None
        # Only what the user can have been shown: a message whose commit is still to
        # come may yet fail and its seq go to another.
        if seq > room.durable_seq:
            raise _bad(f"no message {seq} in {room.name}")

        def checked(target: StoredMsg | None) -> None:
            if target is None:
                raise _forbidden(f"message {seq} is no longer stored")
            if target.change is not None:
                raise _bad(f"{seq} is a change, not a message")
            if target.deleted:
                raise _forbidden(f"message {seq} was deleted")
            if target.hidden and target.sender != user.name:
                raise _forbidden(f"message {seq} is not yours to change")  # a placeholder
            go(room, target, peer)

        then_with(session, ref, self.world.reads.get_message(room.name, seq), checked)

    def _store(self, session: Connection, user: User, room: Room, peer: User | None,
               text: str, client_id: str, change: ChangeKind, target: StoredMsg,
               emoji: str | None = None) -> None:
        self.world.admission.charge_each(user, (("say", 1), *text_charge(text)), client_id)
        extra: dict[str, Any] = {"change": change.value, "target": target.seq}
        if emoji is not None:
            extra["emoji"] = emoji
        # Across a block a change is hidden like a message: the blocker gets a
        # placeholder, and nothing of what it changes. So is a change of a message
        # hidden from the peer (sent while blocked): an unblock reveals none of it.
        hidden = hidden_from_peer(user, peer) or bool(target.hidden)
        self.messages.store_entry(session, user, room, text, client_id, hidden=hidden,
                                  extra=extra, target=target)

    # --- moderators --------------------------------------------------------------------

    def set_moderators(self, session: Connection, frame: SetModerators) -> None:
        world = self.world
        user = world.user_of(session)
        room = self.rooms.readable_room(user, frame.room)
        name = frame.add if frame.add is not None else frame.remove
        commit = None
        if name is not None:
            name = rules.normalize_name(name)
            commit = self._change_moderator(user, room, name, add=frame.add is not None)
        names = self.moderators.get(room.name, set())
        creator = self.creators.get(room.name)
        reply = encode(Moderators(room.name, tuple(sorted(names)), creator, ref=frame.id))
        # The others are told of a change (and the asker answered) once it is durable.
        data = encode(Moderators(room.name, tuple(sorted(names)), creator))
        named = world.users.get(name) if name is not None else None

        def told() -> None:
            session.send(reply)
            world.metrics.count_out(Moderators.T)
            if name is None:
                return
            self.delivery.to_user(user, data, Moderators.T, skip=session)
            if named is not None and named is not user:
                self.delivery.to_user(named, data, Moderators.T)

        if commit is None:
            told()
            return
        confirm(session, frame.id or frame.T, commit, world.metrics, told,
                self._track(room.name, name, frame.add is not None))

    def _change_moderator(self, user: User, room: Room, name: str, *,
                          add: bool) -> Commit | None:
        """Make ``name`` a moderator of ``room`` or not; the write, if anything changed."""
        world = self.world
        creator = self.creators.get(room.name)
        if creator != user.name:
            raise _forbidden("only the room's creator names its moderators")
        if name not in world.users:
            raise ProtocolError(ErrorCode.NO_SUCH_USER, f"no user {name!r}")
        names = self.moderators.setdefault(room.name, set())
        if name == creator:
            if not add:
                raise _forbidden("the room's creator stays its moderator")
            return None
        if add and name not in names:
            names.add(name)
            return world.writes.put_moderator(room.name, name, False)
        if not add and name in names:
            names.discard(name)
            return world.writes.remove_moderator(room.name, name)
        return None

    def _track(self, room: str, name: str, moderator: bool) -> Settle:
        """What puts ``name``'s live moderatorship of ``room`` back to what the store
        holds if its write fails (durable.py)."""
        return self.world.unsettled.track(("moderator", room, name), not moderator,
                                          moderator,
                                          lambda stored: self._restore(room, name, stored))

    def _restore(self, room: str, name: str, moderator: bool) -> None:
        names = self.moderators.get(room)
        if names is None:
            return  # the room was dropped meanwhile (its first join not stored)
        if moderator:
            names.add(name)
            return
        names.discard(name)
