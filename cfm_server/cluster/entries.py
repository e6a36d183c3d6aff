"""What ``read.lua`` answers, as a node uses it: a room's entries (each with the current
state of a changed message) as the store keeps messages, and where a budgeted read
stopped (docs/cluster.md, "The scripts")."""

from __future__ import annotations

import dataclasses
from typing import Any

from cfm_common.codec import decode_server
from cfm_common.frames import Reaction, StoredMsg
from cfm_server.cluster.scripts import HIDDEN_SUFFIX

# A row's fields after its seq: the frame, the origin tag, the hidden mark, an edited
# message's text and time, its reactions.
READ_FIELDS = (b"m", b"o", b"h", b"t", b"e", b"r")
_HIDDEN = HIDDEN_SUFFIX.encode()

Entry = tuple[bytes, dict[bytes, bytes]]  # (b"<seq>-0", {field: value})
# Entries and the seq a budgeted read stopped at (None: it did not stop short).
Read = tuple[list[Entry], int | None]


def read_entries(reply: list[Any]) -> Read:
    """read.lua's reply → its entries, fields left out where empty, and the seq a
    budgeted read stopped at (an integer after the rows) or None."""
    stopped = reply.pop() if reply and isinstance(reply[-1], int) else None
    return ([(b"%d-0" % int(row[0]),
              {k: v for k, v in zip(READ_FIELDS, row[1:], strict=True) if v})
             for row in reply], stopped)


def seq_of(entry: tuple[bytes, Any]) -> int:
    return int(entry[0].split(b"-", 1)[0])


def stored(entry: Entry) -> StoredMsg:
    """A stream entry as the store keeps a message: the frame (as its sender sees it),
    marked hidden when the entry says so (``h``: private blocking)."""
    msg = decode_server(entry[1][b"m"])
    message = msg.to_stored()  # type: ignore[union-attr]
    fields = entry[1]
    if fields.get(b"h") == b"1" or fields.get(b"o", b"").endswith(_HIDDEN):
        message = dataclasses.replace(message, hidden=True)
    if b"e" in fields:  # edited: its current text (message changes)
        message = dataclasses.replace(message, text=fields.get(b"t", b"").decode(),
                                      edited=int(fields[b"e"]))
    if b"r" in fields:
        message = dataclasses.replace(message, reactions=_reactions(fields[b"r"]))
    return message


def _reactions(marks: bytes) -> tuple[Reaction, ...]:
    """``<name> <emoji>`` lines in the order made → each emoji once, in the order of its
    first reaction, with its names in the order they reacted (docs/protocol.md)."""
    by_emoji: dict[str, list[str]] = {}
    for line in marks.decode().splitlines():
        name, _, emoji = line.partition(" ")
        by_emoji.setdefault(emoji, []).append(name)
    return tuple(Reaction(emoji, tuple(names)) for emoji, names in by_emoji.items())
