"""The say path: ordering, idempotent retries, failed commits, slow readers."""

from __future__ import annotations

import asyncio
import socket

import pytest
from websockets.exceptions import ConnectionClosed

from tests.wire import WireClient, eventually, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)


async def join(client: WireClient, room: str = "#lobby") -> dict:
    await client.send({"t": "join", "room": room})
    return await client.recv_until("joined", room=room)


async def test_pipelined_says_are_acked_and_fanned_out_in_seq_order(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await join(alice)
        await join(bob)
        n = 50
        for i in range(n):  # no waiting between them: the commits group up
            await alice.send({"t": "say", "room": "#lobby", "text": f"m{i}", "id": f"id{i}"})
        acks = await alice.recv_n("ack", n)
        assert [a["id"] for a in acks] == [f"id{i}" for i in range(n)]
        assert [a["seq"] for a in acks] == list(range(1, n + 1))
        msgs = await bob.recv_n("msg", n)
        assert [m["seq"] for m in msgs] == list(range(1, n + 1))
        assert [m["text"] for m in msgs] == [f"m{i}" for i in range(n)]


async def test_a_retry_gets_the_original_ack_and_is_not_delivered_again(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await join(alice)
        await join(bob)
        frame = {"t": "say", "room": "#lobby", "text": "once", "id": "r1"}
        await alice.send(frame)
        await alice.send(frame)  # while the first may still be in flight
        first, second = await alice.recv_n("ack", 2)
        assert first == second
        await alice.send(frame)  # long after its commit
        assert await alice.recv_until("ack") == first
        async with WireClient.connect(server.url) as again:  # from another session
            await again.hello("alice", token=alice.token)
            await again.send(frame)
            assert await again.recv_until("ack") == first
        assert (await bob.recv_until("msg"))["id"] == "r1"
        await bob.expect_silence("msg")
        await alice.send({"t": "history", "room": "#lobby"})
        assert len((await alice.recv_until("history"))["msgs"]) == 1


async def test_a_retry_after_a_restart_gets_the_original_ack(server_factory, tmp_path) -> None:
    data_dir = tmp_path / "shared"
    server = await server_factory(data_dir=data_dir)
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "say", "to": "alice2", "text": "x", "id": "z"})
        assert (await alice.recv_until("error"))["code"] == "no_such_user"
        await join(alice)
        await alice.send({"t": "say", "room": "#lobby", "text": "kept", "id": "k1"})
        await alice.send({"t": "nudge", "to": "alice", "id": "k2"})  # refused, not stored
        ack = await alice.recv_until("ack")
        token = alice.token
    await server.stop()
    server = await server_factory(data_dir=data_dir)
    async with WireClient.connect(server.url) as alice:
        welcome = await alice.hello("alice", token=token)
        assert {r["room"]: r["seq"] for r in welcome["rooms"]} == {"#lobby": 1}
        await alice.send({"t": "say", "room": "#lobby", "text": "kept", "id": "k1"})
        assert await alice.recv_until("ack") == ack
        await alice.send({"t": "history", "room": "#lobby"})
        assert [m["id"] for m in (await alice.recv_until("history"))["msgs"]] == ["k1"]
        await alice.send({"t": "say", "room": "#lobby", "text": "next", "id": "k3"})
        assert (await alice.recv_until("ack"))["seq"] == 2


@pytest.mark.single_node("makes the SQLite commit fail")
async def test_a_failed_commit_is_answered_internal_never_acked(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await join(alice)
        await join(bob)
        await server.store.close()  # every later write fails, as on a broken disk
        await alice.send({"t": "say", "room": "#lobby", "text": "lost", "id": "f1"})
        error = await alice.recv_until("error")
        assert error["code"] == "internal" and error["ref"] == "f1"
        await bob.expect_silence("msg")
        await alice.expect_silence("ack")


async def slow_socket(server) -> socket.socket:
    """A client socket with a tiny receive buffer, so a stalled reader backs up quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    return sock


async def test_a_slow_reader_is_closed_1013_and_others_keep_receiving(server_factory) -> None:
    server = await server_factory(send_buffer=32 * 1024, rate_limits=False, close_timeout=5.0)
    sock = await slow_socket(server)
    slow = await WireClient.open(server.url, sock=sock, max_queue=1)
    try:
        assert (await slow.hello("slow"))["t"] == "welcome"
        await join(slow)
        async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
            await join(alice)
            await join(bob)
            slow_user = server.hub.users["slow"]
            text = "x" * 4000
            sent = 0
            # The slow client reads nothing from here on; bounded: at most 3000 messages.
            while slow_user.sessions and not slow_user.sessions[0].closing and sent < 3000:
                for _ in range(50):
                    await alice.send({"t": "say", "room": "#lobby", "text": text,
                                      "id": f"m{sent}"})
                    sent += 1
                await alice.recv_n("ack", 50, timeout=10)
                msgs = await bob.recv_n("msg", 50, timeout=10)
                assert msgs[-1]["id"] == f"m{sent - 1}"  # bob keeps up the whole time
            assert sent < 3000, "the slow reader was never closed"
            code = None
            try:
                while True:
                    await asyncio.wait_for(slow.ws.recv(), 10)
            except ConnectionClosed:
                code = slow.ws.close_code
            assert code == 1013
            # bob still gets messages after the slow one is gone.
            await alice.send({"t": "say", "room": "#lobby", "text": "after", "id": "after"})
            assert (await bob.recv_until("msg"))["id"] == "after"
    finally:
        await slow.close()
    await eventually(lambda: not server.hub.users["slow"].sessions)


def _here_matches_the_members(server) -> bool:
    """Every node's ``Room.here`` holds exactly the sessions there of the room's members
    (the fan-out's recipients are kept at sign-in, sign-out, join and leave)."""
    for node in getattr(server, "nodes", [server]):
        world = node.hub.world
        for room in world.rooms.values():
            expected = {s for name in room.members for s in world.users[name].sessions}
            if room.here != expected:
                return False
    return True


async def test_a_rooms_sessions_follow_sign_ins_joins_and_leaves(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await join(alice, "#tea")
        await join(bob, "#tea")
        async with WireClient.connect(server.url) as again:  # alice's second session
            assert (await again.hello("alice", token=alice.token))["t"] == "welcome"
            await eventually(lambda: _here_matches_the_members(server))
            await bob.send({"t": "say", "room": "#tea", "text": "both", "id": "b1"})
            assert (await again.recv_until("msg"))["text"] == "both"
            assert (await alice.recv_until("msg"))["text"] == "both"
            await alice.send({"t": "leave", "room": "#tea"})
            await alice.recv_until("left", room="#tea")
            await again.recv_until("left", room="#tea")
            await eventually(lambda: _here_matches_the_members(server))
            await bob.send({"t": "say", "room": "#tea", "text": "gone", "id": "b2"})
            await bob.recv_until("ack")
            await again.expect_silence("msg")
            await join(again, "#tea")  # back, from the second session
            await eventually(lambda: _here_matches_the_members(server))
            await bob.send({"t": "say", "room": "#tea", "text": "back", "id": "b3"})
            assert (await alice.recv_until("msg"))["text"] == "back"
        await eventually(lambda: _here_matches_the_members(server))  # signed out
        await bob.send({"t": "say", "room": "#tea", "text": "one", "id": "b4"})
        assert (await alice.recv_until("msg"))["text"] == "one"
    await eventually(lambda: _here_matches_the_members(server))
