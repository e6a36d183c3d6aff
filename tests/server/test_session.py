"""Sign-in and the connection's life: hello, welcome, tokens, name rules, close codes."""

from __future__ import annotations

import msgpack
import pytest

from tests.modes import nodes_of
from tests.wire import WireClient, eventually, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)


async def test_first_hello_claims_the_name_and_returns_a_token(server) -> None:
    async with WireClient.connect(server.url) as client:
        welcome = await client.hello("Alice", display="Alice A.", psm="hi", status="busy")
    assert welcome["t"] == "welcome"
    assert welcome["v"] == 1
    assert welcome["name"] == "alice"  # handles are lower-cased
    assert welcome["display"] == "Alice A."
    assert welcome["psm"] == "hi"
    assert welcome["status"] == "busy"
    assert isinstance(welcome["token"], str) and len(welcome["token"]) >= 40
    assert welcome["session"]
    assert welcome["limits"]["max_text"] == server.config.max_text
    assert welcome["limits"]["max_frame"] == server.config.max_frame
    assert welcome["limits"]["rates"]["say"]["burst"] == server.config.say_burst
    assert welcome["rooms"] == []
    assert welcome["contacts"] == []


async def test_the_store_keeps_only_a_hash_of_the_token(server) -> None:
    async with WireClient.connect(server.url) as client:
        welcome = await client.hello("alice")
    record = server.hub.users["alice"].record
    assert welcome["token"] not in record.token_hash
    assert len(record.token_hash) == 64


async def test_a_known_name_needs_its_token(server) -> None:
    async with WireClient.connect(server.url) as client:
        token = (await client.hello("alice"))["token"]
    async with WireClient.connect(server.url) as client:
        again = await client.hello("ALICE", token=token)
        assert again["t"] == "welcome" and again["token"] == token
    async with WireClient.connect(server.url) as client:
        error = await client.hello("alice")
        assert error == {"t": "error", "code": "name_taken", "msg": error["msg"], "ref": "hello"}
        assert await client.wait_closed() == 4002
    async with WireClient.connect(server.url) as client:
        error = await client.hello("alice", token="not-the-token")
        assert error["code"] == "bad_token" and error["ref"] == "hello"
        assert await client.wait_closed() == 4003


async def test_reserved_names_cannot_be_claimed(server) -> None:
    async with WireClient.connect(server.url) as client:
        error = await client.hello("Admin")
        assert error["code"] == "name_taken"
        assert await client.wait_closed() == 4002


async def test_an_invalid_name_keeps_the_connection_open_for_another_hello(server) -> None:
    async with WireClient.connect(server.url) as client:
        error = await client.hello("-bad name-")
        assert error["code"] == "name_invalid" and error["ref"] == "hello"
        welcome = await client.hello("good_name")
        assert welcome["t"] == "welcome"


async def test_unsupported_version_closes_4004(server) -> None:
    async with WireClient.connect(server.url) as client:
        await client.send({"t": "hello", "v": 2, "name": "alice"})
        error = await client.recv()
        assert error["code"] == "unsupported_version" and error["ref"] == "hello"
        assert await client.wait_closed() == 4004


async def test_frames_before_hello_get_hello_required(server) -> None:
    async with WireClient.connect(server.url) as client:
        await client.send({"t": "say", "room": "#lobby", "text": "hi", "id": "m1"})
        error = await client.recv()
        assert error["code"] == "hello_required" and error["ref"] == "m1"
        await client.send({"t": "join", "room": "#lobby"})
        assert (await client.recv())["ref"] == "join"
        assert (await client.hello("alice"))["t"] == "welcome"


async def test_undecodable_frames_before_hello_get_the_same_error_as_after(server) -> None:
    async with WireClient.connect(server.url) as client:
        await client.send_raw(b"\xff\x00garbage")
        error = await client.recv()
        assert error["code"] == "bad_frame" and "ref" not in error
        await client.send({"t": "wink", "id": "m1"})
        error = await client.recv()
        assert error["code"] == "unknown_type" and error["ref"] == "wink"
        assert (await client.hello("alice"))["t"] == "welcome"


async def test_no_hello_in_time_closes_4001(server_factory) -> None:
    server = await server_factory(hello_timeout=0.3)
    async with WireClient.connect(server.url) as client:
        assert await client.wait_closed(timeout=3) == 4001


async def test_a_text_message_closes_1003(server) -> None:
    async with signed_in(server.url, "alice") as client:
        await client.send_raw("hello as text")
        assert await client.wait_closed() == 1003


async def test_a_text_message_before_hello_closes_1003(server) -> None:
    async with WireClient.connect(server.url) as client:
        await client.send_raw("{}")
        assert await client.wait_closed() == 1003


async def test_a_frame_over_max_frame_closes_1009(server_factory) -> None:
    server = await server_factory(max_frame=2048, max_text=1000)
    async with signed_in(server.url, "alice") as client:
        await client.send({"t": "say", "room": "#lobby", "text": "x" * 3000, "id": "big"})
        assert await client.wait_closed() == 1009


async def test_bad_frames_are_answered_and_the_connection_stays_open(server) -> None:
    async with signed_in(server.url, "alice") as client:
        await client.send_raw(b"\xc1")  # never valid msgpack
        assert (await client.recv())["code"] == "bad_frame"
        await client.send_raw(msgpack.packb([1, 2, 3]))
        assert (await client.recv())["code"] == "bad_frame"
        await client.send({"t": "dance"})
        error = await client.recv()
        assert error["code"] == "unknown_type" and error["ref"] == "dance"
        await client.send({"t": "join", "room": "lobby"})
        error = await client.recv()
        assert error["code"] == "bad_frame" and error["ref"] == "join"
        await client.send({"t": "say", "room": "#lobby", "text": "x" * 5000, "id": "long"})
        error = await client.recv()
        assert error["code"] == "too_long" and error["ref"] == "long"
        await client.send({"t": "presence", "status": "offline"})
        assert (await client.recv())["code"] == "bad_frame"
        await client.send({"t": "presence", "psm": "x" * 200})
        assert (await client.recv())["code"] == "too_long"
        await client.send({"t": "hello", "v": 1, "name": "alice"})
        error = await client.recv()
        assert error["code"] == "bad_frame" and error["ref"] == "hello"
        await client.send({"t": "join", "room": "#lobby"})
        assert (await client.recv())["t"] == "joined"


async def test_one_user_may_have_several_sessions(server) -> None:
    async with (
        signed_in(server.url, "alice") as first,
        WireClient.connect(server.url) as second,
    ):
        welcome = await second.hello("alice", token=first.token)
        assert welcome["t"] == "welcome"
        assert welcome["session"] != first.welcome["session"]
        # (Over the nodes, in cluster mode: the two sessions are on different ones.)
        assert sum(len(n.hub.users["alice"].sessions) for n in nodes_of(server)) == 2
    await eventually(lambda: not any(n.hub.users["alice"].sessions for n in nodes_of(server)))


@pytest.mark.parametrize("status", ["online", "away", "invisible"])
async def test_hello_status_is_echoed_in_welcome(server, status: str) -> None:
    async with signed_in(server.url, "alice", status=status) as client:
        assert client.welcome["status"] == status


@pytest.mark.single_node("one Server object's port and url")
async def test_the_port_and_url_stay_readable_after_stop(server_factory) -> None:
    server = await server_factory()
    port, url = server.port, server.url
    await server.stop(close_code=1001)
    assert server.port == port and server.url == url
    # A restart on the same data dir and port, as the fault and TUI tests do.
    again = await server_factory(port=port, data_dir=server.config.data_dir)
    async with signed_in(again.url, "alice") as alice:
        assert alice.welcome["name"] == "alice"
