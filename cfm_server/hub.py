"""The hub: what sessions and the server call, over the rules in ``cfm_server.domain``.

A thin facade that wires the domain's handlers together (one module per domain, see
the package's docstring): sessions hand it decoded frames (``Hub.handle``, a handler per
frame type), and the server signs sessions in and out, loads the live state and
provisions its bots through it. Handlers answer with frames queued on the session
(never awaited: see ``session.py``) or raise ``ProtocolError`` for the session to turn
into an ``error`` frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cfm_common.errors import ProtocolError
from cfm_common.frames import (
    ClientFrame,
    ContactRequest,
    GetHistory,
    GetMembers,
    Hello,
    Join,
    Leave,
    MarkRead,
    Nudge,
    Say,
    Search,
    SendTyping,
    SetPresence,
    Welcome,
)
from cfm_common.rules import ErrorCode
from cfm_server.admission import RateLimited
from cfm_server.config import ServerConfig
from cfm_server.domain.contacts import ContactHandler
from cfm_server.domain.delivery import Delivery
from cfm_server.domain.messages import MessageHandler
from cfm_server.domain.ports import Connection
from cfm_server.domain.presence import PresenceHandler
from cfm_server.domain.rooms import RoomHandler
from cfm_server.domain.search import SearchHandler
from cfm_server.domain.signin import SignInHandler, SignUp, hash_token
from cfm_server.domain.world import World
from cfm_server.invites import InviteBook
from cfm_server.metrics import Metrics
from cfm_server.store import Store

log = logging.getLogger(__name__)

__all__ = ["Hub", "RateLimited", "SignUp", "hash_token"]


class Hub:
    def __init__(self, config: ServerConfig, store: Store, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.world = world = World(config, store, metrics)
        self.users = world.users
        self.rooms = world.rooms
        self.admission = world.admission
        self.delivery = Delivery(world)
        self.presence = PresenceHandler(world, self.delivery)
        self.contacts = ContactHandler(world, self.delivery, self.presence)
        self.room_handler = RoomHandler(world, self.delivery, self.presence)
        self.messages = MessageHandler(world, self.delivery, self.room_handler)
        self.search = SearchHandler(world, self.room_handler)
        self.signin = SignInHandler(world, self.presence, self.contacts)
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
            Search: self.search.search,
        }

    @property
    def invites(self) -> InviteBook | None:
        """Set by the server when registration is by invite."""
        return self.signin.invites

    @invites.setter
    def invites(self, book: InviteBook | None) -> None:
        self.signin.invites = book

    def load(self) -> None:
        """Build the live state from the store's snapshot; make sure #lobby exists."""
        self.world.load()
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

    # --- sign-in and sign-out (see domain/signin.py) ------------------------------------

    def sign_in(self, session: Connection, hello: Hello) -> Welcome | SignUp:
        return self.signin.sign_in(session, hello)

    def finish_sign_up(self, session: Connection, sign_up: SignUp, hello: Hello) -> Welcome:
        return self.signin.finish_sign_up(session, sign_up, hello)

    def drop_sign_up(self, sign_up: SignUp) -> None:
        self.signin.drop_sign_up(sign_up)

    def sign_out(self, session: Connection) -> None:
        self.signin.sign_out(session)

    def provision_bot(self, name: str, display: str, psm: str, status: str) -> str | None:
        return self.signin.provision_bot(name, display, psm, status)
