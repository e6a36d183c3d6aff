"""Server-side WebSocket framing of a binary message, done once for many recipients.

websockets frames every message it is asked to send, per connection. A fan-out sends
the same bytes to every member, and a server's frames carry no mask, so the frame is
the same for all of them: the hub frames a message once and every session queues the
same bytes (see ``Session.send_framed``).
"""

from __future__ import annotations

from typing import Any


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


# What the wire meter answers besides the bytes it admits.
TOO_MANY_FRAGMENTS = "too many fragments"
OUTPUT_FULL = "output full"


class WireMeter:
    """Charges every client frame on the wire *before* websockets parses it.

    websockets parses each frame and answers each ping on its own, for free: a flood of
    empty pings (6 bytes each) or of one-byte fragments never reaches the session's byte
    budget, which sees whole messages. This sits in front of it, on the raw bytes of one
    connection: it reads each frame's header (2-14 bytes), charges the frame to the
    connection's wire bucket — its size plus ``frame_cost``, or ``control_cost`` for a
    control frame — and admits the bytes of the frames that were paid for. The rest
    waits in ``backlog`` until the bucket refills (the connection stops reading
    meanwhile). It also counts the frames of one message (``max_fragments``) and the
    bytes that pings will make websockets write back (pongs), which must fit in ``room``.

    ``admit`` returns (bytes to feed websockets, ms to wait before trying again or 0,
    a verdict: "" or TOO_MANY_FRAGMENTS or OUTPUT_FULL). Frames longer than
    ``max_frame`` are admitted as they are: websockets refuses them (1009) at the header.
    """

    __slots__ = ("backlog", "bucket", "control_cost", "counted_ip", "fragments", "frame_cost",
                 "max_fragments", "max_frame", "payload_left", "upgrade_bytes")

    def __init__(self, bucket: Any, *, frame_cost: int, control_cost: int,
                 max_fragments: int, max_frame: int) -> None:
        self.bucket = bucket  # a TokenBucket, or None: no budget (--no-rate-limits)
        self.frame_cost = frame_cost
        self.control_cost = control_cost
        self.max_fragments = max_fragments
        self.max_frame = max_frame
        self.backlog = b""  # received bytes not admitted yet, starting at a frame boundary
        self.payload_left = 0  # payload bytes of the last admitted frame still to come
        self.fragments = 0  # frames of the message being received
        # Kept here for the connection (``cfm_server.wsconn``), whose instance attributes
        # are few on purpose: the bytes of its HTTP upgrade request so far, and the client
        # address counted at accept (None: not counted there).
        self.upgrade_bytes = 0
        self.counted_ip: str | None = None

    def admit(self, data: bytes, now: float, room: int) -> tuple[bytes, int, str]:
        buf = self.backlog + data if self.backlog else data
        end = len(buf)
        pos = 0
        retry_ms = 0
        verdict = ""
        bucket = self.bucket
        while pos < end:
            if self.payload_left:
                step = min(self.payload_left, end - pos)
                pos += step
                self.payload_left -= step
                continue
            if end - pos < 2:
                break
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            head = 6 if b1 & 0x80 else 2  # a client's frames are masked (else 1002)
            if n == 126:
                head += 2
                if end - pos < head:
                    break
                n = int.from_bytes(buf[pos + 2:pos + 4], "big")
            elif n == 127:
                head += 8
                if end - pos < head:
                    break
                n = int.from_bytes(buf[pos + 2:pos + 10], "big")
            elif end - pos < head:
                break
            opcode = b0 & 0x0F
            frags = self.fragments
            if opcode >= 8:  # ping, pong, close: websockets answers a ping with a pong
                cost = self.control_cost + n
                if opcode == 0x9:
                    room -= n + 2
                    if room < 0:
                        verdict = OUTPUT_FULL
                        break
            else:
                cost = self.frame_cost + min(n, self.max_frame)
                frags = frags + 1 if opcode == 0 else 1
                if frags > self.max_fragments:
                    verdict = TOO_MANY_FRAGMENTS
                    break
                if b0 & 0x80:  # FIN: the message is complete
                    frags = 0
            if bucket is not None:
                retry_ms = bucket.take(now, cost)
                if retry_ms:
                    break
            self.fragments = frags
            pos += head
            self.payload_left = n
        if pos == end:
            self.backlog = b""
            return buf, retry_ms, verdict
        self.backlog = bytes(buf[pos:])
        return bytes(buf[:pos]), retry_ms, verdict
