"""The operator's log lines: who connected from where, who signed up (with which
invite), which handshakes were refused, and how each connection ended.

These go to the ``cfm_server.conn`` logger at info. Anyone who can reach the port can
make connections, so the lines are rate-limited per kind: past ``LINES_PER_S`` (with a
burst of ``BURST``) they are counted instead of written, and the next line written says
how many were left out. A flood then costs a few lines a second, not a disk.

The client's address is kept in a context variable for the life of its connection, so
code that runs on its behalf (the hub signing up a new handle) can name it without
being handed it.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any

log = logging.getLogger("cfm_server.conn")

# The address of the client whose connection the running code serves ("-" outside one).
PEER: contextvars.ContextVar[str] = contextvars.ContextVar("cfm_peer", default="-")

LINES_PER_S = 20.0
BURST = 200


class _Budget:
    """A token bucket of log lines, and how many it refused since the last line."""

    __slots__ = ("dropped", "stamp", "tokens")

    def __init__(self) -> None:
        self.tokens = float(BURST)
        self.stamp = time.monotonic()
        self.dropped = 0

    def take(self) -> int | None:
        """None: drop this line; else how many lines were dropped before it."""
        now = time.monotonic()
        self.tokens = min(BURST, self.tokens + (now - self.stamp) * LINES_PER_S)
        self.stamp = now
        if self.tokens < 1:
            self.dropped += 1
            return None
        self.tokens -= 1
        dropped, self.dropped = self.dropped, 0
        return dropped


_budgets: dict[str, _Budget] = {}


def line(kind: str, message: str, *args: object, level: int = logging.INFO,
         peer: str | None = None, **fields: object) -> None:
    """Log ``message % args`` unless ``kind``'s lines are over their rate. ``fields``
    (``user``, ``code``, ...) become keys of a JSON line beside ``event`` and ``peer``,
    so a log pipeline need not parse the sentence; they must not be LogRecord names."""
    if not log.isEnabledFor(level):
        return
    budget = _budgets.get(kind)
    if budget is None:
        budget = _budgets[kind] = _Budget()
    dropped = budget.take()
    if dropped is None:
        return
    if dropped:
        message += f" ({dropped} more {kind} lines were left out: over {LINES_PER_S:g}/s)"
    log.log(level, message, *args,
            extra={"event": kind, "peer": peer if peer is not None else PEER.get(), **fields})


def connected(peer: str) -> None:
    line("connection", "connection from %s", peer, peer=peer)


def refused(peer: str, status: int, why: str) -> None:
    line("refusal", "refused %s: %s (HTTP %d)", peer, why, status, peer=peer, status=status)


def _where(node: str | None, peer: str, session: str | None) -> str:
    """`` on node n1 from 203.0.113.9, session n1.s3``: which node (a cluster's), which
    address, which session (signed in)."""
    return ((f" on node {node}" if node is not None else "") + f" from {peer}"
            + (f", session {session}" if session else ""))


def _ids(node: str | None, session: str | None) -> dict[str, object]:
    return {**({"node": node} if node is not None else {}),
            **({"session": session} if session else {})}


def signed_in(name: str, session: str, node: str | None = None) -> None:
    """``name`` signed in (its ``welcome`` is on its way) as ``session``, on ``node`` (a
    cluster node's id; None: a single node)."""
    peer = PEER.get()
    line("sign-in", "sign-in: %s%s", name, _where(node, peer, session), peer=peer,
         user=name, **_ids(node, session))


def closed(peer: str, name: str | None, seconds: float, code: int | None, reason: str,
           by_server: bool, session: str | None = None, node: str | None = None) -> None:
    """A connection ended (for a signed-in one, its sign-out): ``code`` None and not
    ``by_server`` is a connection lost — no close frame either way (websockets' 1006):
    the network, a proxy that dropped it (its timeout), the client's machine."""
    who = name if name is not None else "(not signed in)"
    session = session if name is not None else None
    where = _where(node, peer, session) + ("," if session else "")
    keys = {**({} if name is None else {"user": name}), **_ids(node, session)}
    if code is None and not by_server:
        line("close", "closed %s%s after %.1f s: connection lost (no close frame)", who,
             where, seconds, peer=peer, code=None, by="lost", **keys)
        return
    what = f"code {code}" if code is not None else "no close code"
    line("close", "closed %s%s after %.1f s: %s%s %s", who, where, seconds, what,
         f" ({reason})" if reason else "", "by the server" if by_server else "by the client",
         peer=peer, code=code, by="server" if by_server else "client", **keys)


def signed_up(name: str, bot: bool, invite: str | None = None, used: int = 0,
              uses: int = 0) -> None:
    """A new handle is durable (``invite``: the nonce of the code it used, ``used`` of
    ``uses`` sign-ups, 0: any number)."""
    how = (f" with invite {invite} (use {used} of {uses or 'any number'})"
           if invite is not None else "")
    extra = {} if invite is None else {"invite": invite}
    line("sign-up", "sign-up: %s (%s) from %s%s", name, "bot" if bot else "person",
         PEER.get(), how, user=name, **extra)


def sign_up_refused(name: str, why: str) -> None:
    line("sign-up", "sign-up of %s from %s refused: %s", name, PEER.get(), why, user=name)


def close_of(ws: Any) -> tuple[int | None, str, bool]:
    """(code, reason, by the server) of a websockets connection's closing handshake, as
    far as it went: the code the server sent if it began the close (the client may
    never answer: a slow reader), else the client's."""
    protocol = ws.protocol
    sent, received = protocol.close_sent, protocol.close_rcvd
    if sent is not None and (received is None or protocol.close_rcvd_then_sent is False):
        return int(sent.code), sent.reason, True
    if received is not None:
        return int(received.code), received.reason, False
    return None, "", False
