"""What the fault tests check: acked messages against the server's history and each view.

``Ledger`` records every ``ack`` a client got; ``fetch_history`` pages a room's whole
history with ``history{after}``; ``check_room`` asserts the promises:

- the room's seqs are 1..n without a gap and without a repeat;
- every acked message is there exactly once, with its acked seq and ts;
- no (sender, id) is stored twice.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

from cfm_common.client import Client
from cfm_common.frames import Ack, Msg, StoredMsg

HISTORY_PAGE = 200


@dataclass
class Ledger:
    """Every ack each sender got: (sender, id) → ack."""

    acks: dict[tuple[str, str], Ack] = field(default_factory=dict)

    def add(self, sender: str, ack: Ack) -> None:
        assert ack.id is not None
        key = (sender, ack.id)
        old = self.acks.get(key)
        # An ack repeated for a retried id must be the original one: same seq, same ts.
        assert old is None or (old.room, old.seq, old.ts) == (ack.room, ack.seq, ack.ts), (
            f"{key} acked twice differently: {old} and {ack}")
        self.acks[key] = ack

    def rooms(self) -> set[str]:
        return {ack.room for ack in self.acks.values()}


async def fetch_history(client: Client, room: str, timeout: float = 30.0) -> list[StoredMsg]:
    """The room's whole stored history, paged with ``history{after}``."""
    out: list[StoredMsg] = []

    async def page_all() -> None:
        after = 0
        while True:
            page = await client.history(room, after=after, limit=HISTORY_PAGE)
            out.extend(page.msgs)
            if not page.more or not page.msgs:
                return
            after = page.msgs[-1].seq

    await asyncio.wait_for(page_all(), timeout)
    return out


def check_room(room: str, history: list[StoredMsg], ledger: Ledger) -> int:
    """Assert the promises for one room; the number of acked messages checked."""
    seqs = [m.seq for m in history]
    assert seqs == list(range(1, len(history) + 1)), f"{room}: seqs not gapless: {seqs[:50]}"
    ids = collections.Counter((m.sender, m.id) for m in history if m.id is not None)
    doubled = {key: n for key, n in ids.items() if n > 1}
    assert not doubled, f"{room}: stored more than once: {doubled}"
    by_key = {(m.sender, m.id): m for m in history}
    checked = 0
    for key, ack in ledger.acks.items():
        if ack.room != room:
            continue
        stored = by_key.get(key)
        assert stored is not None, f"{room}: acked message {key} (seq {ack.seq}) is lost"
        assert (stored.seq, stored.ts) == (ack.seq, ack.ts), f"{key}: {stored} vs {ack}"
        checked += 1
    return checked


def view_of(msgs: list[Msg], room: str) -> list[tuple[int, str, str, str | None]]:
    """A client's copy of a room, as comparable tuples."""
    return [(m.seq, m.sender, m.text, m.id) for m in msgs if m.room == room]


def history_view(history: list[StoredMsg]) -> list[tuple[int, str, str, str | None]]:
    return [(m.seq, m.sender, m.text, m.id) for m in history]
