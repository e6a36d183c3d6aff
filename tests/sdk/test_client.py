"""Client against a real server on loopback: sign-in, sends, requests, events."""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path
from typing import Any

import pytest

from cfm_common.client import Client, ClientError, Connected, ConnectionState
from cfm_common.frames import Contact, Error, Joined, Left, Msg, Presence
from tests.sdk.conftest import Recorder, next_event

LOBBY = "#lobby"


async def test_connect_saves_the_token_owner_only_and_signs_in_with_it_again(
    server: Any, clients: Any, tmp_path: Path
) -> None:
    token_file = tmp_path / "tokens" / "alice.token"
    alice = clients(server.url, "alice", token_file=token_file)
    welcome = await alice.connect()
    assert alice.state is ConnectionState.CONNECTED
    assert token_file.read_text().strip() == welcome.token == alice.token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    await alice.close()
    assert alice.state is ConnectionState.CLOSED

    again = clients(server.url, "Alice", token_file=token_file)
    welcome2 = await again.connect()
    assert welcome2.name == "alice" == again.name
    assert token_file.read_text().strip() == welcome2.token

    await again.close()

    # A token given by hand signs in and lands in the token file.
    copied = tmp_path / "copy.token"
    by_hand = clients(server.url, "alice", token=welcome2.token, token_file=copied)
    await by_hand.connect()
    assert copied.read_text().strip() == by_hand.token

    stranger = clients(server.url, "alice")
    with pytest.raises(ClientError) as refused:
        await stranger.connect()
    assert refused.value.code == "name_taken"
    assert stranger.state is ConnectionState.CLOSED


async def test_the_default_token_file_lives_in_the_user_data_dir(
    server: Any, clients: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    carol = clients(server.url, "carol", token_file=None)
    welcome = await carol.connect()
    files = list((tmp_path / "xdg" / "cfm" / "tokens").rglob("carol.token"))
    assert len(files) == 1
    assert files[0].read_text().strip() == welcome.token


async def test_a_bad_token_on_the_first_connect_raises_and_closes(
    server: Any, clients: Any
) -> None:
    await clients(server.url, "alice").connect()
    impostor = clients(server.url, "alice", token="not-the-token")
    with pytest.raises(ClientError) as refused:
        await impostor.connect()
    assert refused.value.code == "bad_token"
    assert refused.value.final  # no retry can mend it (docs/bots.md, "Errors")
    assert impostor.state is ConnectionState.CLOSED
    events = [e async for e in impostor]  # the stream ends instead of retrying
    assert events[-1].state is ConnectionState.CLOSED


async def test_an_invalid_name_is_refused(server: Any, clients: Any) -> None:
    with pytest.raises(ClientError) as refused:
        await clients(server.url, "-nope").connect()
    assert refused.value.code == "name_invalid" and refused.value.final


async def test_say_is_acked_and_every_member_sees_it_once(server: Any, clients: Any) -> None:
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    assert isinstance(await alice.join(LOBBY), Joined)
    await bob.join(LOBBY)
    bob_events = Recorder(bob)
    alice_events = Recorder(alice)

    ack = await alice.say("hello, world", room=LOBBY, id="hello-1")
    assert (ack.room, ack.seq, ack.id) == (LOBBY, 1, "hello-1")
    await bob_events.wait(lambda r: r.msgs(LOBBY))
    [msg] = bob_events.msgs(LOBBY)
    assert (msg.seq, msg.sender, msg.text, msg.id, msg.ts) == (1, "alice", "hello, world",
                                                                "hello-1", ack.ts)
    # The sender's own stream has its message too (from the ack), exactly once.
    await alice_events.wait(lambda r: r.msgs(LOBBY))
    assert [(m.seq, m.sender) for m in alice_events.msgs(LOBBY)] == [(1, "alice")]
    # The same id again is the same message: the original ack, nothing new stored.
    assert await alice.say("hello, world", room=LOBBY, id="hello-1") == ack
    await bob.say("second", room=LOBBY)
    await alice_events.wait(lambda r: len(r.msgs(LOBBY)) == 2)
    assert alice_events.seqs(LOBBY) == [1, 2]


async def test_a_dm_via_to_reaches_the_other_user(server: Any, clients: Any) -> None:
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    ack = await alice.say("psst", to="Bob")
    assert ack.room == "dm:alice:bob"
    msg = await next_event(bob, lambda e: isinstance(e, Msg))
    assert (msg.room, msg.sender, msg.text, msg.kind) == ("dm:alice:bob", "alice", "psst", "text")


async def test_requests_answer_or_raise_the_servers_error(server: Any, clients: Any) -> None:
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()

    with pytest.raises(ClientError) as not_member:
        await alice.history(LOBBY)  # it exists; alice has not joined it
    assert not_member.value.code == "not_member"
    with pytest.raises(ClientError) as not_member:
        await alice.say("hi", room=LOBBY)
    assert not_member.value.code == "not_member"
    with pytest.raises(ClientError) as no_room:
        await alice.history("#elsewhere")
    assert no_room.value.code == "no_such_room"
    with pytest.raises(ClientError) as too_long:  # refused before it is sent
        await alice.say("x" * 5000, room=LOBBY)
    assert too_long.value.code == "too_long"

    await alice.join("#tea")
    for i in range(3):
        await alice.say(f"t{i}", room="#tea")
    page = await alice.history("#tea", limit=2)
    assert [m.text for m in page.msgs] == ["t1", "t2"] and page.more
    page = await alice.history("#tea", before=2)
    assert [m.text for m in page.msgs] == ["t0"] and not page.more

    echo = await alice.contact("add", "Bob")
    assert isinstance(echo, Contact) and (echo.op, echo.name) == ("add", "bob")
    added = await next_event(bob, lambda e: isinstance(e, Contact))
    assert (added.op, added.name) == ("added_you", "alice")

    first = await alice.nudge("bob")
    assert first.room == "dm:alice:bob"
    with pytest.raises(ClientError) as limited:
        await alice.nudge("bob")
    assert limited.value.code == "rate_limited" and limited.value.retry_ms
    nudge = await next_event(bob, lambda e: isinstance(e, Msg) and e.kind == "nudge")
    assert nudge.sender == "alice"

    assert isinstance(await alice.leave("#tea"), Left)
    with pytest.raises(ClientError) as gone:
        await alice.history("#tea")
    assert gone.value.code == "not_member"


async def test_presence_is_remembered_and_seen_by_watchers(server: Any, clients: Any) -> None:
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    await alice.join(LOBBY)
    await bob.join(LOBBY)
    await alice.set_presence(status="busy", psm="writing tests")
    seen = await next_event(bob, lambda e: isinstance(e, Presence) and e.status == "busy")
    assert (seen.name, seen.psm) == ("alice", "writing tests")


async def test_errors_not_tied_to_a_request_are_events(server: Any, clients: Any) -> None:
    alice = clients(server.url, "alice")
    await alice.connect()
    await alice.mark_read("#nowhere", 3)  # fire and forget: its error comes as an event
    error = await next_event(alice, lambda e: isinstance(e, Error))
    assert error.code in ("not_member", "no_such_room")


async def test_a_consumer_that_does_not_read_does_not_break_the_connection(
    server_factory: Any, clients: Any
) -> None:
    server = await server_factory(rate_limits=False)
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    await alice.join(LOBBY)
    await bob.join(LOBBY)
    await asyncio.gather(*(bob.say(f"m{i}", room=LOBBY) for i in range(300)))
    ack = await alice.say("still here", room=LOBBY)  # alice has not read a single event
    assert ack.seq == 301 and alice.state is ConnectionState.CONNECTED
    events = Recorder(alice)
    await events.wait(lambda r: len(r.msgs(LOBBY)) == 301)
    assert events.seqs(LOBBY) == list(range(1, 302))


async def test_close_stops_every_task_and_fails_later_calls(server: Any, clients: Any) -> None:
    alice = clients(server.url, "alice")
    await alice.connect()
    await alice.join(LOBBY)
    await alice.close()
    await alice.close()  # twice is fine
    leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith("cfm-")]
    assert leftovers == []
    with pytest.raises(ClientError) as closed:
        await alice.say("too late", room=LOBBY)
    assert closed.value.code == "closed"
    events = [e async for e in alice]
    assert any(isinstance(e, Connected) for e in events)
    assert events[-1].state is ConnectionState.CLOSED


async def test_the_context_manager_connects_and_closes(server: Any) -> None:
    async with Client(server.url, "dave", token_file=False) as dave:
        assert dave.state is ConnectionState.CONNECTED
        assert dave.welcome is not None and dave.welcome.name == "dave"
    assert dave.state is ConnectionState.CLOSED


async def test_close_or_cancel_during_connect_leaves_nothing_running(server: Any) -> None:
    alice = Client(server.url, "alice", token_file=False)
    connecting = asyncio.create_task(alice.connect())
    await asyncio.sleep(0)
    await alice.close()
    with pytest.raises(ClientError) as closed:
        await connecting
    assert closed.value.code == "closed"

    bob = Client(server.url, "bob", token_file=False)
    connecting = asyncio.create_task(bob.connect())
    await asyncio.sleep(0)
    connecting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await connecting
    assert bob.state is ConnectionState.CLOSED
    await bob.close()
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("cfm-")] == []


async def test_a_growing_backlog_of_unread_events_is_logged(
    server_factory: Any, clients: Any, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cfm_common.client

    monkeypatch.setattr(cfm_common.client, "EVENT_BACKLOG_WARNING", 40)  # not 10,000 here
    server = await server_factory(rate_limits=False)
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    await alice.join(LOBBY)
    await bob.join(LOBBY)
    with caplog.at_level(logging.WARNING, logger="cfm_common.client"):
        await asyncio.gather(*(bob.say(f"m{i}", room=LOBBY) for i in range(30)))
        await alice.say("sync", room=LOBBY)  # all of bob's are in alice's queue by now
        assert "alice: more than 40 events" not in caplog.text
        await asyncio.gather(*(bob.say(f"n{i}", room=LOBBY) for i in range(30)))
        await alice.say("sync", room=LOBBY)
    assert caplog.text.count("alice: more than 40 events wait to be read") == 1
    assert alice.state is ConnectionState.CONNECTED
