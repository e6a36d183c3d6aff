"""A client that asks for answers and hangs up costs nothing more once it is gone.

Forty ``join{since:0}`` of a room of 1 MB ask for 40 MB of replay, produced a page at a
time as the reader drains. A client that sends them and then drops its connection used
to keep the server producing every page for a connection nobody read: read from the
store (on a cluster node, from Redis: ~1,100 Redis calls a second for 9 s after 16 such
clients hung up, 28 % of Redis's core, another user's DMs p50 3.5 -> 116 ms), encoded
and thrown away. Now the answers still to be produced are dropped when the connection
is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from websockets.protocol import State

from cfm_server.pages import awaited
from tests.faults.rawws import RawWebSocket
from tests.faults.test_big_answers import MESSAGES, big_server, fill
from tests.faults.test_wire import hello
from tests.modes import nodes_of
from tests.wire import WireClient, eventually, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)

JOINS = 40


def msgs_sent(node: Any) -> float:
    key = 'cfm_frames_out_total{type="msg"} '
    for line in node.metrics.render().decode().splitlines():
        if line.startswith(key):
            return float(line.split()[-1])
    return 0.0


async def test_answers_of_a_connection_that_hung_up_are_not_produced(
    server_factory: Any,
) -> None:
    server = await big_server(server_factory)
    await fill(server.url, ["#big"])
    # A small receive buffer and no reading: the answers stall behind the first pages.
    ws = await RawWebSocket.open(server.url, rcvbuf=16 * 1024)
    await hello(ws, "gone")
    [(node, session)] = [(node, s) for node in nodes_of(server)
                         if (user := node.hub.users.get("gone")) is not None
                         for s in user.sessions]
    for _ in range(JOINS):
        await ws.send(msgpack.packb({"t": "join", "room": "#big", "since": 0}))
    await eventually(lambda: session.pending_answers >= JOINS - 5)  # read, and stalled
    before = msgs_sent(node)
    ws.writer.transport.abort()  # hangs up without a close
    await eventually(lambda: session.ws.protocol.state is State.CLOSED)
    # Dropped with the connection. Before, they stayed: produced page by page for nobody
    # (JOINS x MESSAGES msgs read and thrown away) or, with the write buffer of the dead
    # transport still counted, held for good.
    assert session.pending_answers == 0
    await asyncio.sleep(0.2)  # (a few loop turns: no page is produced any more)
    assert session.pending_answers == 0
    assert msgs_sent(node) - before < MESSAGES, (msgs_sent(node), before)


async def test_an_answer_whose_read_is_called_off_is_answered_internal(
    server_factory: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    # A cluster node's join waits for its subscription to the room, which is undone
    # (cancelled) when the last member on the node signs out. The CancelledError got out
    # of the session's pump: a traceback at ERROR, and the answer neither sent nor refused.
    server = await server_factory()
    async with signed_in(server.url, "asker") as client:
        [session] = [s for node in nodes_of(server)
                     if (user := node.hub.users.get("asker")) is not None
                     for s in user.sessions]
        read: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def pages() -> Iterator[Any]:
            yield from awaited(read)
            yield b"never"

        session.answer(pages(), "q1")
        read.cancel()
        error = await client.recv_until("error")
        assert (error["code"], error["ref"]) == ("internal", "q1") and error["retry_ms"] > 0
        await client.send({"t": "join", "room": "#after", "id": "j"})  # the session goes on
        assert (await client.recv_until("joined"))["ref"] == "j"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_user_is_not_told_of_its_own_return_before_its_welcome(
    server_factory: Any,
) -> None:
    # A session's join answer lists the room's members as its user sees them, when it is
    # produced: for a session whose connection was lost, after its user's last session
    # ended, so within the presence grace — the user itself listed "offline" to itself,
    # and recorded as a watcher to tell of the return. Its next session then got its own
    # presence frame before its welcome (a client reconnecting at once, 13 times in four
    # runs of 64 join-and-hang-ups on two nodes). Producing that roster is what the
    # answer did; the session no longer produces answers once its connection is gone.
    server = await server_factory(presence_grace=60)
    node = nodes_of(server)[0]
    async with signed_in(node.url, "alice") as alice:
        token = alice.token
    await eventually(lambda: "alice" in node.hub.presence.going_offline)
    node.hub.presence.roster_entry("alice", "alice")  # (what that answer did)
    async with WireClient.connect(node.url) as again:
        await again.send({"t": "hello", "v": 1, "name": "alice", "token": token})
        assert (await again.recv())["t"] == "welcome"
        await again.expect_silence("presence")
