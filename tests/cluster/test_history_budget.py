"""History pages on a cluster read about a page from Redis, not ``limit`` messages.

read.lua takes a page's byte budget and stops before the message that would take what
it read over it (always one), saying where it stopped; the node's page (the domain's
``_history_page``, the same rule as a single node's) is cut from what it read. Without
the budget a page of long messages read up to ``limit`` + 1 whole messages only to send
a few. These tests page through rooms of mixed sizes on two nodes and check that every
message comes once, in order, each page being the one the domain's rule makes, a page
cut by bytes saying ``more``, and that Redis sent about a page per page.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from cfm_common.codec import decode_server, encode_map, encode_msg
from cfm_common.frames import Reaction, StoredMsg
from cfm_server.pages import FRAME_SLACK, first_within, last_within, stored_msg_size
from tests.wire import WireClient, signed_in

ROOM = "#long"
LIMIT = 50
# No search index: its indexer reads the room's entries from Redis too.
NODE_DEFAULTS = {"rate_limits": False, "search_index": False}
# Redis's own output besides the read of a page, between two readings of its counter:
# one ``INFO stats`` reply (~1.5 KB), heartbeats, pings. Far below what reading
# ``LIMIT`` + 1 long messages costs (~100 KB here).
NOISE = 8 * 1024
# What a page's read may hold beyond the budget: read.lua weighs each entry FRAME_SLACK
# less than its frame's bytes, and its reply spends ~60 bytes per row around them.
PER_ROW = FRAME_SLACK + 64


def text_of(i: int) -> str:
    """Mixed sizes: every other message near the 4,096-character limit, the others tiny,
    now and then a non-ASCII one (the page weighs it four bytes a character)."""
    if i % 2:
        return f"{i}"
    if i % 10 == 4:
        return f"{i} " + "é" * 1500
    return (f"{i} " + "x" * 4096)[: 4096 - i % 7]


async def redis_out(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_net_output_bytes"])


async def history(client: WireClient, ref: str, **keys: Any) -> dict[str, Any]:
    await client.send({"t": "history", "room": ROOM, "limit": LIMIT, "id": ref, **keys})
    return await client.recv_until("history", ref=ref)


def stored(msg: dict[str, Any]) -> StoredMsg:
    return decode_server(encode_map({"t": "msg", **msg})).to_stored()  # type: ignore[union-attr]


def expected_page(shown: list[StoredMsg], budget: int, *, before: int | None = None,
                  after: int | None = None) -> tuple[list[int], bool]:
    """The seqs and ``more`` of the page the domain's rule makes of the whole history:
    ``LIMIT`` + 1 read, ``LIMIT`` kept, then cut at ``budget`` (pages.first/last_within)."""
    if after is not None:
        window = [m for m in shown if m.seq > after][: LIMIT + 1]
        more = len(window) > LIMIT
        window = window[:LIMIT]
        kept = first_within(window, stored_msg_size, budget)
    else:
        window = [m for m in shown if before is None or m.seq < before][-(LIMIT + 1):]
        more = len(window) > LIMIT
        window = window[-LIMIT:]
        kept = last_within(window, stored_msg_size, budget)
    return [m.seq for m in kept], more or len(kept) < len(window)


async def fill(alice: WireClient, n: int) -> None:
    """``n`` messages of mixed sizes, then an edit of a long one to a short text and a
    delete of another (their entries are messages of the history too)."""
    for i in range(n):
        await alice.send({"t": "say", "room": ROOM, "text": text_of(i), "id": f"m{i}"})
        await alice.recv_until("ack", id=f"m{i}")
    for t, cid, target, keys in (("edit", "e1", 3, {"text": "short now"}),
                                 ("delete", "d1", 7, {})):
        await alice.send({"t": t, "room": ROOM, "target": target, "id": cid, **keys})
        await alice.recv_until("ack", id=cid)


@pytest.mark.parametrize("page_bytes", [1024, 16 * 1024])
async def test_paging_through_mixed_sizes_gets_every_message_once_reading_about_a_page(
        nodes, redis, page_bytes: int) -> None:
    a, b = await nodes(page_bytes=page_bytes), await nodes(page_bytes=page_bytes)
    budget = a.config.answer_page_bytes
    n = 120
    client = Redis.from_url(redis.url)
    try:
        async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
            for c in (alice, bob):
                await c.send({"t": "join", "room": ROOM})
                await c.recv_until("joined", room=ROOM)
            await fill(alice, n)
            top = n + 2
            await bob.recv_until("msg", seq=top, timeout=10)

            # Back from the newest, on the other node than the writer's.
            pages: list[dict[str, Any]] = []
            anchors: list[int | None] = [None]
            read: list[int] = []
            for i in range(top + 1):  # at least one message a page
                before = anchors[-1]
                out = await redis_out(client)
                page = await history(bob, f"b{i}", **({} if before is None else
                                                     {"before": before}))
                read.append(await redis_out(client) - out)
                pages.append(page)
                if not page["more"]:
                    break
                anchors.append(page["msgs"][0]["seq"])
            seqs = [m["seq"] for page in reversed(pages) for m in page["msgs"]]
            assert seqs == list(range(1, top + 1)), "every message once, in order"
            shown = [stored(m) for page in reversed(pages) for m in page["msgs"]]
            for page, before, spent in zip(pages, anchors, read, strict=True):
                got = ([m["seq"] for m in page["msgs"]], page["more"])
                assert got == expected_page(shown, budget, before=before), before
                # About a page read from Redis, not LIMIT + 1 long messages.
                assert spent <= budget + PER_ROW * len(page["msgs"]) + 4096 + NOISE, \
                    (before, spent)
            assert any(len(p["msgs"]) < LIMIT and p["more"] for p in pages), \
                "some page is cut by bytes, and says more"

            # Forward from the start, on the writer's node.
            after, count = 0, 0
            for i in range(top + 1):
                out = await redis_out(client)
                page = await history(alice, f"a{i}", after=after)
                spent = await redis_out(client) - out
                got = [m["seq"] for m in page["msgs"]]
                assert (got, page["more"]) == expected_page(shown, budget, after=after)
                assert got == list(range(after + 1, after + 1 + len(got)))
                assert spent <= budget + PER_ROW * len(got) + 4096 + NOISE, (after, spent)
                count += len(got)
                if not page["more"]:
                    break
                after = got[-1]
            assert count == top

            # A join's replay (read.lua without a budget) still carries every message once.
            async with signed_in(a.url, "carol") as carol:
                await carol.send({"t": "join", "room": ROOM, "since": 0})
                await carol.recv_until("joined", room=ROOM)
                replay = [await carol.recv_until("msg", timeout=10) for _ in range(top)]
                assert [m["seq"] for m in replay] == list(range(1, top + 1))
                assert replay[2]["text"] == "short now"  # seq 3, edited
    finally:
        await client.aclose()


async def test_a_budgeted_read_stops_before_the_message_over_the_budget(broker_factory) -> None:
    broker = await broker_factory()
    for i in range(30):
        await broker.submit("#r", "alice", f"c{i}", "text", f"{i} " + "y" * 3998, 1000 + i)
    frame = len(encode_msg(StoredMsg("#r", 10, "alice", "10 " + "y" * 3998, 1010, "text",
                                     "c9")))
    per_page = 16384 // (frame - FRAME_SLACK)  # how many the budget takes

    newest = await broker.page("#r", before=None, limit=31, budget=16384)
    assert [m.seq for m in newest.msgs] == list(range(31 - per_page, 31))
    assert newest.stopped == 30 - per_page
    oldest = await broker.page("#r", after=0, limit=31, budget=16384)
    assert [m.seq for m in oldest.msgs] == list(range(1, per_page + 1))
    assert oldest.stopped == per_page + 1
    # Always one, even over the budget; none left out past the window's end.
    one = await broker.page("#r", after=4, limit=31, budget=10)
    assert [m.seq for m in one.msgs] == [5] and one.stopped == 6
    assert (await broker.page("#r", before=3, limit=31, budget=10)).msgs[0].seq == 2
    tail = await broker.page("#r", after=27, limit=10, budget=16384)
    assert [m.seq for m in tail.msgs] == [28, 29, 30] and tail.stopped is None
    # Without a budget (joins' replays, gap fills, the search indexer): the whole window.
    whole = await broker.history("#r", after=0, limit=31)
    assert [m.seq for m in whole] == list(range(1, 31))


def test_a_frame_weighs_no_more_in_a_budgeted_read_than_in_a_page() -> None:
    """read.lua weighs an entry as its frame's bytes less FRAME_SLACK: never more than
    the page's measure, else it could stop before a message the page would hold."""
    top = 2**63 - 1
    shapes = [
        StoredMsg("#r", 1, "a", "", 1, "text", None),
        StoredMsg("#r", top, "a", "hi", top, "nudge", None),
        StoredMsg("#" + "r" * 63, top, "b" * 32, "x" * 4096, top, "text", "i" * 64),
        StoredMsg("dm:" + "a" * 32 + ":" + "b" * 32, top, "a" * 32, "é" * 4096, top, "text",
                  "i" * 64, hidden=True, reply=top, mentions=("b" * 32,) * 20),
        StoredMsg("#r", top, "a" * 32, "", top, "text", "i" * 64, change="unreact",
                  target=top, emoji="\U0001F600" * 16, edited=top, deleted=True),
        StoredMsg("#r", top, "a", "t", top, "text", "i", edited=top,
                  reactions=(Reaction("\U0001F600", ("a" * 32, "b")),)),
    ]
    for m in shapes:
        assert len(encode_msg(m)) - FRAME_SLACK <= stored_msg_size(m), m
