"""Rooms: joining and leaving group rooms, who may read a room, its member list.

A group room (``#name``) is created by its first join; a DM room (``@a:b``) belongs to
its two users and is created by its first message. A join is answered with ``joined``
and the replay of what the member missed, produced page by page as the reader drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator

from cfm_common import rules
from cfm_common.codec import encode
from cfm_common.errors import ProtocolError
from cfm_common.frames import (
    GetMembers,
    Join,
    Joined,
    Leave,
    Left,
    Member,
    MembersPage,
    RosterEntry,
)
from cfm_common.rules import ErrorCode, MemberOp, Status
from cfm_server.domain.delivery import Delivery
from cfm_server.domain.durable import Settle, confirm, settled
from cfm_server.domain.hidden import as_seen_by
from cfm_server.domain.ports import Connection
from cfm_server.domain.presence import PresenceHandler
from cfm_server.domain.world import World
from cfm_server.pages import (
    AnswerItem,
    awaited,
    first_within,
    one_page,
    replay_pages,
    roster_entry_size,
)
from cfm_server.read_budget import read_credit
from cfm_server.state import Room, User
from cfm_server.store import Commit
from cfm_server.wsframe import frame_binary

DEFAULT_MEMBERS_PAGE = 100  # a ``members`` request without a limit


def _settled(commit: Commit) -> Iterator[AnswerItem]:
    """In an answer's generator: wait for ``commit`` (failed or not)."""
    while not commit.done():
        yield commit


def _own_dm(user: User, room_name: str) -> tuple[str, str]:
    """The two names of a DM room of ``user``'s; anyone else's is ``forbidden``."""
    pair = rules.dm_members(room_name)
    if pair is None or user.name not in pair:
        raise ProtocolError(ErrorCode.FORBIDDEN, f"{room_name} is not your conversation")
    return pair


class RoomHandler:
    def __init__(self, world: World, delivery: Delivery, presence: PresenceHandler) -> None:
        self.world = world
        self.delivery = delivery
        self.presence = presence
        # Called with (room, creator) when a join creates a group room, and with the
        # room when that join's membership, and so its creator, could not be stored
        # (the room was not made, or has no creator).
        self.on_created: list[Callable[[Room, User], None]] = []
        self.on_dropped: list[Callable[[Room], None]] = []

    # --- who may touch a room ----------------------------------------------------------

    def check_dm_access(self, user: User, room_name: str) -> User:
        """The other user of a DM room that ``user`` may touch; raises otherwise."""
        pair = _own_dm(user, room_name)
        other_name = pair[1] if pair[0] == user.name else pair[0]
        other = self.world.users.get(other_name)
        if other is None:
            raise ProtocolError(ErrorCode.NO_SUCH_USER, f"no user {other_name!r}")
        return other

    def readable_room(self, user: User, room_name: str) -> Room:
        """The room whose history, read marks or members ``user`` may ask for."""
        if room_name.startswith(rules.DM_PREFIX):
            _own_dm(user, room_name)
        room = self.world.rooms.get(room_name)
        if room is None:
            raise ProtocolError(ErrorCode.NO_SUCH_ROOM, f"no room {room_name}")
        if not room.is_dm and user.name not in room.members:
            raise ProtocolError(ErrorCode.NOT_MEMBER, f"join {room_name} first")
        return room

    def add_member(self, room: Room, user: User) -> None:
        settled(*self._membership(room, user, True))

    def _membership(self, room: Room, user: User, member: bool, *,
                    creator: bool = False) -> tuple[Commit, Settle]:
        """Make ``user`` a member of ``room`` or end it, and write it; with what puts
        the stored membership back if the write fails (for ``confirm`` or ``settled``).
        ``creator``: the first member of a group room it makes, stored with its
        creator in one write (both or neither: never a room nobody moderates)."""
        world = self.world
        if member:
            world.add_membership(room, user)
            commit = (world.writes.add_creator(room.name, user.name) if creator
                      else world.writes.add_member(room.name, user.name))
        else:
            world.end_membership(room, user)
            commit = world.writes.remove_member(room.name, user.name)
        return commit, world.unsettled.track(
            ("member", room.name, user.name), not member, member,
            lambda stored: self._restore_member(room, user, stored))

    def _restore_member(self, room: Room, user: User, member: bool) -> None:
        world = self.world
        if world.rooms.get(room.name) is not room or world.users.get(user.name) is not user:
            return  # gone meanwhile (removed by the operator)
        if member and user.name not in room.members:
            world.add_membership(room, user)
        elif not member and user.name in room.members:
            world.end_membership(room, user)

    # --- join, leave, members ------------------------------------------------------------

    def join(self, session: Connection, frame: Join) -> None:
        world = self.world
        user = world.user_of(session)
        room = world.rooms.get(frame.room)
        joined: Commit | None = None  # the membership this join makes, being stored
        if rules.is_group_room(frame.room):
            if user.name not in (room.members if room is not None else ()):
                world.admission.admit_group_join(user, frame.room, world.rooms)
            made = room is None
            if room is None:
                room = world.create_room(frame.room)
            if user.name not in room.members:
                joined, settle = self._membership(room, user, True, creator=made)
                self._tell_joined(session, frame.id or frame.T, room, user, joined, settle,
                                  made)
            if made:
                for created in self.on_created:  # its creator moderates it (changes.py)
                    created(room, user)
        else:
            self.check_dm_access(user, frame.room)
            if room is None:
                room = world.create_room(frame.room)
        # Up to the last message whose commit completed, never further: one still being
        # committed reaches this session by the fan-out of its commit (the session is a
        # member now), and one whose commit fails (a full disk, a SIGKILL) must never
        # have been shown, since its seq goes to the next message. Taken now, not when
        # the answer is produced (a cluster node may still be reading it: world.Reads).
        top_now = world.reads.top(room)
        session.answer(self._join_answer(room, user, frame, top_now, joined),
                       frame.id or frame.T)

    def _tell_joined(self, session: Connection, ref: str, room: Room, user: User,
                     joined: Commit, settle: Settle, made: bool) -> None:
        """Once the membership is durable: ``member`` to the others, and the new member
        introduced; if it is not, the joiner gets ``internal`` (durable.py), and a room
        this join made is dropped again (the next first join makes it, and its creator)."""
        data = encode(Member(room.name, user.name, MemberOp.JOIN.value))

        def told() -> None:  # (the audience as it is then: a big room's is not copied)
            self.delivery.room_event(room, user, data, "member",
                                     self.member_audience(room, user), skip=session,
                                     to_own=True)
            self.presence.introduce(room, user)

        def refused() -> None:
            rooms = self.world.rooms
            if not made or rooms.get(room.name) is not room:
                return
            if not room.members:
                del rooms[room.name]
            # Its creator was not stored either (one write): none here either, even if
            # someone else's join made it a member meanwhile.
            for dropped in self.on_dropped:
                dropped(room)

        confirm(session, ref, joined, self.world.metrics, told, settle, refused)

    def _join_answer(self, room: Room, user: User, frame: Join,
                     top_now: int | asyncio.Future[int],
                     joined: Commit | None) -> Iterator[AnswerItem]:
        """``joined``, then the replay of what the member missed, produced page by page
        as the reader drains, never queued whole; nothing if the membership the join
        made could not be stored (its ``error`` is sent instead: ``_tell_joined``)."""
        world = self.world
        config = world.config
        if joined is not None:
            yield from _settled(joined)
            if joined.cancelled() or joined.exception() is not None:
                return
        top = yield from awaited(top_now)  # a cluster node may learn the epoch with it
        since, reset = frame.since, None
        if frame.epoch is not None and frame.epoch != room.epoch:
            since, reset = 0, True
        more = None
        if since is not None:
            # Seqs are gapless: the messages after ``since`` are since+1 .. top.
            more = top - since > config.replay_limit
        # Built when the session is ready to send it: a big room's roster costs
        # milliseconds, spent only for a reader that reads.
        members, count = self._join_roster(room, user, frame.members_limit)
        world.metrics.count_out("joined")
        yield frame_binary(encode(Joined(room.name, top, room.epoch, members, more, reset,
                                         count, ref=frame.id)))
        if since is not None and since < top:
            credit = read_credit(world.admission, user, frame.id or frame.T,
                                 config.answer_page_bytes)
            yield from replay_pages(world.reads, room.name, since, top, config.replay_limit,
                                    config.answer_page_bytes, world.metrics,
                                    seen_as=lambda msgs: as_seen_by(user, room, msgs),
                                    credit=credit)

    def _join_roster(self, room: Room, user: User,
                     members_limit: int | None) -> tuple[tuple[RosterEntry, ...], int | None]:
        """``joined.members`` and ``joined.count``: the first ``members_limit`` members by
        name (``roster_limit`` without it), cut at ``page_bytes``; ``count`` is the room's
        member count whenever the list was asked to be or had to be short."""
        config = self.world.config
        names = room.roster
        limit = config.roster_limit if members_limit is None else members_limit
        entry = self.presence.roster_entry
        entries = [entry(name, user.name) for name in names[:limit]]
        if entries:
            entries = first_within(entries, roster_entry_size, config.answer_page_bytes)
        cut = len(entries) < len(names)
        count = len(room.members) if members_limit is not None or cut else None
        return tuple(entries), count

    def member_audience(self, room: Room, user: User) -> Iterable[Connection]:
        """Who hears of ``user`` joining or leaving ``room``: its loud sessions, except
        what would show that a user who looks offline is active — while the user is
        invisible only its own sessions, and never the users it blocked. (A cluster
        node applies it to the sessions it holds.)"""
        if user.record.status == Status.INVISIBLE:
            return [s for s in user.sessions if s in room.loud]
        if not any(c.blocked for c in user.contacts.values()):
            return room.loud
        return [s for s in room.loud
                if s.user is None or not user.has_blocked(s.user.name)]

    def leave(self, session: Connection, frame: Leave) -> None:
        world = self.world
        user = world.user_of(session)
        room = world.rooms.get(frame.room)
        if room is None or user.name not in room.members:
            raise ProtocolError(ErrorCode.NOT_MEMBER, f"you are not in {frame.room}")
        left, settle = self._membership(room, user, False)
        data = encode(Member(room.name, user.name, MemberOp.LEAVE.value))

        def told() -> None:
            if frame.id is None:
                self.delivery.to_user(user, encode(Left(room.name)), "left")
            else:  # the asking session's copy carries the request's id (request ids)
                session.send(encode(Left(room.name, ref=frame.id)))
                world.metrics.count_out("left")
                self.delivery.to_user(user, encode(Left(room.name)), "left", skip=session)
            self.delivery.room_event(room, user, data, "member",
                                     self.member_audience(room, user))

        confirm(session, frame.id or frame.T, left, world.metrics, told, settle)

    def members(self, session: Connection, frame: GetMembers) -> None:
        """A page of a group room's member list (the big-room extension)."""
        world = self.world
        user = world.user_of(session)
        if frame.room.startswith(rules.DM_PREFIX):
            raise ProtocolError(ErrorCode.BAD_FRAME, "a DM room's members are its two names")
        room = self.readable_room(user, frame.room)
        after = None if frame.after is None else rules.normalize_name(frame.after)
        names, more = room.roster_page(after, frame.limit or DEFAULT_MEMBERS_PAGE)
        entries = [self.presence.roster_entry(name, user.name) for name in names]
        kept = first_within(entries, roster_entry_size, world.config.answer_page_bytes)
        more = more or len(kept) < len(entries)
        page = MembersPage(room.name, tuple(kept), more, ref=frame.id)
        world.metrics.count_out(page.T)
        session.answer(one_page(lambda: encode(page)), frame.id or frame.T)
