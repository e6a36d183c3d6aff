"""``cfm admin usage --redis``: bytes per room and per sender from a cluster's streams,
read a page at a time. The same messages give the same figures as a single node's
``usage`` (a data dir copied into a real redis-server with ``cfm admin migrate``), and
on two running nodes the messages sent through both are counted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from cfm_cli.main import app
from cfm_server.cluster import admin_usage
from tests.cluster.redis_proc import RedisProcess
from tests.cluster.test_admin import cfm_admin
from tests.server.test_admin import _isolated  # noqa: F401  (autouse: no CFM_* of the machine)
from tests.wire import WireClient, signed_in


async def in_process(*args: str) -> Any:
    """``cfm admin ARGS`` in this process (its asyncio.run needs a thread of its own)."""
    result = await asyncio.to_thread(CliRunner().invoke, app, ["admin", *args])
    assert result.exit_code == 0, result.output
    return result.output


async def test_usage_with_redis_gives_a_single_nodes_figures_for_the_same_messages(
        server_factory, redis: RedisProcess, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "single"
    server = await server_factory(data_dir=data_dir)
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        for client in (alice, bob):
            await client.send({"t": "join", "room": "#lobby"})
            await client.recv_until("joined")
        for i in range(23):  # more than one page of the (small) pages set below
            client = (alice, bob)[i % 2]
            await client.send({"t": "say", "room": "#lobby", "text": "héllo 🙂 " * (i + 1),
                               "id": f"l{i}"})
            await client.recv_until("ack", id=f"l{i}")
        await alice.send({"t": "say", "to": "bob", "text": "just us", "id": "d1"})
        await alice.recv_until("ack", id="d1")
        await bob.send({"t": "nudge", "to": "alice", "id": "n1"})  # a nudge counts too
        await bob.recv_until("ack", id="n1")
    await server.stop()
    single = json.loads(await in_process("usage", "--json", "--top", "0",
                                         "--data-dir", str(data_dir)))
    assert single["total_messages"] == 25, single
    await in_process("migrate", "--to", redis.url, "--data-dir", str(data_dir))

    # Pages of a few entries, so that the rooms' first pages and the pages after them
    # (a room read on alone) are both walked.
    monkeypatch.setattr(admin_usage, "FIRST", 4)
    monkeypatch.setattr(admin_usage, "PAGE", 5)
    client = Redis.from_url(redis.url)
    await client.config_resetstat()
    cluster = json.loads(await in_process("usage", "--json", "--top", "0",
                                          "--redis", redis.url))
    assert cluster == single
    commands = await client.info("commandstats")
    await client.aclose()
    assert "cmdstat_keys" not in commands, sorted(commands)
    # #lobby (23 entries): a first page of 4, then pages of 5 after it.
    assert commands["cmdstat_xrange"]["calls"] >= 1 + 4, commands["cmdstat_xrange"]

    top = json.loads(await in_process("usage", "--json", "--top", "1", "--redis", redis.url))
    assert [r["name"] for r in top["rooms"]] == ["#lobby"], top
    assert len(top["users"]) == 1 and top["total_messages"] == 25, top


async def test_usage_with_redis_counts_what_running_nodes_stored(
        redis: RedisProcess, nodes, tmp_path: Path) -> None:
    a, b = await nodes(), await nodes()
    async with WireClient.connect(a.url) as dora, WireClient.connect(b.url) as emil:
        assert (await dora.hello("dora"))["t"] == "welcome"
        assert (await emil.hello("emil"))["t"] == "welcome"
        for client in (dora, emil):
            await client.send({"t": "join", "room": "#cake"})
            await client.recv_until("joined")
        for i in range(3):
            await dora.send({"t": "say", "id": f"s{i}", "room": "#cake", "text": "x" * 200})
            await dora.recv_until("ack", id=f"s{i}")
        await emil.send({"t": "say", "id": "e1", "room": "#cake", "text": "yum"})
        await emil.recv_until("ack", id="e1")
        await emil.send({"t": "say", "id": "d1", "to": "dora", "text": "yo"})
        await emil.recv_until("ack", id="d1")
    # The Redis URL from the environment, as the other commands take it.
    out = await cfm_admin("usage", tmp_path=tmp_path, env={"CFM_REDIS_URL": redis.url})
    lines = out.splitlines()
    assert lines[0].startswith("messages  5, "), out
    assert "counted as a single node does" in lines[0], out
    rooms = lines[lines.index("rooms") + 1:lines.index("users (messages sent)")]
    assert rooms[0].split()[0] == "#cake" and rooms[0].endswith("4 messages"), out
    assert rooms[1].split()[0] == "dm:dora:emil" and rooms[1].endswith("1 message"), out
    users = lines[lines.index("users (messages sent)") + 1:]
    assert [u.split()[0] for u in users] == ["dora", "emil"], out
    assert users[0].endswith("3 messages") and users[1].endswith("2 messages"), out
