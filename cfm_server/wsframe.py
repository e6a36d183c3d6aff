"""Server-side WebSocket framing of a binary message, done once for many recipients.

websockets frames every message it is asked to send, per connection. A fan-out sends
the same bytes to every member, and a server's frames carry no mask, so the frame is
the same for all of them: the hub frames a message once and every session queues the
same bytes (see ``Session.send_framed``).
"""

from __future__ import annotations


def frame_binary(data: bytes) -> bytes:
    """``data`` as one binary WebSocket message from a server: FIN, opcode 2, no mask.

    RFC 6455 section 5.2; what websockets' ``send_binary`` puts on the wire for a server
    without extensions (the server turns compression off), built once per message here
    instead of once per recipient.
    """
    n = len(data)
    if n < 126:
        return bytes((0x82, n)) + data
    if n < 65536:
        return b"\x82\x7e" + n.to_bytes(2, "big") + data
    return b"\x82\x7f" + n.to_bytes(8, "big") + data
