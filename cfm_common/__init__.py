"""cfm's shared protocol core and client SDK.

The protocol core (``rules``, ``errors``, ``frames``, ``codec``) does no I/O; the SDK
(``client``, ``bot``) is the I/O shell that the TUI, the AI contacts and third-party bots
use. Importing this package stays cheap: the SDK is imported only on demand.
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
SUBPROTOCOL = "cfm.v1"
