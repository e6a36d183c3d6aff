"""The client's connection states, as data: which state may follow which.

Every change of :attr:`Client.state <cfm_common.client.Client.state>` goes through
:func:`check` (called by :meth:`cfm_common._core.ClientCore.set_state`), so a move the
table does not allow is a bug that shows at once instead of a client stuck in a state
nobody expected. The events a program reads about the connection live here too.

    CLOSED ──connect()──▶ CONNECTING ──welcome──▶ CONNECTED
                            │   ▲                    │
              failed, wait  ▼   │ try again          │ connection lost
                          RECONNECTING ◀─────────────┘
    any state ──close(), a final refusal or close code──▶ CLOSED
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from cfm_common import frames as f
from cfm_common.errors import ClientError


class ConnectionState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


_S = ConnectionState
TRANSITIONS: Final[dict[ConnectionState, frozenset[ConnectionState]]] = {
    # CLOSED → CLOSED: close() on a client that was never connected still says so.
    _S.CLOSED: frozenset({_S.CONNECTING, _S.CLOSED}),
    _S.CONNECTING: frozenset({_S.CONNECTED, _S.RECONNECTING, _S.CLOSED}),
    _S.CONNECTED: frozenset({_S.RECONNECTING, _S.CLOSED}),
    _S.RECONNECTING: frozenset({_S.CONNECTING, _S.CLOSED}),
}


class InvalidTransition(RuntimeError):
    """A state change the table does not allow: a bug in the SDK, not in the caller."""


def check(old: ConnectionState, new: ConnectionState) -> None:
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"the client cannot go from {old} to {new}")


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The connection moved to ``state``; ``retry_in`` is the wait before the next try.

    ``error``, on ``CLOSED`` when the client did not close itself, is what ended it: a
    :class:`ConnectionClosed` with the server's ``close_code`` and ``close_reason`` (4003:
    the operator replaced the token or removed the account), or the refusal of a
    reconnect's ``hello`` (``bad_token``) — so that a program tells the cases apart by
    type and fields, not by ``reason``'s words."""

    state: ConnectionState
    retry_in: float | None = None
    reason: str | None = None
    error: ClientError | None = None


@dataclass(frozen=True, slots=True)
class Connected:
    """A (re)connection succeeded; comes after every ``welcome``."""

    welcome: f.Welcome


Event = Connected | StateChanged | f.ServerFrame
