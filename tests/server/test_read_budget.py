"""The bytes of stored messages a user's answers read (join replays, history pages,
search results) come from one bucket per user (``read_budget``): more sessions give one
person no more reading, while another user and an honest resume are not held back."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest

from cfm_common.codec import encode_msg
from cfm_common.frames import StoredMsg
from cfm_server.config import ServerConfig
from cfm_server.wsframe import frame_binary
from tests.wire import WireClient, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)

READ_WORDS = "too much history read (all your sessions together); try again later"


async def _fill(client: WireClient, room: str, n: int, size: int) -> None:
    """``n`` messages of ``size`` characters in ``room``, each acked."""
    await client.send({"t": "join", "room": room})
    await client.recv_until("joined")
    for i in range(n):
        await client.send({"t": "say", "room": room, "text": "x" * size, "id": f"{room}-{i}"})
        await client.recv_until("ack", id=f"{room}-{i}")


async def _answers(client: WireClient, refs: set[str]) -> dict[str, dict[str, Any]]:
    """Read until each of ``refs`` was answered (history or error): ref → the answer."""
    got: dict[str, dict[str, Any]] = {}
    while set(got) != refs:
        frame = await client.recv()
        if frame["t"] in ("history", "error") and frame.get("ref") in refs:
            got[frame["ref"]] = frame
    return got


async def test_one_users_sessions_share_a_read_budget(server_factory) -> None:
    """Four sessions of alice ask for three pages of long messages each (12 pages of
    ~128 KiB, 1.5 MB), over a read budget of 256 KiB and 8 KiB a second: most are
    refused with rate_limited, their ref and a retry_ms, and a join's replay breaks off
    with the same error after its joined. Bob's pages (60 KB each, three: within a
    budget of his own the same size) are all answered."""
    server = await server_factory(user_read_rate=8192.0, user_read_burst=262144)
    async with signed_in(server.url, "alice") as alice, AsyncExitStack() as stack:
        await _fill(alice, "#den", 50, 3000)
        sessions = [alice] + [
            await stack.enter_async_context(signed_in(server.url, "alice", token=alice.token))
            for _ in range(3)]
        second = sessions[1]
        async with signed_in(server.url, "bob") as bob:
            asked = [{f"h{i}-{n}" for n in range(3)} for i in range(4)]
            for n in range(3):
                for i, session in enumerate(sessions):
                    await session.send({"t": "history", "room": "#den", "limit": 200,
                                        "id": f"h{i}-{n}"})
            answers = [await _answers(s, refs) for s, refs in zip(sessions, asked, strict=True)]
            await second.send({"t": "join", "room": "#den", "since": 0, "id": "j"})
            await second.recv_until("joined", ref="j")
            replayed = []
            while (frame := await second.recv())["t"] == "msg":
                replayed.append(frame)
            await bob.send({"t": "join", "room": "#den"})
            await bob.recv_until("joined")
            for n in range(3):
                await bob.send({"t": "history", "room": "#den", "limit": 20, "id": f"b{n}"})
            bobs = await _answers(bob, {"b0", "b1", "b2"})
    every = [a for by_ref in answers for a in by_ref.values()]
    refused = [a for a in every if a["t"] == "error"]
    pages = [a for a in every if a["t"] == "history"]
    assert refused and {e["code"] for e in refused} == {"rate_limited"}, refused
    assert all(e["retry_ms"] > 0 and e["msg"] == READ_WORDS for e in refused)
    assert 1 <= len(pages) <= 4  # the burst's two, and a little refill meanwhile
    assert all(p["msgs"] for p in pages)
    assert frame["t"] == "error" and frame["code"] == "rate_limited" and frame["ref"] == "j"
    assert len(replayed) < 50
    assert [a["t"] for a in bobs.values()] == ["history"] * 3


async def test_an_honest_resume_is_not_refused(server_factory) -> None:
    """Three sessions of carol replay ten rooms of 100 messages each (join{since:0}) and
    page back through them, at the default read budget: nothing is refused."""
    # Alice writes fast (not what is tested); carol reads at the defaults.
    server = await server_factory(user_say_rate=1000.0, user_say_burst=1000,
                                  say_rate=1000.0, say_burst=1000,
                                  recv_rate=1e7, recv_burst=10_000_000)
    rooms = [f"#r{n}" for n in range(10)]
    async with signed_in(server.url, "alice") as alice, \
            signed_in(server.url, "carol") as carol:
        for room in rooms:
            await _fill(alice, room, 100, 100)
        async with (
            signed_in(server.url, "carol", token=carol.token) as second,
            signed_in(server.url, "carol", token=carol.token) as third,
        ):
            # One session after the other: a join racing the same user's join of the
            # room on the other node can be answered seq 0 without its replay there (a
            # cluster race outside the read budget, reported separately).
            for session in (carol, second, third):
                for room in rooms:
                    await session.send({"t": "join", "room": room, "since": 0,
                                        "id": f"j{room}"})
                for room in rooms:
                    await session.send({"t": "history", "room": room, "limit": 200,
                                        "id": f"h{room}"})
                got = await _answers(session, {f"h{room}" for room in rooms})
                assert [a["t"] for a in got.values()] == ["history"] * 10
                assert all(len(a["msgs"]) == 100 for a in got.values())
                assert sum(f["t"] == "msg" for f in session.seen) == 1000
                assert not [f for f in session.seen if f["t"] == "error"]


def test_the_default_burst_covers_a_resume_of_50_rooms_of_500_messages() -> None:
    """What an SDK resuming 50 rooms of 500 messages of 100 characters reads, framed as
    the server sends it, is within the default burst of the read budget."""
    config = ServerConfig()
    msg = StoredMsg("#general-chat", 123456, "somebody", "y" * 100, 1_767_225_600_000,
                    "text", "c-0123456789")
    total = 50 * 500 * len(frame_binary(encode_msg(msg)))
    assert total < config.user_read_burst
