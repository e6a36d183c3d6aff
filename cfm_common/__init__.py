"""cfm's shared protocol core and client SDK.

The protocol core (``rules``, ``errors``, ``frames`` — gathering ``frame_fields``,
``client_frames`` and ``server_frames`` — and ``codec``) does no I/O, and
neither does the client core (``_core`` and the modules it puts together, which decide
reply matching, retries, resume and gap filling); the SDK (``client``, ``bot``) is the
asyncio shell around them that the TUI, the AI contacts and third-party bots use.
Importing this package stays cheap: the SDK is imported only on demand, also through
``from cfm_common import Client, Bot`` (resolved lazily, below).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cfm_common.bot import Bot
    from cfm_common.client import Client
    from cfm_common.errors import (
        CfmError,
        ClientError,
        ConnectCause,
        ConnectFailed,
        ConnectionClosed,
        LocalRefusal,
        ServerRefused,
        TimedOut,
    )

# The exception tree (cfm_common.errors), importable from the package too.
_ERRORS = ("CfmError", "ClientError", "ConnectCause", "ConnectFailed", "ConnectionClosed",
           "LocalRefusal", "ServerRefused", "TimedOut")
__all__ = [
    "PROTOCOL_VERSION", "SUBPROTOCOL", "Bot", "CfmError", "Client", "ClientError",
    "ConnectCause", "ConnectFailed", "ConnectionClosed", "LocalRefusal", "ServerRefused",
    "TimedOut", "__version__",
]

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
SUBPROTOCOL = "cfm.v1"


def __getattr__(name: str) -> Any:
    if name == "Client":
        from cfm_common.client import Client

        return Client
    if name in _ERRORS:
        from cfm_common import errors

        return getattr(errors, name)
    if name == "Bot":
        from cfm_common.bot import Bot

        return Bot
    raise AttributeError(f"module 'cfm_common' has no attribute {name!r}")
