"""What the domain needs from the world outside it, as interfaces it owns.

``Connection`` is a signed-in (or signing-in) client as the domain sees it:
``cfm_server.session.Session`` satisfies it structurally, and nothing in the domain
imports the session module. The domain never awaits on a connection: it queues bytes
(``send``, ``send_framed``) or hands over an answer to be produced as the reader drains
it (``answer``); back-pressure and closing stay behind this line.

The storage side of the boundary is ``cfm_server.store.Store`` (reads, and the writes
that ``writes.Writes`` funnels), and the delivery side is ``delivery.Delivery``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cfm_server.state import User


class BucketLimits(Protocol):
    """The per-kind rate buckets of one connection."""

    def lift_buckets(self) -> None:
        """Stop charging the per-kind buckets (the server's own bots answer everyone)."""


class Connection(Protocol):
    """One client connection, as the domain uses it."""

    # Given at sign-in ("s1", "s2", ...): the welcome names it, the log too.
    id: str
    # The client's address: the per-address sign-up limit.
    ip: str
    # Set at sign-in, None again at sign-out.
    user: User | None
    # hello.quiet: no member frames nor room-only presence.
    quiet: bool

    @property
    def limits(self) -> BucketLimits: ...

    def send(self, data: bytes) -> None:
        """Queue one encoded frame; never waits."""

    def send_framed(self, framed: bytes) -> None:
        """Queue a frame already framed by ``wsframe.frame_binary`` (shared by a fan-out)."""

    def answer(self, pages: Iterator[bytes]) -> None:
        """Send an answer of framed pages, produced as the reader drains them."""
