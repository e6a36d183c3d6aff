"""The bytes of stored messages a user's answers read, charged as they are produced.

A join's replay, a ``history`` page and a ``search`` answer read stored messages (a
cluster node: from Redis). The per-session ``join``/``history``/``search`` buckets
multiply with the sessions one user opens, and what a reader then costs is how fast it
drains its answers; so every such answer also spends from the user's ``read`` bucket
(``user_read_rate``/``user_read_burst``, shared by all of the user's sessions, and over
a cluster's nodes like the other per-user buckets).

The charge follows the bytes produced, not a guess: before a read the answer holds a
credit of ``page_bytes`` (:meth:`ReadCredit.cover`), each framed message spends from it,
and what is left when the answer ends goes back (:meth:`ReadCredit.settle`). A bucket
that cannot cover the first read refuses the request (``rate_limited`` with its ``ref``
and ``retry_ms``: the SDK sends it again then); one that runs out in the middle of a
replay breaks the replay off with the same error, after the messages sent so far (the
client fetches the rest with ``history{after}``).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

from cfm_server.admission import USER_LIMIT_WORDS, RateLimited
from cfm_server.pages import AnswerItem, awaited

if TYPE_CHECKING:
    from cfm_server.admission import Admission
    from cfm_server.state import User


class ReadCredit:
    """One answer's credit in the user's ``read`` bucket."""

    __slots__ = ("admission", "credit", "ref", "reserve", "user")

    def __init__(self, admission: Admission, user: User, ref: str, reserve: int) -> None:
        self.admission = admission
        self.user = user
        self.ref = ref
        self.reserve = reserve  # a page's bytes: what one read may produce
        self.credit = 0

    def cover(self) -> Generator[AnswerItem, None, int]:
        """Before a read: top the credit up to a page once half of it is spent (a
        cluster user on several nodes: one Redis call per half page, not per read).
        Answers 0, or the ``retry_ms`` of a bucket that could not."""
        if self.credit >= self.reserve >> 1:
            return 0
        retry_ms = yield from awaited(
            self.admission.take_read(self.user, self.reserve - self.credit))
        if not retry_ms:
            self.credit = self.reserve
        return retry_ms

    def refused(self, retry_ms: int) -> RateLimited:
        return RateLimited(retry_ms, self.ref, USER_LIMIT_WORDS["read"])

    def spend(self, size: int) -> None:
        self.credit -= size

    def settle(self) -> None:
        """The answer ended: give back what it did not use (or pay what its last read
        produced past the credit, if the bucket has it)."""
        if self.credit:
            self.admission.take_read(self.user, -self.credit)
            self.credit = 0


def read_credit(admission: Admission, user: User, ref: str, reserve: int
                ) -> ReadCredit | None:
    """A credit for an answer of ``user``'s, or None when nothing limits its reads (the
    limits are off, or the user is one of the server's bots)."""
    if "read" not in admission.user_limits.kinds or user.name in admission.server_bots:
        return None
    return ReadCredit(admission, user, ref, reserve)


def metered(pages: Iterator[AnswerItem], credit: ReadCredit | None
            ) -> Generator[AnswerItem, None, None]:
    """An answer that reads once (a ``history`` page, a ``search``): covered before its
    read — refused whole when the bucket cannot — and paid by the bytes it produced."""
    if credit is None:
        yield from pages
        return
    retry_ms = yield from credit.cover()
    if retry_ms:
        raise credit.refused(retry_ms)
    for item in pages:
        if isinstance(item, bytes):
            credit.spend(len(item))
        yield item
    credit.settle()
