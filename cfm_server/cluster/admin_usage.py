"""``cfm admin usage --redis``: bytes per room and per sender, from a cluster's streams.

Nothing in Redis counts a sender's messages, so this reads every message: each room's
stream (``cfm:{<room>}:log``) a page at a time with ``XRANGE … COUNT``, never the whole
stream in one reply, so Redis serves the nodes between two pages. The first page of a
hundred rooms at once is one pipeline (most rooms are direct conversations of a few
messages); a room with more goes on alone, ``PAGE`` entries a call. Rooms are found
with ``SCAN`` (``admin._rooms``), never ``KEYS``.

A message counts as a single node counts its row (``usage.message_bytes``: its text as
UTF-8, sender, room and client id, plus a fixed overhead), so the same messages give the
same figures in both modes. What a stream no longer holds is not counted: a deleted
message (its entry goes; ``stats --redis`` does not count it either), and an edited
message counts with the text it was sent with (its edits are entries of their own).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgpack

from cfm_server.cluster import keys
from cfm_server.cluster.admin import PAGE, _connected, _rooms
from cfm_server.usage import Usage, Use, message_bytes, summary

FIRST = 100  # entries of each room's first page, and rooms in one pipeline of them


class _Tally:
    """Messages and bytes per room and per sender, entry by entry."""

    def __init__(self) -> None:
        self.rooms: dict[str, list[int]] = {}
        self.senders: dict[str, list[int]] = {}

    def add(self, room: str, entries: Iterable[tuple[bytes, dict[bytes, bytes]]]) -> None:
        for _, fields in entries:
            frame = msgpack.unpackb(fields[b"m"])
            sender = frame.get("from", "")
            size = message_bytes(frame.get("text", ""), sender, room, frame.get("id"))
            for counts, name in ((self.rooms, room), (self.senders, sender)):
                both = counts.setdefault(name, [0, 0])
                both[0] += 1
                both[1] += size

    def uses(self, counts: dict[str, list[int]]) -> list[Use]:
        return [Use(name, n, size) for name, (n, size) in counts.items()]


async def usage(url: str, top: int = 20) -> Usage:
    """The ``top`` rooms and senders by the bytes of their messages (0: all of them)."""
    tally = _Tally()
    async with _connected(url) as client:
        names = await _rooms(client)
        for start in range(0, len(names), FIRST):
            batch = names[start:start + FIRST]
            pipe = client.pipeline(transaction=False)
            for name in batch:
                pipe.xrange(keys.room_log(name), "-", "+", count=FIRST)
            for name, page in zip(batch, await pipe.execute(), strict=True):
                tally.add(name, page)
                if len(page) == FIRST:
                    await _rest(client, name, page[-1][0], tally)
    return summary(tally.uses(tally.rooms), tally.uses(tally.senders), top)


async def _rest(client: Any, room: str, after: bytes, tally: _Tally) -> None:
    """The room's entries after the id ``after``, ``PAGE`` a call."""
    log = keys.room_log(room)
    while True:
        page = await client.xrange(log, b"(" + after, "+", count=PAGE)
        tally.add(room, page)
        if len(page) < PAGE:
            return
        after = page[-1][0]
