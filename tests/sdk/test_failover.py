"""A client given several URLs: a dead one is passed over, a node that dies costs one
quick reconnect to the next (no back-off), and the move resumes like a restart: nothing
missed, nothing doubled."""

from __future__ import annotations

import asyncio
import logging
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cfm_common import tokens
from cfm_common._backoff import Backoff
from cfm_common.client import Client, ClientError, ConnectionState
from tests.faults.proxy import CuttingProxy
from tests.ports import free_port
from tests.sdk.conftest import Recorder
from tests.sdk.test_echo_bot import ECHO_BOT, child_env, echoes, say_when_online, stop

LOBBY = "#lobby"
# A first wait of 15-30 s: a test that passes with it never waited for a back-off.
NO_BACKOFF = Backoff(30, 60)


def dead_url() -> str:
    return f"ws://127.0.0.1:{free_port()}/ws"


async def test_a_dead_url_first_is_passed_over_at_once(
    server: Any, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    dead = dead_url()
    alice = clients(f"{dead},{server.url}", "alice", backoff=NO_BACKOFF)
    with caplog.at_level(logging.INFO, logger="cfm_common.client"):
        welcome = await asyncio.wait_for(alice.connect(), 10)
    assert welcome.name == "alice"
    assert alice.url == server.url and alice.urls == (dead, server.url)
    assert f"connected to {server.url}" in caplog.text
    assert (await alice.join(LOBBY)).room == LOBBY


async def test_when_every_url_fails_the_error_names_each(clients: Any) -> None:
    first, second = dead_url(), dead_url()
    alice = clients([first, second], "alice", backoff=NO_BACKOFF)
    with pytest.raises(ClientError) as failed:
        await asyncio.wait_for(alice.connect(), 10)
    error = failed.value
    assert error.code == "connect_failed" and not error.final
    assert list(error.by_url) == [first, second]
    assert first in error.msg and second in error.msg


async def test_a_refusal_is_not_tried_on_the_next_url(server: Any, clients: Any) -> None:
    owner = clients(server.url, "alice")
    await owner.connect()
    # bad_token from the first node: every node of the server would say the same.
    impostor = clients([server.url, dead_url()], "alice", token="not-the-token",
                       backoff=NO_BACKOFF)
    with pytest.raises(ClientError) as refused:
        await asyncio.wait_for(impostor.connect(wait=True), 10)
    assert refused.value.code == "bad_token" and impostor.url == server.url


async def test_connect_wait_goes_round_until_one_comes_up(
    server_factory: Any, clients: Any
) -> None:
    port = free_port()
    later = f"ws://127.0.0.1:{port}/ws"
    alice = clients([dead_url(), later], "alice", backoff=Backoff(0.05, 0.2))
    connecting = asyncio.create_task(alice.connect(wait=True))
    events = Recorder(alice)
    # Rounds: both URLs at once, then a back-off (a retry_in above 0) before the next.
    await events.wait(lambda r: any(s.retry_in for s in r.states()
                                    if s.state is ConnectionState.RECONNECTING))
    assert not connecting.done()
    await server_factory(port=port)
    await asyncio.wait_for(connecting, 10)
    assert alice.url == later and alice.state is ConnectionState.CONNECTED


async def test_a_killed_node_costs_one_quick_reconnect_to_the_next(
    server: Any, clients: Any
) -> None:
    node = CuttingProxy("127.0.0.1", server.port, random.Random(1))
    node.cutting = False  # a healthy node in front of the same server, until killed
    await node.start()
    alice = clients([node.url(), server.url], "alice", backoff=NO_BACKOFF)
    bob = clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    assert alice.url == node.url()
    await alice.join(LOBBY)
    await bob.join(LOBBY)
    events = Recorder(alice)
    await bob.say("before", room=LOBBY)
    await events.wait(lambda r: [m.text for m in r.msgs(LOBBY)] == ["before"])

    await node.close()  # the node dies: its listener and every connection through it
    await events.wait(lambda r: r.client.state is ConnectionState.CONNECTED
                      and any(s.state is ConnectionState.RECONNECTING for s in r.states()))
    assert alice.url == server.url
    waits = [s.retry_in for s in events.states() if s.state is ConnectionState.RECONNECTING]
    assert waits == [0.0]  # straight to the next URL, no back-off
    await bob.say("after", room=LOBBY)
    await alice.say("me too", room=LOBBY)
    await events.wait(lambda r: len(r.msgs(LOBBY)) == 3)
    assert [m.text for m in events.msgs(LOBBY)] == ["before", "after", "me too"]


async def test_a_node_stopped_and_another_started_on_its_data_resumes_exactly(
    server_factory: Any, clients: Any
) -> None:
    first = await server_factory()
    data_dir = first.config.data_dir
    second_port = free_port()
    urls = [first.url, f"ws://127.0.0.1:{second_port}/ws"]
    # The second node can only open the data once the first let go of it: the client's
    # quick try of it may fail, and then a short back-off applies.
    alice = clients(urls, "alice", backoff=Backoff(0.05, 0.2))
    bob = clients(urls, "bob", backoff=Backoff(0.05, 0.2))
    await alice.connect()
    await bob.connect()
    await alice.join(LOBBY)
    await bob.join(LOBBY)
    events = Recorder(alice)
    for n in range(3):
        await bob.say(f"bob {n}", room=LOBBY)
    await events.wait(lambda r: len(r.msgs(LOBBY)) == 3)

    await first.stop(close_code=1001)  # gone for good: the other node takes over
    queued = asyncio.create_task(alice.say("said while moving", room=LOBBY))
    sent_away = [asyncio.create_task(bob.say(f"bob away {n}", room=LOBBY)) for n in range(3)]
    second = await server_factory(port=second_port, data_dir=data_dir)
    await asyncio.wait_for(asyncio.gather(queued, *sent_away), 10)
    for n in range(3):
        await bob.say(f"bob after {n}", room=LOBBY)
    await events.wait(lambda r: len(r.msgs(LOBBY)) >= 10)

    assert alice.url == second.url and bob.url == second.url
    seqs = events.seqs(LOBBY)
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, nothing twice
    texts = [m.text for m in events.msgs(LOBBY)]
    assert texts[:3] == ["bob 0", "bob 1", "bob 2"] and texts[-3:] == [
        "bob after 0", "bob after 1", "bob after 2"]
    assert sorted(texts[3:7]) == sorted(["said while moving", "bob away 0", "bob away 1",
                                         "bob away 2"])
    stored = await alice.history(LOBBY, limit=50)
    assert [m.seq for m in stored.msgs] == seqs  # the server stored each once too


async def test_the_echo_bot_takes_a_comma_separated_list(server: Any, tmp_path: Path) -> None:
    """examples/echo_bot.py passes its URL argument to Bot(...) as is: a dead node first
    and the live one second work from the command line too."""
    urls = f"{dead_url()},{server.url}"
    bot = await asyncio.create_subprocess_exec(
        sys.executable, str(ECHO_BOT), urls, env=child_env(tmp_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        async with Client(server.url, "alice", token_file=False) as alice:
            events = Recorder(alice)
            await say_when_online(alice, "two nodes", "echo")
            await events.wait(lambda r: "two nodes" in echoes(r), timeout=30)
    finally:
        assert await stop(bot) == 0
    # Its token went under the first URL, whichever node it signed in on.
    first_key = tokens.server_key(urls.split(",")[0])
    assert (tmp_path / "xdg-data" / "cfm" / "tokens" / first_key / "echo.token").exists()
