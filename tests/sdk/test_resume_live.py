"""Reconnect and resume against a real server: nothing missed, nothing doubled."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from cfm_common import tokens
from cfm_common.client import Client, ClientError, ConnectionState
from tests.faults.proxy import CuttingProxy
from tests.sdk.conftest import Recorder, restart
from tests.wire import eventually

LOBBY = "#lobby"


def cut(server: Any, name: str) -> int:
    """Drop every connection of ``name`` like a network failure would (no close frame)."""
    sessions = list(server.hub.users[name].sessions)
    for session in sessions:
        session.ws.transport.abort()
    return len(sessions)


def connects(recorder: Recorder) -> int:
    return sum(1 for s in recorder.states() if s.state is ConnectionState.CONNECTED)


async def test_resume_after_a_cut_connection_misses_and_doubles_nothing(
    server_factory: Any, clients: Any
) -> None:
    server = await server_factory(rate_limits=False)
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    await alice.join(LOBBY)
    await bob.join(LOBBY)
    events = Recorder(alice)

    for i in range(30):
        await bob.say(f"before {i}", room=LOBBY)
    assert cut(server, "alice") == 1
    # While alice is away (and while she catches up) bob keeps talking.
    await asyncio.gather(*(bob.say(f"away {i}", room=LOBBY) for i in range(30)))
    await events.wait(lambda r: connects(r) >= 2)
    for i in range(30):
        await bob.say(f"after {i}", room=LOBBY)

    await events.wait(lambda r: len(r.msgs(LOBBY)) >= 90)
    await alice.say("sync", room=LOBBY)  # anything doubled would come before this
    await events.wait(lambda r: r.msgs(LOBBY)[-1].text == "sync")
    assert events.seqs(LOBBY) == list(range(1, 92))
    reconnecting = [s for s in events.states() if s.state is ConnectionState.RECONNECTING]
    assert reconnecting and reconnecting[0].retry_in is not None
    assert 0 < reconnecting[0].retry_in <= 30


async def test_resume_across_a_server_restart_while_another_client_keeps_sending(
    server_factory: Any, clients: Any
) -> None:
    server = await server_factory(rate_limits=False)
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    await alice.join(LOBBY)
    await bob.join(LOBBY)
    events = Recorder(alice)
    acked = asyncio.Event()

    async def talk() -> list[Any]:
        acks = []
        for i in range(60):
            acks.append(await bob.say(f"m{i}", room=LOBBY))
            if i == 20:
                acked.set()
        return acks

    talker = asyncio.create_task(talk())
    await asyncio.wait_for(acked.wait(), 10)
    server = await restart(server_factory, server, rate_limits=False)
    acks = await asyncio.wait_for(talker, 20)

    assert [a.seq for a in acks] == list(range(1, 61))
    await events.wait(lambda r: len(r.msgs(LOBBY)) >= 60, timeout=20)
    assert [m.text for m in events.msgs(LOBBY)] == [f"m{i}" for i in range(60)]
    assert events.seqs(LOBBY) == list(range(1, 61))
    assert connects(events) == 2
    assert any(s.state is ConnectionState.RECONNECTING and s.retry_in for s in events.states())
    # The server stored each message once.
    page = await alice.history(LOBBY, after=0, limit=200)
    assert [m.text for m in page.msgs] == [f"m{i}" for i in range(60)]


async def test_unacked_says_are_resent_with_the_same_id_and_stored_once(
    server_factory: Any, clients: Any
) -> None:
    server = await server_factory(rate_limits=False)
    # alice goes through a proxy that can keep the server's replies from her, so her
    # says reach the server and are stored while their acks never come back.
    proxy = CuttingProxy("127.0.0.1", server.port, random.Random(0))
    proxy.cutting = False
    await proxy.start()
    try:
        alice, bob = clients(proxy.url(), "alice"), clients(server.url, "bob")
        await alice.connect()
        await bob.connect()
        await alice.join(LOBBY)
        await bob.join(LOBBY)
        watcher = Recorder(bob)

        proxy.holding = True
        says = [asyncio.create_task(alice.say(f"m{i}", room=LOBBY, id=f"id-{i}"))
                for i in range(40)]
        await watcher.wait(lambda r: len(r.msgs(LOBBY)) >= 40, timeout=10)  # all stored
        assert alice.pending == 40  # and not one ack has reached her
        port, data_dir = server.port, server.config.data_dir
        await server.stop(close_code=1012)
        proxy.drop_all()  # the acks and the close frame are lost with the connection
        proxy.holding = False
        # Sent while the server is down: queued, never dropped.
        says += [asyncio.create_task(alice.say(f"late {i}", room=LOBBY, id=f"late-{i}"))
                 for i in range(5)]
        # The cut is noticed a few loop turns later (no fixed sleep: a loaded machine may
        # take longer); until the server is back she only finds it down.
        await eventually(lambda: alice.state in (ConnectionState.RECONNECTING,
                                                 ConnectionState.CONNECTING))
        assert alice.pending == 45

        server = await server_factory(port=port, data_dir=data_dir, rate_limits=False)
        acks = await asyncio.wait_for(asyncio.gather(*says), 20)
        ids = [f"id-{i}" for i in range(40)] + [f"late-{i}" for i in range(5)]
        assert [a.id for a in acks] == ids
        # The re-sent 40 are recognised by id: the same seqs as first stored, not new ones.
        assert [a.seq for a in acks] == list(range(1, 46))
        page = await alice.history(LOBBY, after=0, limit=200)
        assert [m.id for m in page.msgs] == [a.id for a in acks]
        assert len(page.msgs) == 45
    finally:
        await proxy.close()


async def test_a_bad_token_on_reconnect_closes_the_client_without_a_retry_loop(
    server_factory: Any, clients: Any, tmp_path: Path
) -> None:
    # Another server's data where "alice" belongs to someone else.
    other = await server_factory(data_dir=tmp_path / "other")
    await clients(other.url, "alice").connect()
    await other.stop()

    server = await server_factory()
    alice = clients(server.url, "alice")
    await alice.connect()
    events = Recorder(alice)
    await restart(server_factory, server, data_dir=tmp_path / "other")

    await events.wait(lambda r: r.ended, timeout=20)
    states = events.states()
    last = states[-1]
    assert last.state is ConnectionState.CLOSED and "bad_token" in (last.reason or "")
    assert alice.state is ConnectionState.CLOSED
    # The try the server refused is the last one: CONNECTING, then CLOSED. Tries before
    # it may have met a server not yet up (how many depends on how long the restart took
    # against the back-off), but none was refused for its token and tried again.
    assert states[-2].state is ConnectionState.CONNECTING
    retries = [s for s in states if s.state is ConnectionState.RECONNECTING]
    assert retries and not any("bad_token" in (s.reason or "") for s in retries), retries
    with pytest.raises(ClientError):
        await alice.say("hello?", room=LOBBY)


async def test_close_codes_4002_4003_4004_are_final_and_1001_reconnects(
    server_factory: Any, clients: Any
) -> None:
    server = await server_factory()
    alice = clients(server.url, "alice")
    await alice.connect()
    events = Recorder(alice)
    server.hub.users["alice"].sessions[0].close(1001, "going away")
    await events.wait(lambda r: connects(r) >= 2)

    server.hub.users["alice"].sessions[0].close(4003, "token revoked")
    await events.wait(lambda r: r.ended)
    assert events.states()[-1].state is ConnectionState.CLOSED
    assert "4003" in (events.states()[-1].reason or "")


async def test_a_client_restarted_with_a_seen_file_resumes_exactly(
    server: Any, clients: Any, tmp_path: Path
) -> None:
    seen, token = tmp_path / "alice.seen.json", tmp_path / "alice.token"
    bob = clients(server.url, "bob")
    await bob.connect()
    await bob.join(LOBBY)
    alice = clients(server.url, "alice", seen_file=seen, token_file=token)
    await alice.connect()
    await alice.join(LOBBY)
    events = Recorder(alice)
    for i in range(3):
        await bob.say(f"m{i}", room=LOBBY)
    await events.wait(lambda r: len(r.msgs(LOBBY)) == 3)
    await alice.close()
    assert tokens.read_seen(seen)[LOBBY][0] == 3

    for i in range(3, 5):
        await bob.say(f"m{i}", room=LOBBY)
    alice2 = clients(server.url, "alice", seen_file=seen, token_file=token)
    await alice2.connect()
    events2 = Recorder(alice2)
    await events2.wait(lambda r: len(r.msgs(LOBBY)) >= 2)
    await bob.say("m5", room=LOBBY)
    await events2.wait(lambda r: r.msgs(LOBBY)[-1].text == "m5")
    assert [m.text for m in events2.msgs(LOBBY)] == ["m3", "m4", "m5"]


async def test_without_saved_state_only_unread_messages_are_delivered(
    server: Any, clients: Any
) -> None:
    bob = clients(server.url, "bob")
    await bob.connect()
    await bob.join(LOBBY)
    alice = clients(server.url, "alice")
    await alice.connect()
    await alice.join(LOBBY)
    for i in range(5):
        await bob.say(f"m{i}", room=LOBBY)
    await alice.mark_read(LOBBY, 3)
    token = alice.token
    await alice.close()

    alice2 = clients(server.url, "alice", token=token)
    await alice2.connect()
    events = Recorder(alice2)
    await events.wait(lambda r: len(r.msgs(LOBBY)) >= 2)
    await bob.say("m5", room=LOBBY)
    await events.wait(lambda r: r.msgs(LOBBY)[-1].text == "m5")
    assert [m.seq for m in events.msgs(LOBBY)] == [4, 5, 6]


async def test_a_new_epoch_makes_the_client_fetch_the_room_from_the_start(
    server: Any, clients: Any, tmp_path: Path
) -> None:
    seen = tmp_path / "alice.seen.json"
    alice = clients(server.url, "alice", seen_file=seen)
    await alice.connect()
    await alice.join(LOBBY)
    token = alice.token
    await alice.close()
    bob = clients(server.url, "bob")
    await bob.connect()
    await bob.join(LOBBY)
    await bob.say("one", room=LOBBY)
    await bob.say("two", room=LOBBY)
    # Alice's saved state is from an older life of the room: seq 9 of another epoch.
    tokens.write_seen(seen, {LOBBY: (9, "an-old-epoch")})

    alice2 = clients(server.url, "alice", seen_file=seen, token=token)
    await alice2.connect()
    events = Recorder(alice2)
    await events.wait(lambda r: len(r.msgs(LOBBY)) >= 2)
    assert [m.text for m in events.msgs(LOBBY)] == ["one", "two"]


async def test_join_replays_what_the_client_missed_in_a_room_it_knows(
    server_factory: Any, clients: Any
) -> None:
    server = await server_factory(rate_limits=False)
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    await alice.join(LOBBY)
    await bob.join(LOBBY)
    events = Recorder(alice)
    await bob.say("first", room=LOBBY)
    await events.wait(lambda r: len(r.msgs(LOBBY)) == 1)
    cut(server, "alice")
    await asyncio.gather(*(bob.say(f"m{i}", room=LOBBY) for i in range(250)))
    joined = await alice.join(LOBBY)  # waits for the reconnect; a no-op join
    assert joined.room == LOBBY
    await events.wait(lambda r: len(r.msgs(LOBBY)) >= 251)
    assert events.seqs(LOBBY) == list(range(1, 252))


async def test_sends_made_before_connect_go_out_once_connected(server: Any) -> None:
    alice = Client(server.url, "alice", token_file=False)
    joining = asyncio.create_task(alice.join(LOBBY))
    await asyncio.sleep(0)
    await alice.connect()
    try:
        assert (await asyncio.wait_for(joining, 5)).room == LOBBY
        assert (await alice.say("hi", room=LOBBY)).seq == 1
    finally:
        await alice.close()
