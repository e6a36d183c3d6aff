"""Presence: what others see of a user (status, display name, personal message), and
when they are told.

A user who looks offline (no session, invisible, or to someone they blocked) shows
nothing else: no personal message, no "is typing", no read mark. The last session's end
is told after ``presence_grace`` seconds, so a reconnect at once does not flap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cfm_common import rules
from cfm_common.codec import encode
from cfm_common.frames import Presence, RosterEntry, SetPresence
from cfm_common.rules import Status
from cfm_server.domain.delivery import Delivery
from cfm_server.domain.durable import Settle, confirm
from cfm_server.domain.ports import Connection
from cfm_server.domain.world import World
from cfm_server.state import Room, User
from cfm_server.store import UserRecord


def psm_seen(psm: str, status: str) -> str:
    """A user who looks offline shows no personal message (as in MSN): otherwise an
    invisible user's, or a blocker's, new psm would give them away."""
    return "" if status == Status.OFFLINE else psm


# The fields of a user's record that a ``presence`` frame or a ``hello`` sets.
Shown = tuple[str, str, str, bool]


def shown(record: UserRecord) -> Shown:
    return (record.status, record.display, record.psm, record.bot)


def _view(record: UserRecord, status: str) -> tuple[str, ...]:
    if status == Status.OFFLINE:
        return (status,)
    return (record.display, status, record.psm, str(record.bot))


@dataclass(slots=True)
class Going:
    """A user within the presence grace: its timer (None: a cluster node's hold without
    one), what watchers saw of it until then, and who was shown it offline meanwhile
    (a welcome, a contact echo, a room's roster)."""

    handle: asyncio.TimerHandle | None
    seen: tuple[str, ...]
    shown_offline: set[str] = field(default_factory=set)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


class PresenceHandler:
    def __init__(self, world: World, delivery: Delivery) -> None:
        self.world = world
        self.delivery = delivery
        self.online_users = 0
        # Signed-in users whose status is invisible: /metrics counts users online without
        # them (otherwise its gauge would tell anyone that an invisible user signed in).
        self.invisible_online: set[str] = set()
        # Users whose last session ended less than ``presence_grace`` ago: the offline
        # presence waits on this timer, and what watchers saw of them until then (a
        # reconnect within the grace cancels it, and watchers hear only what changed).
        self.going_offline: dict[str, Going] = {}
        # A cluster node's: asked at the grace's end whether to tell watchers (another
        # node may hold the user, or have told them); it calls ``gone_offline`` if so.
        self.confirm_offline: Callable[[User], None] | None = None

    # --- what others see ---------------------------------------------------------------

    def view(self, user: User) -> tuple[str, ...]:
        """What watchers see of the user; while it looks offline, nothing else shows."""
        return _view(user.record, user.status_for(None))

    def frame(self, user: User, status: str) -> bytes:
        """The ``presence`` frame of ``user`` showing ``status``."""
        record = user.record
        return encode(
            Presence(user.name, record.display, status, psm_seen(record.psm, status), record.bot)
        )

    def roster_entry(self, name: str, viewer: str, *, blocked: bool | None = None
                     ) -> RosterEntry:
        """``name`` as ``viewer`` sees them in a contact list or a room's roster."""
        user = self.world.users.get(name)
        if user is None:  # a default contact that has not signed in yet
            return RosterEntry(name, name, Status.OFFLINE.value, "", False, blocked)
        record = user.record
        status = user.status_for(viewer)
        going = self.going_offline.get(name)
        if going is not None and status == Status.OFFLINE and viewer != name:
            # Told if the user is back within the grace. Never the user itself: its own
            # roster (a dead session's join answer) made its next session get its own
            # presence before its welcome.
            going.shown_offline.add(viewer)
        return RosterEntry(
            name, record.display, status, psm_seen(record.psm, status), record.bot, blocked
        )

    # --- telling others ----------------------------------------------------------------

    def broadcast(
        self,
        user: User,
        *,
        own: bool,
        skip: Connection | None = None,
        public: tuple[str, ...] | None = None,
    ) -> None:
        """Send the user's presence to its watchers (and its own sessions if ``own``).

        ``public`` is what watchers saw before the change: when it is unchanged (an
        invisible user editing their psm) the watchers are not told.
        """
        if own:
            data = self.frame(user, user.record.status)
            self.delivery.to_user(user, data, "presence", skip=skip)
        if public is not None and public == self.view(user):
            return
        self.delivery.presence(user, self.frame(user, user.status_for(None)))

    def introduce(self, room: Room, user: User) -> None:
        """The new member's presence to the others: they watch the user from now on.
        An invisible user (who looks offline) is not announced."""
        if not user.sessions or user.record.status == Status.INVISIBLE:
            return
        self.delivery.room_event(room, user, self.frame(user, user.status_for(None)),
                                 "presence", self.introduce_audience(room, user))

    def introduce_audience(self, room: Room, user: User) -> Iterable[Connection]:
        """Who a new member is introduced to: the room's loud sessions (quiet ones learn
        members from joined/members) but the user's and those of the users it blocked."""
        return (other for other in room.loud
                if (them := other.user) is not None and them is not user
                and not user.has_blocked(them.name))

    def set_presence(self, session: Connection, frame: SetPresence) -> None:
        world = self.world
        user = world.user_of(session)
        world.admission.charge(user, "presence", "presence")
        record = user.record
        if frame.display is not None and frame.display != record.display:
            world.admission.check_display(user.name, frame.display)
        before = self.view(user)
        was = shown(record)
        for attr in ("status", "display", "psm"):
            value = getattr(frame, attr)
            if value is not None:
                setattr(record, attr, value)
        commit = world.writes.put_user(record)
        settle = self.track(user, was)
        self.note_visibility(user)
        # Worked out now, sent once the change is durable (durable.py).
        own = self.frame(user, record.status)
        public = None if before == self.view(user) else self.frame(user, user.status_for(None))

        def told() -> None:
            self.delivery.to_user(user, own, "presence")
            if public is not None:
                self.delivery.presence(user, public)

        confirm(session, frame.T, commit, world.metrics, told, settle)

    def track(self, user: User, was: Shown) -> Settle:
        """A write of the user's record (a ``presence``, a sign-in's ``hello``) whose
        shown fields were ``was``: what puts the live record back to what the store
        holds if the write fails (durable.py). One chain per user, so that a sign-in's
        status and a ``presence`` from another session settle in order."""
        return self.world.unsettled.track(("presence", user.name), was, shown(user.record),
                                          lambda stored: self._restore(user, stored))

    def _restore(self, user: User, stored: Shown) -> None:
        """A change of the record the store did not take: back to what it holds."""
        record = user.record
        record.status, record.display, record.psm, record.bot = stored
        self.note_visibility(user)

    # --- sessions coming and going -------------------------------------------------------

    def session_started(self, user: User, session: Connection, *, first: bool, changed: bool,
                        before: tuple[str, ...]) -> None:
        """``session`` of ``user`` signed in (``first``: the user had none); ``changed``:
        its hello changed what others see, ``before`` being what they saw."""
        if not session.quiet:
            for room in self.world.group_rooms(user):
                room.loud.add(session)
        if first:
            self.online_users += 1
            going = self.going_offline.pop(user.name, None)
            if going is not None:  # back within the grace: watchers saw no offline
                going.cancel()
                if self.view(user) != going.seen:
                    self.broadcast(user, own=False)
                else:
                    self._tell_newcomers(user, going)
            elif user.record.status != Status.INVISIBLE and not user.remote:
                # (remote: online on another node of a cluster, so watchers see it already)
                self.broadcast(user, own=False)
        elif changed:
            self.broadcast(user, own=True, skip=session, public=before)
        self.note_visibility(user)

    def session_ended(self, user: User, session: Connection) -> None:
        """``session`` of ``user`` signed out (already gone from ``user.sessions``)."""
        if not session.quiet:
            for room in self.world.group_rooms(user):
                room.loud.discard(session)
        if not user.sessions:
            self.online_users -= 1
            if user.record.status != Status.INVISIBLE:
                self._offline_after_grace(user)
            self.note_visibility(user)

    def note_visibility(self, user: User) -> None:
        if user.sessions and user.record.status == Status.INVISIBLE:
            self.invisible_online.add(user.name)
        else:
            self.invisible_online.discard(user.name)

    def _offline_after_grace(self, user: User) -> None:
        """Tell watchers the user went offline — after ``presence_grace`` seconds, so a
        session that reconnects at once (a network blip, a restart of the client) does
        not flap offline/online for everyone who watches it."""
        grace = self.world.config.presence_grace
        if grace <= 0:
            self._gone_offline(user.name)
            return
        record = user.record
        seen = _view(record, rules.public_status(record.status))  # as it was until now
        handle = asyncio.get_running_loop().call_later(grace, self._gone_offline, user.name)
        self.going_offline[user.name] = Going(handle, seen)

    def hold_offline(self, user: User, *, timed: bool = True) -> None:
        """On a cluster node: ``user`` went offline on another node less than the grace
        ago (or is signing in here meanwhile). A return within the grace is no news here
        either (watchers hear only what changed); if it does not happen, this node's
        timer ends the grace as the other node's would (``timed``; else the hold lasts
        until the user is back or told gone: the AI contacts, whose next holder signs
        them in)."""
        if user.sessions or user.name in self.going_offline:
            return
        record = user.record
        seen = _view(record, rules.public_status(record.status))
        handle = asyncio.get_running_loop().call_later(
            self.world.config.presence_grace, self._gone_offline, user.name) if timed else None
        self.going_offline[user.name] = Going(handle, seen)

    def back_elsewhere(self, user: User) -> None:
        """(A cluster node:) ``user`` came back on another node within the grace: no news
        to the watchers here, but those shown the user offline meanwhile are told —
        unless it came back changed, which its node tells everyone, newcomers included."""
        going = self.going_offline.pop(user.name, None)
        if going is not None:
            going.cancel()
            if self.view(user) == going.seen:
                self._tell_newcomers(user, going)

    def drop_hold(self, name: str) -> None:
        """(A cluster node:) ``name``'s grace here ends with nothing to tell: its going
        was told (its node's death, or the frame of the node that ended the grace)."""
        going = self.going_offline.pop(name, None)
        if going is not None:
            going.cancel()

    def _tell_newcomers(self, user: User, going: Going) -> None:
        """The user is back within the grace, as its watchers saw it: those shown it
        offline meanwhile (their welcome, a contact echo, a room's roster) are told it is
        here, or they would see it offline until its next change."""
        if user.record.status == Status.INVISIBLE or not going.shown_offline:
            return
        data = self.frame(user, user.status_for(None))
        for name in going.shown_offline:
            viewer = self.world.users.get(name)
            if viewer is not None and viewer.sessions and not user.has_blocked(name):
                self.delivery.to_sessions(viewer.sessions, data, "presence")

    def _gone_offline(self, name: str) -> None:
        self.going_offline.pop(name, None)
        user = self.world.users.get(name)
        if user is None or user.sessions:
            return
        if self.confirm_offline is not None:
            # A cluster node: Redis knows whether another node holds the user, or told
            # the watchers already.
            self.confirm_offline(user)
        elif not user.online:
            self.broadcast(user, own=False)

    def gone_offline(self, user: User) -> None:
        """(A cluster node, once Redis said the user is offline everywhere and nobody
        told the watchers:) tell them."""
        if not user.sessions and user.record.status != Status.INVISIBLE:
            self.broadcast(user, own=False)

