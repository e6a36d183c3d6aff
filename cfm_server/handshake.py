"""A session's sign-in: frames are read until a ``hello`` succeeds, within ``hello_timeout``.

Anything else first is refused (``hello_required``); a hello the hub refuses is answered
with its error, and closes the connection when the error is final (``FATAL_HELLO_ERRORS``).
Before the hub answers a hello it may need to read (a cluster node: the user's rooms in
Redis, ``Hub.before_sign_in``). A sign-up, or a sign-in that changes the user's record,
is answered once that write is durable, outside the hello timeout: a token is never
handed out for an account the next start would not know, nor a status shown that the
store refused.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from websockets.asyncio.server import ServerConnection

from cfm_common.codec import decode_client
from cfm_common.errors import ProtocolError
from cfm_common.frames import Hello, ServerFrame, Welcome
from cfm_common.rules import FATAL_HELLO_ERRORS, CloseCode, ErrorCode
from cfm_server.hub import Hub, RateLimited, SignInWrite, SignUp
from cfm_server.invites import InviteError
from cfm_server.state import Connection
from cfm_server.store import IdentityTaken

if TYPE_CHECKING:
    from cfm_server.config import ServerConfig
    from cfm_server.metrics import Metrics

log = logging.getLogger("cfm_server.session")


class Session(Connection, Protocol):
    """What the handshake uses of its session (``cfm_server.session.Session``; a
    Protocol, so that this module does not import the session that imports it)."""

    ws: ServerConnection
    hub: Hub
    config: ServerConfig
    metrics: Metrics
    closing: bool

    def over_budget(self, data: bytes) -> bool: ...

    def count_abuse(self) -> None: ...

    def send_frame(self, frame: ServerFrame) -> None: ...

    def send_error(self, code: ErrorCode | str, msg: str, ref: str | None,
                   retry_ms: int | None = None) -> None: ...


async def handshake(session: Session) -> bool:
    """Read until a ``hello`` succeeds (True, its ``welcome`` sent) or the connection
    must end (False)."""
    prepared: list[Hello] = []  # hellos the hub prepared for (Hub.before_sign_in)
    try:
        return await _handshake(session, prepared)
    finally:
        for hello in prepared:  # answered (a welcome or an error) or dropped
            session.hub.hello_done(hello)


async def _handshake(session: Session, prepared: list[Hello]) -> bool:
    loop = asyncio.get_running_loop()
    signed: Welcome | SignUp | SignInWrite | None = None
    hello: Hello | None = None
    try:
        async with asyncio.timeout_at(loop.time() + session.config.hello_timeout):
            while not session.closing and signed is None:
                data = await session.ws.recv()
                if isinstance(data, str):
                    session.close(CloseCode.UNSUPPORTED_DATA, "frames are binary msgpack")
                    return False
                if not session.over_budget(data):
                    hello = _read_hello(session, data)
                    if hello is not None and await _ready_for(session, hello, prepared):
                        signed = _on_hello(session, hello)
    except TimeoutError:
        session.close(CloseCode.HELLO_TIMEOUT, "no hello in time")
        return False
    if signed is None:
        return False
    if isinstance(signed, SignUp | SignInWrite):
        # Outside the hello timeout: finished or dropped whatever its commit takes.
        assert hello is not None
        welcome = await (_finish_sign_up(session, signed, hello) if isinstance(signed, SignUp)
                         else session.hub.finish_sign_in(session, signed))
        if welcome is None:
            return False
        signed = welcome
    session.send_frame(signed)
    session.hub.after_welcome(session)
    return True


async def _finish_sign_up(session: Session, sign_up: SignUp, hello: Hello) -> Welcome | None:
    """Wait until the new identity is durable, so that a token is never handed out for an
    account the next start would not know; then sign in."""
    hub = session.hub
    try:
        await asyncio.shield(sign_up.commit)
    except IdentityTaken:
        # Claimed at the same moment on another node of the cluster.
        hub.drop_sign_up(sign_up)
        session.send_error(ErrorCode.NAME_TAKEN, f"{sign_up.record.name!r} is taken", "hello")
        session.close(CloseCode.NAME_TAKEN, "name taken")
        return None
    except InviteError as exc:
        # A cluster counts the invite's use in Redis: the limit was reached elsewhere.
        hub.drop_sign_up(sign_up)
        # The connection ends here (a sign-up is past the hello loop); ``forbidden`` is
        # final for clients, as on a single node.
        session.send_error(ErrorCode.FORBIDDEN, str(exc), "hello")
        session.close(1000, "invite used up")
        return None
    except Exception as exc:
        log.warning("session %s: the new identity %s could not be stored", session.id or "-",
                    sign_up.record.name)
        hub.drop_sign_up(sign_up)
        # (Redis may have stored it, its reply lost: the same hello, with its ``claim``,
        # signs in then.) ``retry_ms``: when a cluster node expects Redis back.
        session.send_error(ErrorCode.INTERNAL,
                           "the server could not store your new account; try again later",
                           "hello", getattr(exc, "retry_ms", None))
        session.close(CloseCode.TRY_AGAIN_LATER, "could not store the account")
        return None
    return hub.finish_sign_up(session, sign_up, hello)


def _read_hello(session: Session, data: bytes) -> Hello | None:
    """The hello in ``data``; anything else is refused (None)."""
    try:
        frame = decode_client(data, max_text=session.config.max_text)
    except ProtocolError as exc:
        session.metrics.count_in("invalid")
        # The decoder's ref is the frame's id or t, or none for bytes that were no frame
        # at all: the same answer as after welcome.
        _refuse(session, exc, exc.ref)
        return None
    session.metrics.count_in(frame.T)
    if not isinstance(frame, Hello):
        _refuse(session, ProtocolError(ErrorCode.HELLO_REQUIRED, "send hello first",
                                       getattr(frame, "id", None) or frame.T), frame.T)
        return None
    return frame


async def _ready_for(session: Session, hello: Hello, prepared: list[Hello]) -> bool:
    """Wait for what the hub must read before it answers ``hello`` (a cluster node: the
    user's rooms in Redis); False, and the session closing, if it cannot."""
    ready = session.hub.before_sign_in(hello, session.ip)
    if ready is None:
        return True
    prepared.append(hello)
    try:
        await ready
    except Exception as exc:
        log.warning("session %s: cannot sign %s in now: %s", session.id or "-", hello.name,
                    exc)
        session.send_error(ErrorCode.INTERNAL, "the server cannot sign you in now; try again",
                           "hello", getattr(exc, "retry_ms", None))
        session.close(CloseCode.TRY_AGAIN_LATER, "cannot sign in now")
        return False
    return True


def _on_hello(session: Session, frame: Hello) -> Welcome | SignUp | SignInWrite | None:
    try:
        return session.hub.sign_in(session, frame)
    except ProtocolError as exc:
        _refuse(session, exc, "hello")
    except RateLimited as exc:  # too many new handles from this address, or sign-ins
        session.send_error(ErrorCode.RATE_LIMITED,
                           exc.why or "too many new handles from your address",
                           exc.ref, exc.retry_ms)
        session.count_abuse()
    return None


def _refuse(session: Session, exc: ProtocolError, ref: str | None) -> None:
    session.send_error(exc.code, exc.msg, exc.ref or ref)
    close_code = FATAL_HELLO_ERRORS.get(exc.code)
    if close_code is not None:
        session.close(close_code, exc.code.value)
    else:
        session.count_abuse()
