"""Answers cut by bytes as well as counts, and produced page by page.

A room of long messages makes a 500-message replay 8 MiB and a 200-message ``history``
page 3 MiB; a room of 25,000 members with long names makes its roster 7 MiB. None of it
may be queued whole: the hub cuts each single-frame answer (``history``, ``members``,
``joined.members``) at ``page_bytes`` — setting ``more`` or ``count`` so the client
pages on — and hands a join's replay to the session as an iterator of pages that the
session advances only while the reader drains (``Session.answer``). Sizes are upper
estimates of the encoded bytes, cheap to compute (no encoding twice).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from cfm_common.codec import encode_msg
from cfm_server.wsframe import frame_binary

if TYPE_CHECKING:
    from cfm_common.frames import RosterEntry, StoredMsg
    from cfm_server.metrics import Metrics

T = TypeVar("T")

# What an answer yields: a framed page, or a read still under way (a future). The
# session asks for the next item once that future is done, holding every frame sent
# after the answer meanwhile, so a page read over the network (a cluster node reads
# its rooms' streams from Redis) still arrives in order. A single node's reads return
# at once and its answers yield pages only.
AnswerItem = bytes | asyncio.Future[Any]


class Slice(NamedTuple):
    """What a history read gave a page: ``msgs`` in ascending seq and, when the read
    stopped short at the page's byte budget (``Reads.history_slice``), the seq of
    the first message it left out: that one exists, the range goes on past the page."""

    msgs: list[StoredMsg]
    stopped: int | None = None


class MessageReads(Protocol):
    """Where answers read stored messages: a store (a list at once), or a cluster
    node's broker (a future of the list)."""

    def history_after(self, room: str, after: int, limit: int
                      ) -> list[StoredMsg] | asyncio.Future[list[StoredMsg]]: ...

    def history_before(self, room: str, before: int | None, limit: int
                       ) -> list[StoredMsg] | asyncio.Future[list[StoredMsg]]: ...


class Credit(Protocol):
    """An answer's credit in its user's read budget (``read_budget.ReadCredit``)."""

    def cover(self) -> Generator[AnswerItem, None, int]: ...

    def refused(self, retry_ms: int) -> Exception: ...

    def spend(self, size: int) -> None: ...

    def settle(self) -> None: ...


def awaited(value: T | asyncio.Future[T]) -> Generator[asyncio.Future[Any], None, T]:
    """In an answer's generator, ``x = yield from awaited(read())``: the value at once,
    or, for a future, the future to the session until it is done, then its result."""
    if isinstance(value, asyncio.Future):
        while not value.done():
            yield value
        return value.result()
    return value

# What a msgpack map costs around its strings: keys, headers, integers (a generous bound).
ENTRY_OVERHEAD = 64
MSG_OVERHEAD = 96
REPLAY_BATCH = 32  # messages read from the store per step of a replay
# The most a ``msg`` frame's encoded bytes exceed ``stored_msg_size`` of its message: its
# keys, headers and numbers beyond MSG_OVERHEAD, and the extension keys the estimate
# leaves out (a reply's seq, a change entry's change, target and emoji). A budgeted read
# (a cluster node's read.lua) weighs a stored frame as its bytes less this, so it never
# weighs a message more than a page does (tests/cluster/test_history_budget.py).
FRAME_SLACK = 256


def utf8_len(text: str) -> int:
    # Exact for ASCII (the common case) without encoding; else an upper bound.
    return len(text) if text.isascii() else 4 * len(text)


def roster_entry_size(entry: RosterEntry) -> int:
    return (ENTRY_OVERHEAD + len(entry.name) + utf8_len(entry.display) + utf8_len(entry.psm)
            + len(entry.status))


def stored_msg_size(msg: StoredMsg) -> int:
    size = (MSG_OVERHEAD + len(msg.room) + len(msg.sender) + utf8_len(msg.text)
            + len(msg.id or ""))
    if msg.reactions is not None or msg.mentions is not None:  # message changes
        size += sum(ENTRY_OVERHEAD + 4 * len(r.emoji) + sum(len(n) + 2 for n in r.names)
                    for r in msg.reactions or ())
        size += sum(len(n) + 2 for n in msg.mentions or ())
    return size


def first_within(items: Sequence[T], size: Callable[[T], int], budget: int) -> list[T]:
    """The longest prefix of ``items`` within ``budget`` bytes (at least one item)."""
    total = 0
    for i, item in enumerate(items):
        total += size(item)
        if total > budget and i:
            return list(items[:i])
    return list(items)


def last_within(items: Sequence[T], size: Callable[[T], int], budget: int) -> list[T]:
    """The longest suffix of ``items`` within ``budget`` bytes (at least one item)."""
    total = 0
    for i in range(len(items) - 1, -1, -1):
        total += size(items[i])
        if total > budget and i < len(items) - 1:
            return list(items[i + 1:])
    return list(items)


def one_page(build: Callable[[], bytes]) -> Iterator[bytes]:
    """A single-frame answer, built only when the session is ready to send it."""
    yield frame_binary(build())


def replay_pages(store: MessageReads, room: str, since: int, until: int, limit: int,
                 page_bytes: int, metrics: Metrics,
                 seen_as: Callable[[list[StoredMsg]], list[StoredMsg]] | None = None,
                 credit: Credit | None = None,
                 ) -> Generator[AnswerItem, None, None]:
    """The ``msg`` frames of a join's replay: seq > ``since``, up to ``until`` and at most
    ``limit`` of them, read from the store a batch at a time and framed into pages of
    about ``page_bytes``. Only the page being sent is in memory. ``seen_as`` turns each
    batch into what the joiner may see (the hub's view of stored messages). ``credit``
    (the user's read budget, ``read_budget``) covers each read and pays for each frame;
    when it cannot, the replay ends there with the refusal (raised after the page so far)."""
    after, left = since, limit
    page: list[bytes] = []
    size = 0
    while left > 0 and after < until:
        if credit is not None:
            retry_ms = yield from credit.cover()
            if retry_ms:
                if page:
                    metrics.count_out("msg", len(page))
                    credit.spend(size)
                    yield b"".join(page)
                credit.settle()
                raise credit.refused(retry_ms)
        batch = yield from awaited(store.history_after(room, after, min(left, REPLAY_BATCH)))
        if not batch:
            break
        if seen_as is not None:
            batch = seen_as(batch)
        for stored in batch:
            if stored.seq > until:
                left = 0
                break
            framed = frame_binary(encode_msg(stored))
            page.append(framed)
            size += len(framed)
            after = stored.seq
            left -= 1
            if size >= page_bytes:
                metrics.count_out("msg", len(page))
                if credit is not None:
                    credit.spend(size)
                yield b"".join(page)
                page, size = [], 0
    if page:
        metrics.count_out("msg", len(page))
        if credit is not None:
            credit.spend(size)
        yield b"".join(page)
    if credit is not None:
        credit.settle()
