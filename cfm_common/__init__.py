"""cfm's shared protocol core and client SDK.

The protocol core (``rules``, ``errors``, ``frames``, ``codec``) does no I/O; the SDK
(``client``, ``bot``) is the I/O shell that the TUI, the AI contacts and third-party bots
use. Importing this package stays cheap: the SDK is imported only on demand, also
through ``from cfm_common import Client, Bot`` (resolved lazily, below).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cfm_common.bot import Bot
    from cfm_common.client import Client, ClientError

__all__ = ["PROTOCOL_VERSION", "SUBPROTOCOL", "Bot", "Client", "ClientError", "__version__"]

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
SUBPROTOCOL = "cfm.v1"


def __getattr__(name: str) -> Any:
    if name in ("Client", "ClientError"):
        from cfm_common import client

        return getattr(client, name)
    if name == "Bot":
        from cfm_common.bot import Bot

        return Bot
    raise AttributeError(f"module 'cfm_common' has no attribute {name!r}")
