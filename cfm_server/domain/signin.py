"""Sign-in and sign-up: who a connection is, and what it learns first (``welcome``).

A known handle signs in with its token. A new handle is claimed by its first hello
(within ``registration``: open, by invite, or closed): its identity is stored first and
its ``welcome`` waits for that commit, so a token is never handed out for an account
the next start would not know. A known user's hello that changes their record (a
status, a display name, a personal message) waits the same way: its ``welcome`` and
what watchers are told follow the write's commit, and if the write fails the record goes
back to what the store holds and the hello is answered ``error{internal, retry_ms}``,
then the connection closes with 1013 (durable.py), as a hello the server cannot answer
now. Signing in with the stored status instead would show an ``invisible`` sign-in
online. A claim may carry the client's ``claim``, a secret that becomes the new token:
the same hello tried again after its answer was lost (the account stored all the same)
signs in with it instead of finding the handle taken. The server's own bots (the AI
contacts) get their identities and tokens from ``provision_bot``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import itertools
import secrets
import time
from dataclasses import dataclass

from cfm_common import PROTOCOL_VERSION, __version__, rules
from cfm_common.errors import ProtocolError
from cfm_common.frames import Hello, RoomState, Welcome
from cfm_common.rules import CloseCode, ErrorCode, Status
from cfm_server import oplog
from cfm_server.domain.changes import unread_counts
from cfm_server.domain.contacts import ContactHandler
from cfm_server.domain.durable import confirm, settled
from cfm_server.domain.ports import Connection
from cfm_server.domain.presence import PresenceHandler, shown
from cfm_server.domain.world import World, now_ms
from cfm_server.invites import Invite, InviteBook, InviteError
from cfm_server.state import User
from cfm_server.store import Commit, UserRecord

SERVER_NAME = f"cfm/{__version__}"
# Why sessions end when the operator replaces a token or removes an account (4003).
TOKEN_REPLACED = "token replaced by the operator"
ACCOUNT_REMOVED = "account removed by the operator"
# Why a hello whose change of the record could not be stored closes its connection.
NOT_SIGNED_IN = "could not store the sign-in's status"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def opens(user: User, token: str | None) -> bool:
    """Whether ``token`` signs ``user`` in (a hello without one is ``name_taken``)."""
    return token is not None and hmac.compare_digest(hash_token(token),
                                                     user.record.token_hash)


def end_sessions(user: User, reason: str) -> int:
    """Close every session of ``user`` here with 4003 (the token they signed in with no
    longer stands: the operator replaced it, or removed the account); how many. They
    cannot come back with it, and a client does not retry after 4003."""
    sessions = list(user.sessions)
    for session in sessions:
        session.close(CloseCode.BAD_TOKEN, reason)
    return len(sessions)


@dataclass(slots=True)
class SignUp:
    """A new identity on its way to the store; its welcome waits for ``commit``."""

    record: UserRecord
    token: str
    invite: Invite | None
    commit: Commit


@dataclass(slots=True)
class SignInWrite:
    """A known user's sign-in whose hello changed their record, being stored: its
    welcome waits for ``commit`` (the session finishes it with
    :meth:`SignInHandler.finish_sign_in`); ``before`` is what watchers saw until then."""

    user: User
    token: str
    hello: Hello
    before: tuple[str, ...]
    commit: Commit


@dataclass(slots=True)
class Provisioned:
    """A server bot's token, valid once ``commit`` is durable (``provision_bot``)."""

    token: str
    commit: Commit


def _nothing() -> None:
    pass


class SignInHandler:
    def __init__(self, world: World, presence: PresenceHandler,
                 contacts: ContactHandler) -> None:
        self.world = world
        self.presence = presence
        self.contacts = contacts
        # Set by the server when registration is by invite.
        self.invites: InviteBook | None = None
        # New handles whose identity is being stored (see sign_in).
        self.signing_up: dict[str, SignUp] = {}
        self._session_ids = itertools.count(1)
        # Unique among this process's sessions; a cluster node adds its name, since a
        # user's sessions on two nodes must not share an id (welcome.session).
        self.session_prefix = "s"
        self.node: str | None = None  # a cluster node's id, for the sign-in log line

    def sign_in(self, session: Connection, hello: Hello) -> Welcome | SignUp | SignInWrite:
        """Sign ``session`` in: a Welcome; for a new handle a SignUp whose record is
        being stored (the session finishes it with :meth:`finish_sign_up` once that
        commit is durable, or :meth:`drop_sign_up` if it fails); for a hello that
        changes a known user's record, a SignInWrite (:meth:`finish_sign_in`)."""
        world = self.world
        name = rules.normalize_name(hello.name)
        if name in world.reserved:
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"{name!r} is reserved", "hello")
        user = world.users.get(name)
        if user is None:
            world.admission.check_new_handle(name)
            if name in self.signing_up:
                raise ProtocolError(ErrorCode.NAME_TAKEN,
                                    f"{name!r} is being claimed right now", "hello")
            world.admission.charge_signup(session.ip)
            return self._begin_sign_up(name, hello)
        token = hello.token
        if token is None and hello.claim is not None and opens(user, hello.claim):
            # This client's claim tried again: its account was stored, the answer lost
            # (a cut connection; a cluster node that lost Redis's reply). The claim is
            # the account's token, which nobody else knows.
            token = hello.claim
        if token is None:
            raise ProtocolError(
                ErrorCode.NAME_TAKEN, f"{name!r} is taken (sign in with its token)", "hello"
            )
        if not opens(user, token):
            raise ProtocolError(ErrorCode.BAD_TOKEN, f"wrong token for {name!r}", "hello")
        world.admission.charge_signin(user)
        return self._change_record(session, user, hello, token)

    def _begin_sign_up(self, name: str, hello: Hello) -> SignUp:
        """Store a new identity. Until its commit it is nobody: not in ``users`` (a DM to
        it is ``no_such_user``), its name held against a second claim, its session
        attached to nothing, so no frame goes out before its welcome."""
        world = self.world
        try:
            if hello.display is not None:
                world.admission.check_display(name, hello.display)
            invite = self._admit_new_user(hello)
        except ProtocolError as exc:
            oplog.sign_up_refused(name, exc.msg)
            raise
        if invite is not None and self.invites is not None:
            # Counted now, in the same transaction as the identity: both or neither
            # (live, given back by drop_sign_up).
            self.invites.spend(invite)
            world.writes.count_invite_use(invite.nonce, invite.uses)
        # The client's claim (a secret it made, 256 bits at least) is the token: a retry
        # of this hello whose answer is lost signs in with it (sign_in above).
        token = hello.claim or secrets.token_urlsafe(32)
        record = UserRecord(
            name=name,
            token_hash=hash_token(token),
            display=hello.display or hello.name,
            psm=hello.psm or "",
            status=hello.status or Status.ONLINE.value,
            bot=bool(hello.bot),
            created_ms=now_ms(),
        )
        commit = world.writes.create_user(record)
        sign_up = SignUp(record, token, invite, commit)
        self.signing_up[name] = sign_up
        return sign_up

    def finish_sign_up(self, session: Connection, sign_up: SignUp, hello: Hello) -> Welcome:
        """The identity is durable: it becomes a user, and the session signs in."""
        name = sign_up.record.name
        self.signing_up.pop(name, None)
        user = User(sign_up.record)
        self.world.users[name] = user
        invite = sign_up.invite
        oplog.signed_up(name, sign_up.record.bot, invite and invite.nonce,
                        self.invites.used.get(invite.nonce, 0) if invite and self.invites else 0,
                        invite.uses if invite else 0)
        for contact_name in self.world.config.default_contacts:
            contact_name = rules.normalize_name(contact_name)
            if contact_name != name:
                settled(*self.contacts.put_contact(user, contact_name, in_list=True))
        # The record was made from the hello: nothing of it changes now.
        return self._attach(session, user, hello, sign_up.token, changed=False,
                            before=self.presence.view(user))

    def drop_sign_up(self, sign_up: SignUp) -> None:
        """The identity's commit failed: the handle (and the invite's use) is free again."""
        self.signing_up.pop(sign_up.record.name, None)
        if sign_up.invite is not None and self.invites is not None:
            self.invites.refund(sign_up.invite)

    def _change_record(self, session: Connection, user: User, hello: Hello,
                       token: str) -> Welcome | SignInWrite:
        """Signed in at once when the hello changes nothing of the record; else the
        change is live now (as a ``presence`` frame's) and told once it is durable."""
        world = self.world
        record = user.record
        if hello.display is not None and hello.display != record.display:
            world.admission.check_display(user.name, hello.display)
        before = self.presence.view(user)
        was = shown(record)
        for attr in ("display", "psm", "status", "bot"):
            value = getattr(hello, attr)
            if value is not None:
                setattr(record, attr, value)
        if shown(record) == was:
            return self._attach(session, user, hello, token, changed=False, before=before)
        commit = world.writes.put_user(record)
        settle = self.presence.track(user, was)
        self.presence.note_visibility(user)
        # A failed write: the record back and ``internal`` (ref "hello") to the session
        # (finish_sign_in then closes it); it was attached to nothing, so nobody else
        # notices.
        confirm(session, "hello", commit, world.metrics, _nothing, settle)
        return SignInWrite(user, token, hello, before, commit)

    def finish_sign_in(self, session: Connection, pending: SignInWrite) -> Welcome | None:
        """Once the commit of the hello's change is done: the session signs in if it is
        durable; if not (``confirm`` answered it), it closes with 1013, as a hello the
        server cannot answer now, and None. A token the operator replaced meanwhile, or
        a user removed, closes it with 4003, as ``end_sessions`` would."""
        commit, user = pending.commit, pending.user
        if commit.cancelled():
            return None  # the server is closing
        if commit.exception() is not None:
            session.close(CloseCode.TRY_AGAIN_LATER, NOT_SIGNED_IN)
            return None
        if self.world.users.get(user.name) is not user:
            session.close(CloseCode.BAD_TOKEN, ACCOUNT_REMOVED)
            return None
        if not hmac.compare_digest(hash_token(pending.token), user.record.token_hash):
            session.close(CloseCode.BAD_TOKEN, TOKEN_REPLACED)
            return None
        return self._attach(session, user, pending.hello, pending.token, changed=True,
                            before=pending.before)

    def _attach(self, session: Connection, user: User, hello: Hello, token: str, *,
                changed: bool, before: tuple[str, ...]) -> Welcome:
        world = self.world
        session.id = f"{self.session_prefix}{next(self._session_ids)}"
        session.user = user
        session.quiet = bool(hello.quiet)
        first = not user.sessions
        world.session_in(user, session)
        world.metrics.sessions.inc()
        if user.name in world.admission.server_bots:
            # Its read marks and answers follow other users' traffic, which must not
            # get it closed: no per-kind buckets (its bytes are still budgeted).
            session.limits.lift_buckets()
        self.presence.session_started(user, session, first=first, changed=changed,
                                      before=before)
        oplog.signed_in(user.name, session.id, self.node)
        return self._welcome(session, user, token)

    def _admit_new_user(self, hello: Hello) -> Invite | None:
        """Whether ``registration`` lets a new handle be claimed; the invite it used."""
        mode = self.world.config.registration
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

    def provision_bot(self, name: str, display: str, psm: str,
                      status: str) -> Provisioned | None:
        """A fresh token for a bot this server runs itself (the AI contacts), on its way
        to the store.

        Creates the identity if it is new, and replaces the token of an existing bot
        identity (the server owns these; a lost token file must not lock a persona
        out). The handle is the server's bot at once (``add_server_bot``: nobody can
        claim it meanwhile); the identity or its new token becomes live only once its
        write is durable (the returned commit: the token may be handed out then), so a
        failed write (a full disk, Redis out of reach) leaves the live state as the
        store has it, and the caller provisions again later. None, and nothing
        changed, when a person already holds the handle.
        """
        world = self.world
        name = rules.normalize_name(name)
        user = world.users.get(name)
        if user is not None and not user.record.bot:
            return None
        token = secrets.token_urlsafe(32)
        if user is None:
            record = UserRecord(name, hash_token(token), display, psm, status, True, now_ms())
            # (A cluster node's create is refused when another node made it first.)
            commit = world.writes.create_user(record)
        else:
            record = dataclasses.replace(user.record, token_hash=hash_token(token))
            commit = world.writes.put_user(record)
        world.admission.add_server_bot(name, {display, record.display})

        def durable(done: Commit) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            live = world.users.get(name)  # (a cluster node may have applied it already)
            if live is None:
                world.users[name] = User(record)
            elif live.record.bot:
                live.record.token_hash = record.token_hash

        commit.add_done_callback(durable)
        return Provisioned(token, commit)

    def _welcome(self, session: Connection, user: User, token: str) -> Welcome:
        rooms = []
        for room_name in sorted(user.rooms):
            room = self.world.rooms[room_name]
            # The last committed seq (see RoomHandler.join): one in flight comes by fan-out.
            read = user.reads.get(room_name, 0)
            unread, mentions = unread_counts(self.world, user, room, read)
            rooms.append(RoomState(room_name, room.durable_seq, read, room.epoch, unread,
                                   mentions))
        entry = self.presence.roster_entry
        contacts = tuple(
            entry(contact.name, user.name, blocked=contact.blocked)
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
            limits=self.world.config.client_limits(),
            rooms=tuple(rooms),
            contacts=contacts,
        )

    def sign_out(self, session: Connection) -> None:
        user = session.user
        if user is None:
            return
        session.user = None
        self.world.session_out(user, session)
        self.world.metrics.sessions.dec()
        self.presence.session_ended(user, session)
