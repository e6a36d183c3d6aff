"""Append throughput of the SQLite store, by hand: ``python benchmarks/store_append.py``.

Appends ``--messages`` messages spread over ``--rooms`` rooms, ``--batch`` per event-loop
iteration (one group commit each), awaiting every batch's commits before the next, as a
hub does when many senders talk at once. Prints messages/s and commits/s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from cfm_common.frames import StoredMsg
from cfm_server.store import SqliteStore


async def run(messages: int, batch: int, rooms: int, synchronous: str, directory: Path) -> None:
    store = SqliteStore(directory / "bench.sqlite3", synchronous=synchronous)
    await store.open()
    next_seq = dict.fromkeys((f"#room{n}" for n in range(rooms)), 1)
    room_names = list(next_seq)
    text = "a typical chat line, about sixty characters long, give or take"
    commits = 0
    started = time.perf_counter()
    for first in range(0, messages, batch):
        pending = []
        for n in range(first, min(first + batch, messages)):
            room = room_names[n % rooms]
            seq = next_seq[room]
            next_seq[room] = seq + 1
            msg = StoredMsg(room, seq, f"user{n % 50}", text, 1_700_000_000_000 + n, "text",
                            f"client-{n}")
            pending.append(store.append(msg))
        await asyncio.gather(*pending)
        commits += 1
    elapsed = time.perf_counter() - started
    await store.close()
    print(f"{messages} messages, {batch} per commit, {rooms} rooms, synchronous={synchronous}:"
          f" {elapsed:.2f} s, {messages / elapsed:,.0f} messages/s, {commits / elapsed:,.0f}"
          f" commits/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--synchronous", choices=["normal", "full"], default="normal")
    parser.add_argument("--dir", type=Path, help="where to put the database (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        asyncio.run(run(args.messages, args.batch, args.rooms, args.synchronous,
                        Path(directory)))


if __name__ == "__main__":
    main()
