"""Answers are bounded in bytes and produced as the reader drains them.

A room of long messages makes a join's replay and a history page megabytes long; a big
room makes its roster megabytes long. The server must never queue more than
``send_buffer`` for a reader (the bound holds at every moment, for answers it chose to
send too), and a reader that reads must never be closed for what it asked for.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack

from tests.faults.rawws import OP_BINARY, OP_PING, RawWebSocket
from tests.faults.test_wire import closes, hello
from tests.wire import WireClient, eventually, signed_in

LONG = "\U0001f600" * 4096  # 16 KiB of UTF-8: the longest text a message may have
MESSAGES = 60  # ~1 MB per room
BOUND = 256 * 1024


async def fill(url: str, rooms: list[str], messages: int = MESSAGES) -> None:
    async with signed_in(url, "filler") as filler:
        for room in rooms:
            await filler.send({"t": "join", "room": room})
            await filler.recv_until("joined", room=room)
            for i in range(messages):
                await filler.send({"t": "say", "room": room, "text": LONG, "id": f"{room}{i}"})
            await filler.recv_n("ack", messages, timeout=30)


async def big_server(server_factory: Any, **overrides: Any) -> Any:
    # No rate limits: the room fills fast; the output bound is the subject here.
    return await server_factory(rate_limits=False, send_buffer=BOUND, close_timeout=2.0,
                                **overrides)


def watch_writes(server: Any, name: str) -> list[int]:
    """Record the write buffer of ``name``'s connection after every write to it."""
    seen = [0]
    [session] = server.hub.users[name].sessions
    transport = session.ws.transport
    write = transport.write

    def recording_write(data: Any) -> None:
        write(data)
        seen.append(transport.get_write_buffer_size())

    transport.write = recording_write
    return seen


async def test_a_reader_that_reads_gets_every_replay_of_a_join_burst(server_factory: Any) -> None:
    server = await big_server(server_factory)
    await fill(server.url, ["#big"])
    joins = 10
    # A small receive buffer: the server's kernel buffers cannot take the burst for it.
    ws = await RawWebSocket.open(server.url, rcvbuf=16 * 1024)
    try:
        await hello(ws, "reader")
        for _ in range(joins):  # all at once: 10 MB of replays asked for in one burst
            await ws.send(msgpack.packb({"t": "join", "room": "#big", "since": 0}))
        frames = []
        while sum(f["t"] == "msg" for f in frames) < MESSAGES * joins:
            opcode, payload = await ws.recv(timeout=30)
            if opcode == OP_PING:  # keepalive
                continue
            assert opcode == OP_BINARY, (opcode, payload[:40])
            frames.append(msgpack.unpackb(payload))
    finally:
        ws.close()
    # Each joined, then its replay, in order.
    assert [f["t"] for f in frames] == (["joined"] + ["msg"] * MESSAGES) * joins
    seqs = [f["seq"] for f in frames if f["t"] == "msg"]
    assert seqs == list(range(1, MESSAGES + 1)) * joins
    assert closes(server, 1013) == 0


async def test_replays_asked_for_by_a_reader_that_never_reads_stay_within_the_bound(
    server_factory: Any,
) -> None:
    server = await big_server(server_factory)
    await fill(server.url, ["#big"])
    ws = await RawWebSocket.open(server.url, rcvbuf=4096)
    try:
        await hello(ws, "sleeper")
        seen = watch_writes(server, "sleeper")
        for _ in range(10):  # 10 MB of replays, within the join bucket
            await ws.send(msgpack.packb({"t": "join", "room": "#big", "since": 0}))
        [session] = server.hub.users["sleeper"].sessions
        # Pages are produced only as the reader drains: it stalls with answers pending.
        await eventually(lambda: session.pending_answers > 0 and session.ws.paused)
        assert max(seen) <= BOUND, max(seen)
        assert not session.closing
    finally:
        ws.close()


async def test_a_history_page_is_cut_by_bytes_and_pages_on(server_factory: Any) -> None:
    server = await big_server(server_factory, page_bytes=64 * 1024)
    await fill(server.url, ["#big"])
    async with signed_in(server.url, "reader") as reader:
        await reader.send({"t": "join", "room": "#big"})
        await reader.recv_until("joined")
        got: list[int] = []
        before = None
        for _ in range(MESSAGES):
            ask: dict[str, Any] = {"t": "history", "room": "#big", "limit": 200}
            if before is not None:
                ask["before"] = before
            await reader.send(ask)
            page = await reader.recv_until("history")
            assert len(msgpack.packb(page)) <= 64 * 1024 + 1024
            seqs = [m["seq"] for m in page["msgs"]]
            got = seqs + got
            if not page["more"]:
                break
            assert seqs, "more without messages"
            before = seqs[0]
        assert got == list(range(1, MESSAGES + 1))
        assert len(got) > 4  # several pages: 4 messages of 16 KiB fit in 64 KiB
    assert closes(server, 1013) == 0


async def test_a_history_burst_of_a_reader_that_reads_is_answered_whole(
    server_factory: Any,
) -> None:
    server = await big_server(server_factory)
    await fill(server.url, ["#big"])
    async with signed_in(server.url, "reader") as reader:
        await reader.send({"t": "join", "room": "#big"})
        await reader.recv_until("joined")
        for i in range(12):  # 12 x 200 long messages asked for at once
            await reader.send({"t": "history", "room": "#big", "after": i, "limit": 200})
        pages = await reader.recv_n("history", 12, timeout=60)
        assert [p["msgs"][0]["seq"] for p in pages] == list(range(1, 13))
    assert closes(server, 1013) == 0


async def test_a_big_rooms_roster_is_bounded_for_old_clients_and_pages_for_new_ones(
    server_factory: Any,
) -> None:
    server = await server_factory(rate_limits=False, roster_limit=10, page_bytes=4096)
    display = "D" * 60
    members = [f"m{i:03d}" for i in range(40)]

    async def member(name: str) -> None:
        async with WireClient.connect(server.url) as client:
            await client.hello(name, display=display, psm="p" * 120)
            await client.send({"t": "join", "room": "#lobby"})
            await client.recv_until("joined")

    for start in range(0, len(members), 10):
        await asyncio.gather(*(member(n) for n in members[start:start + 10]))
    async with signed_in(server.url, "oldtimer") as old:
        # An old client's join: no members_limit. Still joinable, with a short roster.
        await old.send({"t": "join", "room": "#lobby"})
        joined = await old.recv_until("joined")
        assert 0 < len(joined["members"]) <= 10
        assert len(msgpack.packb(joined)) <= 4096 + 1024
        assert joined["count"] == len(members) + 1
        # A member page is cut by bytes too; paging with members gets everyone.
        names: list[str] = []
        after = None
        while True:
            ask: dict[str, Any] = {"t": "members", "room": "#lobby", "limit": 500}
            if after is not None:
                ask["after"] = after
            await old.send(ask)
            page = await old.recv_until("members")
            assert len(msgpack.packb(page)) <= 4096 + 1024
            names += [m["name"] for m in page["members"]]
            if not page["more"]:
                break
            after = names[-1]
        assert names == sorted([*members, "oldtimer"])
