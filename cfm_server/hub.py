"""The hub: what sessions and the server call, over the rules in ``cfm_server.domain``.

A thin facade that wires the domain's handlers together (one module per domain, see
the package's docstring): sessions hand it decoded frames (``Hub.handle``, a handler per
frame type), and the server signs sessions in and out, loads the live state and
provisions its bots through it. Handlers answer with frames queued on the session
(never awaited: see ``session.py``) or raise ``ProtocolError`` for the session to turn
into an ``error`` frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from cfm_common import rules
from cfm_common.errors import ProtocolError
from cfm_common.frames import (
    ClientFrame,
    ContactRequest,
    Delete,
    Edit,
    GetHistory,
    GetMembers,
    Hello,
    Join,
    Leave,
    MarkRead,
    Nudge,
    React,
    Say,
    Search,
    SendTyping,
    SetModerators,
    SetPresence,
    Unreact,
    Welcome,
)
from cfm_common.rules import ErrorCode
from cfm_server.admission import RateLimited
from cfm_server.config import ServerConfig
from cfm_server.domain.changes import ChangeHandler
from cfm_server.domain.contacts import ContactHandler
from cfm_server.domain.delivery import Delivery
from cfm_server.domain.messages import MessageHandler
from cfm_server.domain.notices import Notices
from cfm_server.domain.ports import Connection
from cfm_server.domain.presence import PresenceHandler
from cfm_server.domain.removal import drop_dm_rooms, forget_user, tell_removal
from cfm_server.domain.rooms import RoomHandler
from cfm_server.domain.search import SearchHandler
from cfm_server.domain.signin import (
    ACCOUNT_REMOVED,
    Provisioned,
    SignInHandler,
    SignInWrite,
    SignUp,
    end_sessions,
    hash_token,
)
from cfm_server.domain.world import Reads, Snapshot, World
from cfm_server.domain.writes import Writes
from cfm_server.invites import InviteBook
from cfm_server.metrics import Metrics
from cfm_server.state import User
from cfm_server.store import Store

log = logging.getLogger(__name__)

__all__ = ["Hub", "RateLimited", "SignInWrite", "SignUp", "hash_token"]

# Errors that on a cluster node may only mean "not known here yet": a user, room or
# membership another node made a moment ago (Hub.catch_up).
MAYBE_NOT_YET = frozenset({ErrorCode.NO_SUCH_USER, ErrorCode.NO_SUCH_ROOM,
                           ErrorCode.NOT_MEMBER, ErrorCode.FORBIDDEN})


class NodeHooks(Protocol):
    """What a cluster node (``cfm_server.cluster.node``) does around sign-in and out."""

    def before_sign_in(self, name: str, ip: str | None, token: str | None) -> Awaitable[None]:
        """Before a hello for ``name`` from ``ip`` with ``token`` is answered (raises what
        makes it unanswerable)."""

    def hello_done(self, name: str) -> None:
        """A hello of ``name`` that ``before_sign_in`` prepared for was answered."""

    def after_sign_in(self, user: User) -> None:
        """A session of ``user`` signed in."""

    def after_sign_out(self, user: User) -> None:
        """A session of ``user`` ended."""

    def catch_up(self) -> Awaitable[None]:
        """Apply every change the other nodes made so far (never raises)."""

    def barrier(self, user: str, frame: ClientFrame) -> Awaitable[None] | None:
        """What ``frame`` waits for: the changes other nodes made before it arrived
        (None: nothing; never raises)."""

    def write_mark(self) -> object:
        """Where the node's writes of shared records stand (for ``written_since``)."""

    def written_since(self, mark: object) -> Awaitable[None] | None:
        """Done once Redis has the writes asked for since ``mark``; None: none."""

    def write_room(self) -> Awaitable[None] | None:
        """What a session waits for before it reads its next frame: the node's backlog
        of writes going out (None: no backlog)."""


class Hub:
    def __init__(
        self, config: ServerConfig, store: Store, metrics: Metrics, *,
        writes: Writes | None = None,
        reads: Reads | None = None,
        delivery: Callable[[World], Delivery] = Delivery,
        messages: Callable[[World, Delivery, RoomHandler], MessageHandler] = MessageHandler,
        node: NodeHooks | None = None,
    ) -> None:
        """A single node's hub over ``store``; a cluster node gives the parts that
        differ (``ClusterNode.hub_parts``: writes, reads, delivery, messages)."""
        self.config = config
        self.store = store
        self.metrics = metrics
        self.node = node
        # Asked after each frame a session handles (None on a single node, whose writes
        # run in its own loop: a busy loop reads its clients more slowly by itself).
        self.write_room: Callable[[], Awaitable[None] | None] | None = (
            None if node is None else node.write_room)
        self.world = world = World(config, store, metrics, writes, reads)
        self.users = world.users
        self.rooms = world.rooms
        self.admission = world.admission
        self.delivery = delivery(world)
        self.presence = PresenceHandler(world, self.delivery)
        self.contacts = ContactHandler(world, self.delivery, self.presence)
        self.room_handler = RoomHandler(world, self.delivery, self.presence)
        self.messages = messages(world, self.delivery, self.room_handler)
        self.search = SearchHandler(world, self.room_handler)
        self.signin = SignInHandler(world, self.presence, self.contacts)
        self.changes = ChangeHandler(world, self.delivery, self.room_handler, self.messages)
        self.notices = Notices(world)
        self.room_handler.on_created.append(self.changes.room_created)
        self.room_handler.on_dropped.append(self.changes.room_dropped)
        self._handlers: dict[type[Any], Callable[[Connection, Any], None]] = {
            SetPresence: self.presence.set_presence,
            Join: self.room_handler.join,
            Leave: self.room_handler.leave,
            GetMembers: self.room_handler.members,
            Say: self.messages.say,
            SendTyping: self.messages.typing,
            Nudge: self.messages.nudge,
            GetHistory: self.messages.history,
            MarkRead: self.messages.read,
            ContactRequest: self.contacts.contact,
            Edit: self.changes.edit,
            Delete: self.changes.delete,
            React: self.changes.react,
            Unreact: self.changes.unreact,
            SetModerators: self.changes.set_moderators,
            Search: self.search.search,
        }

    @property
    def invites(self) -> InviteBook | None:
        """Set by the server when registration is by invite."""
        return self.signin.invites

    @invites.setter
    def invites(self, book: InviteBook | None) -> None:
        self.signin.invites = book

    def load(self, source: Snapshot | None = None) -> None:
        """Build the live state from the store's snapshot (or ``source``: a cluster
        node's); make sure #lobby exists."""
        self.world.load(source)
        self.changes.load(source)
        if source is None:  # (a cluster's nodes tell removals at once: no notices)
            self.notices.load(list(self.store.load_notices()))
        presence = self.presence
        self.metrics.set_gauge_sources(
            rooms=lambda: len(self.rooms),
            users_online=lambda: presence.online_users - len(presence.invisible_online),
        )
        log.info("hub loaded %d users and %d rooms", len(self.users), len(self.rooms))

    def handle(self, session: Connection, frame: ClientFrame) -> None:
        handler = self._handlers.get(type(frame))
        if handler is None:  # a second hello
            raise ProtocolError(ErrorCode.BAD_FRAME, "already signed in", frame.T)
        handler(session, frame)

    def barrier(self, session: Connection, frame: ClientFrame) -> Awaitable[None] | None:
        """On a cluster node, what to wait for before handling ``frame``: a change made on
        another node before it arrived (a block, a join, a message it names) must be
        applied here first (cluster/barrier.py). None on a single node, and for the
        frames whose answer no other user's change can alter."""
        node = self.node
        if node is None:
            return None
        user = session.user
        return None if user is None else node.barrier(user.name, frame)

    def write_mark(self) -> object | None:
        """None on a single node (its answers go out before the commit, as always); on a
        cluster node, what ``written_since`` compares with."""
        return None if self.node is None else self.node.write_mark()

    def written_since(self, mark: object) -> Awaitable[None] | None:
        """On a cluster node, what the answers of a frame wait for: the shared records
        it changed, in Redis (a client told "done" may ask another node next, whose read
        barrier must find the change there). None: nothing to wait for."""
        return None if self.node is None else self.node.written_since(mark)

    def catch_up(self, code: str) -> Awaitable[None] | None:
        """On a cluster node, for an error that may only mean "not known here yet" (a
        user, room or membership another node made a moment ago): what to wait for
        before handling the frame once more. None on a single node."""
        if self.node is None or code not in MAYBE_NOT_YET:
            return None
        return self.node.catch_up()

    # --- sign-in and sign-out (see domain/signin.py) ------------------------------------

    def before_sign_in(self, hello: Hello, ip: str | None = None) -> Awaitable[None] | None:
        """What to wait for before ``sign_in`` (a cluster node reads the user's rooms,
        counts a sign-up from ``ip``); None on a single node."""
        if self.node is None:
            return None
        # (A claim tried again is the account's token: signin.sign_in.)
        return self.node.before_sign_in(rules.normalize_name(hello.name), ip,
                                        hello.token or hello.claim)

    def hello_done(self, hello: Hello) -> None:
        """A hello ``before_sign_in`` was asked about has been answered or dropped."""
        if self.node is not None:
            self.node.hello_done(rules.normalize_name(hello.name))

    def sign_in(self, session: Connection, hello: Hello) -> Welcome | SignUp | SignInWrite:
        signed = self.signin.sign_in(session, hello)
        if self.node is not None and session.user is not None:
            self.node.after_sign_in(session.user)
        return signed

    async def finish_sign_in(self, session: Connection, pending: SignInWrite) -> Welcome | None:
        """A hello that changed the user's record signs in once that is durable; None
        if it was not (the session was answered and is closing: domain/signin.py)."""
        await asyncio.wait((pending.commit,))
        welcome = self.signin.finish_sign_in(session, pending)
        if welcome is not None and self.node is not None and session.user is not None:
            self.node.after_sign_in(session.user)
        return welcome

    def finish_sign_up(self, session: Connection, sign_up: SignUp, hello: Hello) -> Welcome:
        welcome = self.signin.finish_sign_up(session, sign_up, hello)
        if self.node is not None and session.user is not None:
            self.node.after_sign_in(session.user)
        return welcome

    def after_welcome(self, session: Connection) -> None:
        """Right after a session's ``welcome``: what was kept for its user of accounts
        removed while they were away (domain/notices.py)."""
        self.notices.after_welcome(session)

    def remove_user(self, user: User) -> int:
        """A user the operator removed from a single node's store while it runs
        (control.py): the sessions that could see it are told (domain/removal.py), it
        leaves the live state, and its own sessions close with 4003; how many."""
        world = self.world
        tell_removal(world, self.delivery, self.presence, user)
        _, rooms = forget_user(world, user.name)
        drop_dm_rooms(world, rooms)
        self.notices.load(list(self.store.load_notices()))  # for those away now
        return end_sessions(user, ACCOUNT_REMOVED)

    def drop_sign_up(self, sign_up: SignUp) -> None:
        self.signin.drop_sign_up(sign_up)

    def sign_out(self, session: Connection) -> None:
        user = session.user
        self.signin.sign_out(session)
        if self.node is not None and user is not None:
            self.node.after_sign_out(user)

    def provision_bot(self, name: str, display: str, psm: str,
                      status: str) -> Provisioned | None:
        return self.signin.provision_bot(name, display, psm, status)
