"""Search over a big store, by hand: ``python benchmarks/search.py``.

1. Append throughput with and without the search index: ``--compare`` messages into a
   fresh store with its index (the indexer thread running beside the appends, as in a
   server), then into one without (``SqliteStore(search=False)``), ``--batch`` per group
   commit as in ``store_append.py``. Same texts, same rooms, alternating, the better of
   ``--rounds`` runs each; and how long the indexer took after the last append to hold
   every message.
2. Fills one store with ``--messages`` messages (direct ``SqliteStore.append``, not over
   the wire, the index off) spread over ``--rooms`` rooms, texts of 4-14 words drawn
   from a Zipf-like vocabulary of 20,000 words; opens it with the index, which builds
   itself from nothing (timed); then times ``--searches`` ``Store.search`` calls (limit
   20 + 1, as the hub asks) for a user in ``--member-of`` random rooms, with one or two
   words (common, middling and rare ones alike), and prints p50/p95/p99/max.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import tempfile
import time
from pathlib import Path

from cfm_common.frames import StoredMsg
from cfm_server.store import SqliteStore
from cfm_server.store.searchindex import index_path

VOCABULARY = 20_000


def make_words(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))))
    return sorted(words)


class Texts:
    """Chat-like lines: word n drawn with weight 1/(n+1) (a few words are everywhere)."""

    def __init__(self, rng: random.Random, words: list[str]) -> None:
        self.rng = rng
        self.words = words
        self.cum_weights = list(itertools.accumulate(1 / (n + 1) for n in range(len(words))))

    def line(self) -> str:
        return " ".join(self.rng.choices(self.words, cum_weights=self.cum_weights,
                                         k=self.rng.randint(4, 14)))


async def fill(store: SqliteStore, texts: list[str], rooms: int, batch: int) -> float:
    """Append every text; messages per second (``fill.cpu_us``: this process's CPU per
    message, the indexer's own process not counted)."""
    seqs = [0] * rooms
    cpu = time.process_time()
    started = time.perf_counter()
    for first in range(0, len(texts), batch):
        pending = []
        for n in range(first, min(first + batch, len(texts))):
            r = n % rooms if n % 3 else (n * 7919) % rooms  # some rooms busier than others
            seqs[r] += 1
            msg = StoredMsg(f"#room{r}", seqs[r], f"user{n % 1000}", texts[n],
                            1_700_000_000_000 + n, "text", f"c{n}")
            pending.append(store.append(msg))
        await asyncio.gather(*pending)
    elapsed = time.perf_counter() - started
    fill.cpu_us = (time.process_time() - cpu) / len(texts) * 1e6  # type: ignore[attr-defined]
    return len(texts) / elapsed


async def append_rate(directory: Path, texts: list[str], rooms: int, batch: int,
                      *, indexed: bool) -> tuple[float, float]:
    """Appends per second, and the seconds the index then took to hold them all."""
    path = directory / f"rate-{indexed}-{time.perf_counter_ns()}.sqlite3"
    store = SqliteStore(path, search=indexed)
    await store.open()
    try:
        rate = await fill(store, texts, rooms, batch)
        started = time.perf_counter()
        await caught_up(store, rooms, len(texts))
        return rate, time.perf_counter() - started
    finally:
        await store.close()
        for p in directory.glob(path.stem + "*"):
            p.unlink()


async def caught_up(store: SqliteStore, rooms: int, messages: int) -> None:
    """Until the index holds the ``messages`` that ``fill`` spread over ``rooms``."""
    tops = {f"#room{r}": seq for r, seq in enumerate(room_seqs(rooms, messages))}
    while store.search_behind(tops):
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        store.when_indexed(tops, lambda: done.done() or done.set_result(None), 60.0)  # noqa: B023
        await done


def room_seqs(rooms: int, messages: int) -> list[int]:
    seqs = [0] * rooms
    for n in range(messages):
        seqs[n % rooms if n % 3 else (n * 7919) % rooms] += 1
    return seqs


def report(what: str, timings: list[float], counts: list[int]) -> None:
    ms = [t * 1000 for t in timings]
    print(f"{what}: p50 {percentile(ms, 0.5):.2f} ms, p95 {percentile(ms, 0.95):.2f} ms, "
          f"p99 {percentile(ms, 0.99):.2f} ms, max {max(ms):.2f} ms; "
          f"{statistics.mean(counts):.1f} found on average, "
          f"{sum(1 for c in counts if c == 0)} found nothing")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace, directory: Path) -> None:
    rng = random.Random(16)
    words = make_words(rng)
    texts = Texts(rng, words)
    if args.compare:
        sample = [texts.line() for _ in range(args.compare)]
        rates: dict[bool, list[float]] = {True: [], False: []}
        cpus: dict[bool, list[float]] = {True: [], False: []}
        lags: list[float] = []
        for _ in range(args.rounds):
            for indexed in (False, True):
                rate, lag = await append_rate(directory, sample, args.rooms, args.batch,
                                              indexed=indexed)
                rates[indexed].append(rate)
                cpus[indexed].append(fill.cpu_us)  # type: ignore[attr-defined]
                if indexed:
                    lags.append(lag)
                print(f"  {'with' if indexed else 'without'} the index: {rate:,.0f}/s, "
                      f"{fill.cpu_us:.1f} µs of this process's CPU per append"  # type: ignore[attr-defined]
                      + (f", indexed all {lag:.2f} s after the last append"
                         if indexed else ""))
        without, with_index = max(rates[False]), max(rates[True])
        print(f"appends, {args.compare} messages, {args.batch} per commit, best of "
              f"{args.rounds}: without the index {without:,.0f}/s, with it "
              f"{with_index:,.0f}/s ({(with_index / without - 1) * 100:+.1f}%); "
              f"median {statistics.median(rates[False]):,.0f}/s vs "
              f"{statistics.median(rates[True]):,.0f}/s; CPU per append (median) "
              f"{statistics.median(cpus[False]):.1f} vs {statistics.median(cpus[True]):.1f} µs")
    if not args.messages:
        return
    big = args.db or directory / "big.sqlite3"
    if not big.exists():
        store = SqliteStore(big, search=False)
        await store.open()
        try:
            started = time.perf_counter()
            chunk = 100_000
            rate = 0.0
            for first in range(0, args.messages, chunk):
                lines = [texts.line() for _ in range(min(chunk, args.messages - first))]
                # Fill continues the rooms' seqs: one store, rooms numbered as before.
                rate = await fill_more(store, lines, args.rooms, args.batch, first)
        finally:
            await store.close()
        print(f"filled {args.messages:,} messages in {args.rooms} rooms in "
              f"{time.perf_counter() - started:.0f} s (last 100k at {rate:,.0f}/s)")
    else:  # the same texts: the generator's state as after a fill
        for _ in range(args.messages):
            texts.line()
    print(f"{big.stat().st_size / 2**20:,.0f} MiB on disk without the index")
    # Built from nothing each time (a store opened without the index deletes it).
    store = SqliteStore(big, search=False)
    await store.open()
    await store.close()
    store = SqliteStore(big)
    await store.open()
    try:
        started = time.perf_counter()
        await caught_up(store, args.rooms, args.messages)
        index = index_path(big)
        await store.flush()
        index_size = sum(p.stat().st_size for p in big.parent.glob(index.name + "*"))
        print(f"the index built itself at start in {time.perf_counter() - started:.0f} s"
              f" (the server listening meanwhile): {index_size / 2**20:,.0f} MiB")
        timings: list[float] = []
        counts: list[int] = []
        room_names = [f"#room{r}" for r in range(args.rooms)]
        for n in range(args.searches):
            rooms = rng.sample(room_names, args.member_of)
            # Words by rank: every fifth search a top-100 word, else anywhere in the list.
            pick = [words[rng.randrange(100 if n % 5 == 0 else VOCABULARY)]
                    for _ in range(1 + n % 2)]
            t0 = time.perf_counter()
            found = store.search("user1", rooms, pick, None, 21)
            timings.append(time.perf_counter() - t0)
            counts.append(len(found))
        report(f"{args.searches} searches, user in {args.member_of} of {args.rooms} rooms, "
               "1-2 words, limit 21", timings, counts)
        # The hard case: one room of 500, the ten commonest words (in ~10-30 % of all
        # messages): the index walks every match, newest first, until 21 are that room's.
        timings, counts = [], []
        for n in range(args.searches):
            room = room_names[rng.randrange(args.rooms)]
            t0 = time.perf_counter()
            found = store.search("user1", [room], [words[n % 10]], None, 21)
            timings.append(time.perf_counter() - t0)
            counts.append(len(found))
        report(f"{args.searches} searches, user in 1 room, one of the 10 commonest words",
               timings, counts)
    finally:
        await store.close()


_seqs: dict[int, int] = {}


async def fill_more(store: SqliteStore, texts: list[str], rooms: int, batch: int,
                    offset: int) -> float:
    started = time.perf_counter()
    for first in range(0, len(texts), batch):
        pending = []
        for i in range(first, min(first + batch, len(texts))):
            n = offset + i
            r = n % rooms if n % 3 else (n * 7919) % rooms
            seq = _seqs[r] = _seqs.get(r, 0) + 1
            msg = StoredMsg(f"#room{r}", seq, f"user{n % 1000}", texts[i],
                            1_700_000_000_000 + n, "text", f"c{n}")
            pending.append(store.append(msg))
        await asyncio.gather(*pending)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--compare", type=int, default=100_000,
                        help="messages per append-rate run (0: skip the comparison)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--member-of", type=int, default=20)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--dir", type=Path, help="where to put the databases (default: a temp dir)")
    parser.add_argument("--db", type=Path, help="the filled database: made if missing, kept "
                        "(the same --messages and --rooms each time)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        asyncio.run(run(args, Path(directory)))


if __name__ == "__main__":
    main()
