"""The hub: the one owner of users, sessions, rooms, presence and contacts.

Every method runs on the event loop without awaiting, so the state never changes under
a method's feet. Sessions hand the hub decoded frames (``Hub.handle``); the hub answers
with frames sent through ``Session.send`` (never awaited: see ``session.py``) or raises
``ProtocolError`` for the session to turn into an ``error`` frame.

The hot path is ``say``: dedupe by (sender, id), ``Room.next_seq``, ``Store.append``,
then — only when that write's commit completes — the ``ack`` to the sender and the
``msg``, encoded once, to every other session of every member (``_on_commit``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cfm_common import PROTOCOL_VERSION, __version__, rules
from cfm_common.codec import encode, encode_ack, encode_msg
from cfm_common.errors import ProtocolError
from cfm_common.frames import (
    ClientFrame,
    Contact,
    ContactRequest,
    Error,
    GetHistory,
    GetMembers,
    Hello,
    History,
    Join,
    Joined,
    Leave,
    Left,
    MarkRead,
    Member,
    MembersPage,
    Nudge,
    Presence,
    Read,
    RoomState,
    RosterEntry,
    Say,
    SendTyping,
    SetPresence,
    StoredMsg,
    Typing,
    Welcome,
)
from cfm_common.rules import ContactOp, ErrorCode, MemberOp, MsgKind, Status
from cfm_server import oplog
from cfm_server.admission import Admission, RateLimited
from cfm_server.config import ServerConfig
from cfm_server.invites import Invite, InviteBook, InviteError
from cfm_server.limits import PairInterval
from cfm_server.metrics import Metrics
from cfm_server.pages import (
    first_within,
    last_within,
    one_page,
    replay_pages,
    roster_entry_size,
    stored_msg_size,
)
from cfm_server.state import Pending, Room, User
from cfm_server.store import Commit, ContactRecord, RoomRecord, Store, StoreError, UserRecord
from cfm_server.wsframe import frame_binary

if TYPE_CHECKING:
    from cfm_server.session import Session

log = logging.getLogger(__name__)

SERVER_NAME = f"cfm/{__version__}"
DEFAULT_MEMBERS_PAGE = 100  # a ``members`` request without a limit


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _psm_seen(psm: str, status: str) -> str:
    """A user who looks offline shows no personal message (as in MSN): otherwise an
    invisible user's, or a blocker's, new psm would give them away."""
    return "" if status == Status.OFFLINE else psm


def new_epoch() -> str:
    return secrets.token_hex(8)


@dataclass(slots=True)
class SignUp:
    """A new identity on its way to the store; its welcome waits for ``commit``."""

    record: UserRecord
    token: str
    invite: Invite | None
    commit: Commit


__all__ = ["Hub", "RateLimited", "SignUp"]


class Hub:
    def __init__(self, config: ServerConfig, store: Store, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.users: dict[str, User] = {}
        self.rooms: dict[str, Room] = {}
        # owner names per listed handle: who gets a handle's presence via their contact list.
        self.listed_by: dict[str, set[str]] = {}
        self.reserved = frozenset(rules.normalize_name(n) for n in config.reserved_names)
        # Look-alike names, sign-ups per address, per-user buckets; the server's bots.
        self.admission = Admission(config, self.reserved)
        # (sender, client id) → the message in flight, for retries that arrive before its commit.
        self.inflight: dict[tuple[str, str], Pending] = {}
        self.nudge_pairs = PairInterval(config.nudge_interval)
        self.online_users = 0
        # Signed-in users whose status is invisible: /metrics counts users online without
        # them (otherwise its gauge would tell anyone that an invisible user signed in).
        self.invisible_online: set[str] = set()
        # Users whose last session ended less than ``presence_grace`` ago: the offline
        # presence waits on this timer, and what watchers saw of them until then (a
        # reconnect within the grace cancels it, and watchers hear only what changed).
        self.going_offline: dict[str, tuple[asyncio.TimerHandle, tuple[str, ...]]] = {}
        # Set by the server when registration is by invite.
        self.invites: InviteBook | None = None
        # New handles whose identity is being stored (see sign_in).
        self.signing_up: dict[str, SignUp] = {}
        self._session_ids = itertools.count(1)
        self._handlers = {
            SetPresence: self.set_presence,
            Join: self.join,
            Leave: self.leave,
            Say: self.say,
            SendTyping: self.typing,
            Nudge: self.nudge,
            GetHistory: self.history,
            MarkRead: self.read,
            ContactRequest: self.contact,
            GetMembers: self.members,
        }

    # --- start-up ----------------------------------------------------------------------

    def load(self) -> None:
        """Build the live state from the store's snapshot; make sure #lobby exists."""
        cleaned = 0
        for record in self.store.load_users():
            self.users[record.name] = User(record)
            cleaned += self._clean_names(record)
        if cleaned:
            log.info("removed invisible characters from %d stored display names or "
                     "personal messages", cleaned)
        for room in self.store.load_rooms():
            if not room.epoch:  # its messages were kept but its own write was lost
                log.warning("room %s had no record; restored with a new epoch", room.room)
                room.epoch = new_epoch()
                self._write(self.store.put_room(room))
            self.rooms[room.room] = Room(room.room, room.seq, room.epoch)
        for room_name, user_name in self.store.load_members():
            room, user = self.rooms.get(room_name), self.users.get(user_name)
            if room is not None and user is not None:
                room.add_member(user_name)
                user.rooms.add(room_name)
        for contact in self.store.load_contacts():
            owner = self.users.get(contact.owner)
            if owner is None:
                continue
            owner.contacts[contact.name] = contact
            if contact.in_list:
                self.listed_by.setdefault(contact.name, set()).add(contact.owner)
        for user_name, room_name, seq in self.store.load_reads():
            user = self.users.get(user_name)
            if user is not None:
                user.reads[room_name] = seq
        if rules.LOBBY not in self.rooms:
            self._create_room(rules.LOBBY)
        self.metrics.set_gauge_sources(
            rooms=lambda: len(self.rooms),
            users_online=lambda: self.online_users - len(self.invisible_online),
        )
        log.info("hub loaded %d users and %d rooms", len(self.users), len(self.rooms))

    def _clean_names(self, record: UserRecord) -> bool:
        """Names stored before invisible characters were refused lose them now, so that
        "Alice\u200b" no longer passes for Alice with any client (a blank display falls
        back to the handle)."""
        display = rules.without_hidden(record.display)
        if not display.strip():
            display = ""
        psm = rules.without_hidden(record.psm)
        if (display, psm) == (record.display, record.psm):
            return False
        record.display, record.psm = display, psm
        self._write(self.store.put_user(record))
        return True

    def _create_room(self, name: str) -> Room:
        room = Room(name, 0, new_epoch())
        self.rooms[name] = room
        self._write(self.store.put_room(RoomRecord(name, 0, room.epoch)))
        return room

    def _write(self, commit: Commit) -> None:
        """A state write nobody waits for: a failure is logged (the live state stays)."""
        commit.add_done_callback(_log_failed_write)

    # --- sign-in and sign-out ----------------------------------------------------------

    def sign_in(self, session: Session, hello: Hello) -> Welcome | SignUp:
        """Sign ``session`` in: a Welcome, or for a new handle a SignUp whose record is
        being stored (the session finishes it with :meth:`finish_sign_up` once that
        commit is durable, or :meth:`drop_sign_up` if it fails)."""
        name = rules.normalize_name(hello.name)
        if name in self.reserved:
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"{name!r} is reserved", "hello")
        user = self.users.get(name)
        if user is None:
            self.admission.check_new_handle(name)
            if name in self.signing_up:
                raise ProtocolError(ErrorCode.NAME_TAKEN,
                                    f"{name!r} is being claimed right now", "hello")
            self.admission.charge_signup(session.ip)
            return self._begin_sign_up(name, hello)
        if hello.token is None:
            raise ProtocolError(
                ErrorCode.NAME_TAKEN, f"{name!r} is taken (sign in with its token)", "hello"
            )
        if not hmac.compare_digest(hash_token(hello.token), user.record.token_hash):
            raise ProtocolError(ErrorCode.BAD_TOKEN, f"wrong token for {name!r}", "hello")
        return self._attach(session, user, hello, hello.token)

    def _begin_sign_up(self, name: str, hello: Hello) -> SignUp:
        """Store a new identity. Until its commit it is nobody: not in ``users`` (a DM to
        it is ``no_such_user``), its name held against a second claim, its session
        attached to nothing, so no frame goes out before its welcome."""
        try:
            if hello.display is not None:
                self.admission.check_display(name, hello.display)
            invite = self._admit_new_user(hello)
        except ProtocolError as exc:
            oplog.sign_up_refused(name, exc.msg)
            raise
        if invite is not None and self.invites is not None:
            # Counted now, in the same transaction as the identity: both or neither.
            used = self.invites.spend(invite)
            self._write(self.store.put_invite_use(invite.nonce, used))
        token = secrets.token_urlsafe(32)
        record = UserRecord(
            name=name,
            token_hash=hash_token(token),
            display=hello.display or hello.name,
            psm=hello.psm or "",
            status=hello.status or Status.ONLINE.value,
            bot=bool(hello.bot),
            created_ms=now_ms(),
        )
        commit = self.store.put_user(record)
        self._write(commit)
        sign_up = SignUp(record, token, invite, commit)
        self.signing_up[name] = sign_up
        return sign_up

    def finish_sign_up(self, session: Session, sign_up: SignUp, hello: Hello) -> Welcome:
        """The identity is durable: it becomes a user, and the session signs in."""
        name = sign_up.record.name
        self.signing_up.pop(name, None)
        user = User(sign_up.record)
        self.users[name] = user
        invite = sign_up.invite
        oplog.signed_up(name, sign_up.record.bot, invite and invite.nonce,
                        self.invites.used.get(invite.nonce, 0) if invite and self.invites else 0,
                        invite.uses if invite else 0)
        for contact_name in self.config.default_contacts:
            contact_name = rules.normalize_name(contact_name)
            if contact_name != name:
                self._put_contact(user, contact_name, in_list=True)
        return self._attach(session, user, hello, sign_up.token)

    def drop_sign_up(self, sign_up: SignUp) -> None:
        """The identity's commit failed: the handle (and the invite's use) is free again."""
        self.signing_up.pop(sign_up.record.name, None)
        if sign_up.invite is not None and self.invites is not None:
            self.invites.refund(sign_up.invite)

    def _attach(self, session: Session, user: User, hello: Hello, token: str) -> Welcome:
        record = user.record
        if hello.display is not None and hello.display != record.display:
            self.admission.check_display(user.name, hello.display)
        before = self._presence_view(user)
        changed = False
        for attr in ("display", "psm", "status", "bot"):
            value = getattr(hello, attr)
            if value is not None and getattr(record, attr) != value:
                setattr(record, attr, value)
                changed = True
        if changed:
            self._write(self.store.put_user(record))
        session.id = f"s{next(self._session_ids)}"
        session.user = user
        session.quiet = bool(hello.quiet)
        first = not user.sessions
        user.sessions.append(session)
        if not session.quiet:
            for room in self._group_rooms(user):
                room.loud.add(session)
        self.metrics.sessions.inc()
        if user.name in self.admission.server_bots:
            # Its read marks and answers follow other users' traffic, which must not
            # get it closed: no per-kind buckets (its bytes are still budgeted).
            session.limits.lift_buckets()
        if first:
            self.online_users += 1
            going = self.going_offline.pop(user.name, None)
            if going is not None:  # back within the grace: watchers saw no offline
                going[0].cancel()
                if self._presence_view(user) != going[1]:
                    self._broadcast_presence(user, own=False)
            elif record.status != Status.INVISIBLE:
                self._broadcast_presence(user, own=False)
        elif changed:
            self._broadcast_presence(user, own=True, skip=session, public=before)
        self._note_visibility(user)
        return self._welcome(session, user, token)

    def _admit_new_user(self, hello: Hello) -> Invite | None:
        """Whether ``registration`` lets a new handle be claimed; the invite it used."""
        mode = self.config.registration
        if mode == "open":
            return None
        if mode == "closed" or self.invites is None:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                "this server takes no new users; ask its operator for an account", "hello")
        if hello.invite is None:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                "this server takes new users by invite: ask its operator for an invite code",
                "hello")
        try:
            return self.invites.admit(hello.invite, time.time())
        except InviteError as exc:
            raise ProtocolError(ErrorCode.FORBIDDEN, str(exc), "hello") from None

    def provision_bot(self, name: str, display: str, psm: str, status: str) -> str | None:
        """A fresh token for a bot this server runs itself (the AI contacts).

        Creates the identity if it is new, so nobody can claim the handle first, and
        replaces the token of an existing bot identity (the server owns these; a lost
        token file must not lock a persona out). Returns None, and changes nothing, when a
        person already holds the handle.
        """
        name = rules.normalize_name(name)
        token = secrets.token_urlsafe(32)
        user = self.users.get(name)
        if user is None:
            record = UserRecord(name, hash_token(token), display, psm, status, True, now_ms())
            user = self.users[name] = User(record)
        elif not user.record.bot:
            return None
        else:
            user.record.token_hash = hash_token(token)
        self._write(self.store.put_user(user.record))
        self.admission.add_server_bot(name, {display, user.record.display})
        return token

    def _welcome(self, session: Session, user: User, token: str) -> Welcome:
        rooms = []
        for room_name in sorted(user.rooms):
            room = self.rooms[room_name]
            rooms.append(RoomState(room_name, room.seq, user.reads.get(room_name, 0), room.epoch))
        contacts = tuple(
            self._roster_entry(contact.name, user.name, blocked=contact.blocked)
            for contact in user.contacts.values()
        )
        record = user.record
        return Welcome(
            v=PROTOCOL_VERSION,
            session=session.id,
            name=user.name,
            token=token,
            display=record.display,
            status=record.status,
            psm=record.psm,
            server=SERVER_NAME,
            limits=self.config.client_limits(),
            rooms=tuple(rooms),
            contacts=contacts,
        )

    def sign_out(self, session: Session) -> None:
        user = session.user
        if user is None:
            return
        session.user = None
        user.sessions.remove(session)
        if not session.quiet:
            for room in self._group_rooms(user):
                room.loud.discard(session)
        self.metrics.sessions.dec()
        if not user.sessions:
            self.online_users -= 1
            if user.record.status != Status.INVISIBLE:
                self._offline_after_grace(user)
            self._note_visibility(user)

    def _offline_after_grace(self, user: User) -> None:
        """Tell watchers the user went offline — after ``presence_grace`` seconds, so a
        session that reconnects at once (a network blip, a restart of the client) does
        not flap offline/online for everyone who watches it."""
        grace = self.config.presence_grace
        if grace <= 0:
            self._broadcast_presence(user, own=False)
            return
        record = user.record
        seen = (record.display, rules.public_status(record.status), record.psm, str(record.bot))
        handle = asyncio.get_running_loop().call_later(grace, self._gone_offline, user.name)
        self.going_offline[user.name] = (handle, seen)

    def _gone_offline(self, name: str) -> None:
        self.going_offline.pop(name, None)
        user = self.users.get(name)
        if user is not None and not user.sessions:
            self._broadcast_presence(user, own=False)

    # --- dispatch ------------------------------------------------------------------------

    def handle(self, session: Session, frame: ClientFrame) -> None:
        handler = self._handlers.get(type(frame))
        if handler is None:  # a second hello
            raise ProtocolError(ErrorCode.BAD_FRAME, "already signed in", frame.T)
        handler(session, frame)

    # --- presence ----------------------------------------------------------------------

    def _presence_view(self, user: User) -> tuple[str, ...]:
        """What watchers see of the user; while it looks offline, nothing else shows."""
        status = user.status_for(None)
        if status == Status.OFFLINE:
            return (status,)
        record = user.record
        return (record.display, status, record.psm, str(record.bot))

    def _presence(self, user: User, status: str) -> bytes:
        record = user.record
        return encode(
            Presence(user.name, record.display, status, _psm_seen(record.psm, status), record.bot)
        )

    def _group_rooms(self, user: User) -> Iterable[Room]:
        rooms = self.rooms
        return (rooms[r] for r in user.rooms if not rooms[r].is_dm)

    def presence_sessions(self, user: User) -> set[Session]:
        """The sessions a change of the user's presence goes to: every session of its
        contact-list owners, and the loud sessions of its group rooms (quiet ones hear of
        room members only through ``joined``/``members``); blocked users excluded.

        O(contact watchers + loud sessions of the user's rooms), not O(members)."""
        out: set[Session] = set()
        users = self.users
        for name in self.listed_by.get(user.name, ()):
            watcher = users.get(name)
            if watcher is not None and watcher.sessions and not user.has_blocked(name):
                out.update(watcher.sessions)
        for room in self._group_rooms(user):
            for session in room.loud:
                other = session.user
                if other is not None and other is not user and not user.has_blocked(other.name):
                    out.add(session)
        return out

    def _is_watcher(self, user: User, name: str) -> bool:
        if name in self.listed_by.get(user.name, ()):
            return True
        return any(
            name in self.rooms[r].members for r in user.rooms if not self.rooms[r].is_dm
        )

    def _broadcast_presence(
        self,
        user: User,
        *,
        own: bool,
        skip: Session | None = None,
        public: tuple[str, ...] | None = None,
    ) -> None:
        """Send the user's presence to its watchers (and its own sessions if ``own``).

        ``public`` is what watchers saw before the change: when it is unchanged (an
        invisible user editing their psm) the watchers are not told.
        """
        if own:
            data = self._presence(user, user.record.status)
            self._send_sessions(user.sessions, data, "presence", skip=skip)
        if public is not None and public == self._presence_view(user):
            return
        data = self._presence(user, user.status_for(None))
        self._send_sessions(self.presence_sessions(user), data, "presence")

    def set_presence(self, session: Session, frame: SetPresence) -> None:
        user = self._user(session)
        self.admission.charge(user, "presence", "presence")
        record = user.record
        if frame.display is not None and frame.display != record.display:
            self.admission.check_display(user.name, frame.display)
        before = self._presence_view(user)
        for attr in ("status", "display", "psm"):
            value = getattr(frame, attr)
            if value is not None:
                setattr(record, attr, value)
        self._write(self.store.put_user(record))
        self._broadcast_presence(user, own=True, public=before)
        self._note_visibility(user)

    def _note_visibility(self, user: User) -> None:
        if user.sessions and user.record.status == Status.INVISIBLE:
            self.invisible_online.add(user.name)
        else:
            self.invisible_online.discard(user.name)

    # --- rooms: join and leave ---------------------------------------------------------

    def _check_dm_access(self, user: User, room_name: str) -> User:
        """The other user of a DM room that ``user`` may touch; raises otherwise."""
        pair = rules.dm_members(room_name)
        assert pair is not None
        if user.name not in pair:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"{room_name} is not your conversation")
        other_name = pair[1] if pair[0] == user.name else pair[0]
        other = self.users.get(other_name)
        if other is None:
            raise ProtocolError(ErrorCode.NO_SUCH_USER, f"no user {other_name!r}")
        return other

    def join(self, session: Session, frame: Join) -> None:
        user = self._user(session)
        room = self.rooms.get(frame.room)
        if rules.is_group_room(frame.room):
            if user.name not in (room.members if room is not None else ()):
                self.admission.admit_group_join(user, frame.room, self.rooms)
            if room is None:
                room = self._create_room(frame.room)
            if user.name not in room.members:
                self._add_member(room, user)
                room.loud.update(s for s in user.sessions if not s.quiet)
                data = encode(Member(room.name, user.name, MemberOp.JOIN.value))
                self._send_sessions(self._member_audience(room, user), data, "member",
                                    skip=session)
                self._introduce(room, user)
        else:
            self._check_dm_access(user, frame.room)
            if room is None:
                room = self._create_room(frame.room)
        since, reset = frame.since, None
        if frame.epoch is not None and frame.epoch != room.epoch:
            since, reset = 0, True
        more = None
        if since is not None:
            # Seqs are gapless: the messages after ``since`` are since+1 .. room.seq.
            more = room.seq - since > self.config.replay_limit
        members_limit = frame.members_limit

        def joined() -> bytes:
            # Built when the session is ready to send it: a big room's roster costs
            # milliseconds, spent only for a reader that reads.
            members, count = self._join_roster(room, user, members_limit)
            self.metrics.count_out("joined")
            return encode(Joined(room.name, room.seq, room.epoch, members, more, reset, count))

        if since is None or since >= room.seq:
            session.answer(one_page(joined))
            return
        # The replay is produced page by page as the reader drains, never queued whole.
        session.answer(itertools.chain(
            one_page(joined),
            replay_pages(self.store, room.name, since, room.seq, self.config.replay_limit,
                         self.config.answer_page_bytes, self.metrics,
                         seen_as=lambda msgs: self._as_seen_by(user, room, msgs))))

    def _join_roster(self, room: Room, user: User,
                     members_limit: int | None) -> tuple[tuple[RosterEntry, ...], int | None]:
        """``joined.members`` and ``joined.count``: the first ``members_limit`` members by
        name (``roster_limit`` without it), cut at ``page_bytes``; ``count`` is the room's
        member count whenever the list was asked to be or had to be short."""
        names = room.roster
        limit = self.config.roster_limit if members_limit is None else members_limit
        entries = [self._roster_entry(name, user.name) for name in names[:limit]]
        if entries:
            entries = first_within(entries, roster_entry_size, self.config.answer_page_bytes)
        cut = len(entries) < len(names)
        count = len(room.members) if members_limit is not None or cut else None
        return tuple(entries), count

    def _member_audience(self, room: Room, user: User) -> Iterable[Session]:
        """Who hears of ``user`` joining or leaving ``room``: its loud sessions, except
        what would show that a user who looks offline is active — while the user is
        invisible only its own sessions, and never the users it blocked."""
        if user.record.status == Status.INVISIBLE:
            return [s for s in user.sessions if s in room.loud]
        if not any(c.blocked for c in user.contacts.values()):
            return room.loud
        return [s for s in room.loud
                if s.user is None or not user.has_blocked(s.user.name)]

    def _introduce(self, room: Room, user: User) -> None:
        """The new member's presence to the others: they watch the user from now on.
        An invisible user (who looks offline) is not announced."""
        if not user.sessions or user.record.status == Status.INVISIBLE:
            return
        framed = frame_binary(self._presence(user, user.status_for(None)))
        n = 0
        for other in room.loud:  # quiet sessions learn members from joined/members
            them = other.user
            if them is None or them is user or user.has_blocked(them.name):
                continue
            other.send_framed(framed)
            n += 1
        self.metrics.count_out("presence", n)

    def _add_member(self, room: Room, user: User) -> None:
        room.add_member(user.name)
        user.rooms.add(room.name)
        self._write(self.store.add_member(room.name, user.name))

    def leave(self, session: Session, frame: Leave) -> None:
        user = self._user(session)
        room = self.rooms.get(frame.room)
        if room is None or user.name not in room.members:
            raise ProtocolError(ErrorCode.NOT_MEMBER, f"you are not in {frame.room}")
        room.remove_member(user.name)
        user.rooms.discard(room.name)
        room.loud.difference_update(user.sessions)
        self._write(self.store.remove_member(room.name, user.name))
        self._send_sessions(user.sessions, encode(Left(room.name)), "left")
        data = encode(Member(room.name, user.name, MemberOp.LEAVE.value))
        self._send_sessions(self._member_audience(room, user), data, "member")

    def members(self, session: Session, frame: GetMembers) -> None:
        """A page of a group room's member list (the big-room extension)."""
        user = self._user(session)
        if frame.room.startswith(rules.DM_PREFIX):
            raise ProtocolError(ErrorCode.BAD_FRAME, "a DM room's members are its two names")
        room = self._readable_room(user, frame.room)
        after = None if frame.after is None else rules.normalize_name(frame.after)
        names, more = room.roster_page(after, frame.limit or DEFAULT_MEMBERS_PAGE)
        entries = [self._roster_entry(name, user.name) for name in names]
        kept = first_within(entries, roster_entry_size, self.config.answer_page_bytes)
        more = more or len(kept) < len(entries)
        page = MembersPage(room.name, tuple(kept), more)
        self.metrics.count_out(page.T)
        session.answer(one_page(lambda: encode(page)))

    # --- messages ------------------------------------------------------------------------

    def _target(
        self, user: User, room_name: str | None, to: str | None, *, create: bool
    ) -> tuple[Room | None, str, User | None]:
        """Resolve ``room`` or ``to`` of say/typing: (room or None, room name, DM peer).

        Checks DM privacy and membership; a block is not refused here (blocking is
        private: see :meth:`_hidden_from_peer`). A DM room is created only with ``create``
        (a say); typing to a DM that has no message yet creates nothing.
        """
        peer: User | None = None
        if to is not None:
            to_name = rules.normalize_name(to)
            if to_name == user.name:
                raise ProtocolError(ErrorCode.BAD_FRAME, "you cannot message yourself")
            peer = self.users.get(to_name)
            if peer is None:
                raise ProtocolError(ErrorCode.NO_SUCH_USER, f"no user {to_name!r}")
            room_name = rules.dm_room(user.name, to_name)
        assert room_name is not None
        if room_name.startswith(rules.DM_PREFIX):
            if peer is None:
                peer = self._check_dm_access(user, room_name)
            room = self.rooms.get(room_name)
            if room is None and create:
                self.admission.admit_new_dm(user, peer, self.rooms)
                room = self._create_room(room_name)
            if room is not None and create:
                for member in (user, peer):
                    if member.name not in room.members:
                        self._add_member(room, member)
            return room, room_name, peer
        room = self.rooms.get(room_name)
        if room is None or user.name not in room.members:
            raise ProtocolError(ErrorCode.NOT_MEMBER, f"join {room_name} first")
        return room, room_name, None

    def say(self, session: Session, frame: Say) -> None:
        user = self._user(session)
        if self._resend_ack(session, user, frame.id):
            return
        # Resolved without creating anything first: a say refused by a limit leaves no
        # new DM room behind.
        room, _, peer = self._target(user, frame.room, frame.to, create=False)
        self.admission.charge_message(user, peer, frame.id, room)
        if peer is not None and (room is None or len(room.members) < 2):
            room, _, _ = self._target(user, frame.room, frame.to, create=True)
        assert room is not None
        self._store_message(session, user, room, frame.text, MsgKind.TEXT, frame.id,
                            hidden=_hidden_from_peer(user, peer))

    def nudge(self, session: Session, frame: Nudge) -> None:
        user = self._user(session)
        if frame.id is not None and self._resend_ack(session, user, frame.id):
            return
        room, _, peer = self._target(user, None, frame.to, create=False)
        assert peer is not None
        retry_ms = self.nudge_pairs.check(user.name, peer.name, time.monotonic())
        if retry_ms and self.config.rate_limits:
            raise RateLimited(retry_ms, frame.id or "nudge",
                              "one nudge to the same person at a time: wait a moment")
        self.admission.charge_message(user, peer, frame.id or "nudge", room)
        room, _, _ = self._target(user, None, frame.to, create=True)
        assert room is not None
        self._store_message(session, user, room, "", MsgKind.NUDGE, frame.id,
                            hidden=_hidden_from_peer(user, peer))

    def _resend_ack(self, session: Session, user: User, client_id: str) -> bool:
        """A retried (sender, id): the original ack again, nothing stored or fanned out."""
        pending = self.inflight.get((user.name, client_id))
        if pending is not None:
            pending.retries.append(session)
            return True
        stored = self.store.find_message(user.name, client_id)
        if stored is None:
            return False
        session.send(encode_ack(stored))
        self.metrics.count_out("ack")
        return True

    def _store_message(
        self,
        session: Session,
        user: User,
        room: Room,
        text: str,
        kind: MsgKind,
        client_id: str | None,
        *,
        hidden: bool = False,
    ) -> None:
        seq = room.next_seq()
        stored = StoredMsg(room.name, seq, user.name, text, now_ms(), kind.value, client_id)
        data = encode_msg(stored)
        placeholder = None
        if hidden:  # stored with its mark; the sender's sessions see it as any other
            stored = StoredMsg(*_fields_of(stored)[:7], True)
            placeholder = encode_msg(hidden_placeholder(stored))
        try:
            commit = self.store.append(stored)
        except StoreError:
            # A store that refuses at once: the seq was never used.
            room.seq -= 1
            raise
        pending = Pending(stored, data, commit, session, time.perf_counter(),
                          placeholder=placeholder)
        room.pending.append(pending)
        if room.is_dm and not hidden and user.name not in room.wrote:
            room.wrote.add(user.name)
        if client_id is not None:
            self.inflight[(user.name, client_id)] = pending
        commit.add_done_callback(lambda _: self._on_commit(room))

    def _on_commit(self, room: Room) -> None:
        """Handle the room's messages whose commits completed, strictly in seq order."""
        pending_queue = room.pending
        metrics = self.metrics
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
                self._fan_out(room, pending.data, "msg", skip=pending.sender)
            else:
                self._fan_out_hidden(room, pending)

    def _fan_out_hidden(self, room: Room, pending: Pending) -> None:
        """A DM message its recipient blocked the sender for: the message to the sender's
        other sessions, the placeholder to the recipient's (the room stays gapless)."""
        sender = pending.msg.sender
        for name in room.members:
            if name == sender:
                self._send_sessions(self.users[name].sessions, pending.data, "msg",
                                    skip=pending.sender)
            else:
                assert pending.placeholder is not None
                self._send_sessions(self.users[name].sessions, pending.placeholder, "msg")

    def _as_seen_by(self, user: User, room: Room, msgs: list[StoredMsg]) -> list[StoredMsg]:
        """Stored messages as ``user`` may see them: hidden ones are placeholders to the
        user they are hidden from, and plain messages to their sender."""
        if not room.is_dm or not any(m.hidden for m in msgs):
            return msgs
        return [m if not m.hidden else
                StoredMsg(*_fields_of(m)[:7]) if m.sender == user.name else hidden_placeholder(m)
                for m in msgs]

    def typing(self, session: Session, frame: SendTyping) -> None:
        user = self._user(session)
        room, room_name, peer = self._target(user, frame.room, frame.to, create=False)
        self.admission.charge(user, "typing", "typing")
        if user.record.status == Status.INVISIBLE:
            return  # "is typing" would show that the user is there, as a read mark would
        data = encode(Typing(room_name, user.name))
        if peer is not None:
            if _hidden_from_peer(user, peer) or user.has_blocked(peer.name):
                return  # dropped: across a block each looks offline to the other
            self._send_sessions(peer.sessions, data, "typing")
        elif room is not None:
            self._fan_out(room, data, "typing", skip_user=user.name)

    # --- history and read marks -----------------------------------------------------------

    def _readable_room(self, user: User, room_name: str) -> Room:
        if room_name.startswith(rules.DM_PREFIX):
            pair = rules.dm_members(room_name)
            if pair is None or user.name not in pair:
                raise ProtocolError(ErrorCode.FORBIDDEN, f"{room_name} is not your conversation")
        room = self.rooms.get(room_name)
        if room is None:
            raise ProtocolError(ErrorCode.NO_SUCH_ROOM, f"no room {room_name}")
        if not room.is_dm and user.name not in room.members:
            raise ProtocolError(ErrorCode.NOT_MEMBER, f"join {room_name} first")
        return room

    def history(self, session: Session, frame: GetHistory) -> None:
        user = self._user(session)
        room = self._readable_room(user, frame.room)
        # Read from the store when the session is ready to send it (Session.answer).
        session.answer(one_page(lambda: encode(self._history_page(user, room, frame))))

    def _history_page(self, user: User, room: Room, frame: GetHistory) -> History:
        """A ``history`` answer for ``user``: at most ``limit`` messages and
        ``page_bytes`` bytes."""
        limit = frame.limit or self.config.history_limit
        budget = self.config.answer_page_bytes
        if frame.after is not None:
            msgs = self.store.history_after(room.name, frame.after, limit + 1)
            more = len(msgs) > limit
            del msgs[limit:]
            kept = first_within(msgs, stored_msg_size, budget) if msgs else msgs
        else:
            msgs = self.store.history_before(room.name, frame.before, limit + 1)
            more = len(msgs) > limit
            del msgs[: max(0, len(msgs) - limit)]  # the extra one is the oldest
            kept = last_within(msgs, stored_msg_size, budget) if msgs else msgs
        self.metrics.count_out("history")
        shown = self._as_seen_by(user, room, kept)
        return History(room.name, tuple(shown), more or len(kept) < len(msgs))

    def read(self, session: Session, frame: MarkRead) -> None:
        user = self._user(session)
        room = self._readable_room(user, frame.room)
        seq = min(frame.seq, room.seq)
        if seq <= user.reads.get(room.name, 0):
            return  # read marks only move forward
        user.reads[room.name] = seq
        self._write(self.store.set_read(user.name, room.name, seq))
        data = encode(Read(room.name, user.name, seq))
        self._send_sessions(user.sessions, data, "read", skip=session)
        if room.is_dm and user.record.status != Status.INVISIBLE:
            # The "seen" mark goes to the peer unless it would show the user is there:
            # invisible, or a block either way (each looks offline to the other).
            for name in room.members:
                peer = self.users[name]
                if name != user.name and not peer.has_blocked(user.name) \
                        and not user.has_blocked(name):
                    self._send_sessions(peer.sessions, data, "read")

    # --- contacts ----------------------------------------------------------------------

    def contact(self, session: Session, frame: ContactRequest) -> None:
        user = self._user(session)
        self.admission.charge(user, "contact", "contact")
        name = rules.normalize_name(frame.name)
        if name == user.name:
            raise ProtocolError(ErrorCode.BAD_FRAME, "you cannot be your own contact")
        target = self.users.get(name)
        if target is None:
            raise ProtocolError(ErrorCode.NO_SUCH_USER, f"no user {name!r}")
        current = user.contacts.get(name)
        in_list = current is not None and current.in_list
        blocked = current is not None and current.blocked
        op = ContactOp(frame.op)
        if op is ContactOp.ADD:
            newly_added = not in_list
            self._put_contact(user, name, in_list=True, blocked=blocked)
        elif op is ContactOp.REMOVE:
            self._put_contact(user, name, in_list=False, blocked=blocked)
        else:
            now_blocked = op is ContactOp.BLOCK
            self._put_contact(user, name, in_list=in_list, blocked=now_blocked)
            if now_blocked != blocked and target.sessions and self._is_watcher(user, name):
                # The blocked user sees the blocker go offline; an unblocked one sees them back
                # (a quiet session only if it watches through its contact list).
                listed = name in self.listed_by.get(user.name, ())
                sessions = [s for s in target.sessions if listed or not s.quiet]
                status = user.status_for(name)
                self._send_sessions(sessions, self._presence(user, status), "presence")
        entry = self._roster_entry(name, user.name, blocked=user.has_blocked(name))
        echo = Contact(op.value, **_entry_keys(entry))
        self._send_sessions(user.sessions, encode(echo), "contact")
        if op is ContactOp.ADD and newly_added and not target.has_blocked(user.name):
            mine = self._roster_entry(user.name, name)
            notice = Contact(ContactOp.ADDED_YOU.value, **_entry_keys(mine))
            self._send_sessions(target.sessions, encode(notice), "contact")

    def _put_contact(
        self, user: User, name: str, *, in_list: bool, blocked: bool = False
    ) -> None:
        record = ContactRecord(user.name, name, in_list, blocked)
        if in_list or blocked:
            user.contacts[name] = record
        else:
            user.contacts.pop(name, None)
        owners = self.listed_by.setdefault(name, set())
        if in_list:
            owners.add(user.name)
        else:
            owners.discard(user.name)
            if not owners:
                del self.listed_by[name]
        self._write(self.store.put_contact(record))

    def _roster_entry(self, name: str, viewer: str, *, blocked: bool | None = None) -> RosterEntry:
        user = self.users.get(name)
        if user is None:  # a default contact that has not signed in yet
            return RosterEntry(name, name, Status.OFFLINE.value, "", False, blocked)
        record = user.record
        status = user.status_for(viewer)
        return RosterEntry(
            name, record.display, status, _psm_seen(record.psm, status), record.bot, blocked
        )

    # --- delivery ----------------------------------------------------------------------

    def _user(self, session: Session) -> User:
        user = session.user
        if user is None:  # the session layer only hands over frames after welcome
            raise ProtocolError(ErrorCode.HELLO_REQUIRED, "send hello first")
        return user

    def _send_sessions(
        self, sessions: Iterable[Session], data: bytes, t: str, *, skip: Session | None = None
    ) -> None:
        framed = frame_binary(data)
        n = 0
        for session in sessions:
            if session is not skip:
                session.send_framed(framed)
                n += 1
        self.metrics.count_out(t, n)

    def _fan_out(
        self,
        room: Room,
        data: bytes,
        t: str,
        *,
        skip: Session | None = None,
        skip_user: str | None = None,
    ) -> None:
        """The same bytes to every session of every member (but ``skip`` / ``skip_user``)."""
        users = self.users
        framed = frame_binary(data)  # the same WebSocket frame for every recipient
        n = 0
        for name in room.members:
            if name == skip_user:
                continue
            for session in users[name].sessions:
                if session is not skip:
                    session.send_framed(framed)
                    n += 1
        self.metrics.count_out(t, n)


def _hidden_from_peer(sender: User, peer: User | None) -> bool:
    """Whether a DM message from ``sender`` is hidden from ``peer``: the peer blocked them.
    Blocking is private: the sender is acked as usual and never told."""
    return peer is not None and peer.has_blocked(sender.name)


def _fields_of(m: StoredMsg) -> tuple[Any, ...]:
    return (m.room, m.seq, m.sender, m.text, m.ts, m.kind, m.id, m.hidden)


def hidden_placeholder(m: StoredMsg) -> StoredMsg:
    """What the blocker receives in place of a hidden message: its place in the room
    (seq, ts, sender) and nothing it carried."""
    return StoredMsg(m.room, m.seq, m.sender, "", m.ts, MsgKind.TEXT.value, None, True)


def _entry_keys(entry: RosterEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "display": entry.display,
        "status": entry.status,
        "psm": entry.psm,
        "bot": entry.bot,
        "blocked": entry.blocked,
    }


def _log_failed_write(commit: Commit) -> None:
    if commit.cancelled():
        return
    exc = commit.exception()
    if exc is not None:
        log.error("a state write failed: %s", exc)
