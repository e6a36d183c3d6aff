"""``cfm admin``'s account tools on a cluster (``--redis``, ``CFM_REDIS_URL``, the config
file's ``redis_url``): two real nodes over one real redis-server keep running, real
clients on both, and the command (a real ``cfm`` process) changes the accounts under
them: a reset token closes the user's sessions on every node, an account made by the
operator signs in anywhere, a removed user's sessions close and its handle is free."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.cluster.redis_proc import RedisProcess
from tests.wire import WireClient, eventually

CFM = str(Path(sys.executable).with_name("cfm"))
TOKEN = re.compile(r"^  (\S{40,})$", re.M)


async def cfm_admin(*args: str, tmp_path: Path, env: dict[str, str] | None = None,
                    code: int = 0) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CFM_")}
    base.update(XDG_CONFIG_HOME=str(tmp_path / "config"),
                XDG_DATA_HOME=str(tmp_path / "share"), **(env or {}))
    proc = await asyncio.create_subprocess_exec(
        CFM, "admin", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=base)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == code, out.decode()
    return out.decode()


def token_in(out: str) -> str:
    match = TOKEN.search(out)
    assert match, out
    return match.group(1)


async def hello(url: str, name: str, token: str | None) -> dict[str, Any]:
    async with WireClient.connect(url) as client:
        return await client.hello(name, token)


async def test_reset_token_closes_the_users_sessions_on_every_node(
        redis: RedisProcess, nodes, tmp_path: Path) -> None:
    a, b = await nodes(), await nodes()
    alice_a = await WireClient.open(a.url)
    old = (await alice_a.hello("alice"))["token"]
    alice_b = await WireClient.open(b.url)
    assert (await alice_b.hello("alice", old))["t"] == "welcome"
    bob = await WireClient.open(b.url)
    assert (await bob.hello("bob"))["t"] == "welcome"
    try:
        client = Redis.from_url(redis.url)
        for _ in range(1000):  # both sessions counted in the cluster's presence
            if sum(int(n) for n in await client.hvals("cfm:{presence}:user:alice")) == 2:
                break
            await asyncio.sleep(0.005)
        await client.aclose()
        out = await cfm_admin("reset-token", "Alice", "--redis", redis.url, "--server",
                              "ws://chat.example/ws", tmp_path=tmp_path)
        assert "in force on every node" in out and "2 open sessions of alice closed" in out, out
        new = token_in(out)
        assert await alice_a.wait_closed() == 4003
        assert await alice_b.wait_closed() == 4003
        await bob.send({"t": "presence", "psm": "still here"})  # bob's session stays
        await bob.recv_until("presence", name="bob", psm="still here")
    finally:
        for client in (alice_a, alice_b, bob):
            await client.close()
    for node in (a, b):
        refused = await hello(node.url, "alice", old)
        assert refused["t"] == "error" and refused["code"] == "bad_token", refused
        assert (await hello(node.url, "alice", new))["t"] == "welcome"


async def test_reset_token_refuses_an_unknown_user_and_leaves_no_token_file(
        redis: RedisProcess, nodes, tmp_path: Path) -> None:
    # No node ever started on that Redis (a wrong database number): no account made.
    other = redis.url.rsplit("/", 1)[0] + "/3"
    out = await cfm_admin("add-user", "zed", "--redis", other, tmp_path=tmp_path, code=2)
    assert "holds no cfm cluster" in out, out
    await nodes()
    token_file = tmp_path / "zed.token"
    out = await cfm_admin("reset-token", "zed", "--redis", redis.url, "--token-file",
                          str(token_file), tmp_path=tmp_path, code=2)
    assert "no user 'zed'" in out, out
    assert not token_file.exists()


async def test_add_user_on_a_closed_cluster_signs_in_on_every_node(
        redis: RedisProcess, nodes, tmp_path: Path) -> None:
    a, b = await nodes(registration="closed"), await nodes(registration="closed")
    refused = await hello(a.url, "carol", None)
    assert refused["t"] == "error" and refused["code"] == "forbidden", refused
    # The URL from the environment, as cfm serve takes it.
    out = await cfm_admin("add-user", "Carol", "--display", "Carol C.", "--server",
                          "ws://chat.example/ws", tmp_path=tmp_path,
                          env={"CFM_REDIS_URL": redis.url})
    assert "Created carol on every node" in out, out
    token = token_in(out)
    for node in (a, b):
        welcome = await hello(node.url, "carol", token)
        assert welcome["t"] == "welcome" and welcome["display"] == "Carol C.", welcome
    again = await cfm_admin("add-user", "carol", "--redis", redis.url, tmp_path=tmp_path,
                            code=2)
    assert "'carol' already exists" in again, again


async def test_remove_user_closes_its_sessions_and_frees_the_handle_on_every_node(
        redis: RedisProcess, nodes, tmp_path: Path) -> None:
    a, b = await nodes(), await nodes()
    alice, bob = await WireClient.open(a.url), await WireClient.open(b.url)
    try:
        assert (await alice.hello("alice"))["t"] == "welcome"
        assert (await bob.hello("bob"))["t"] == "welcome"
        await alice.send({"t": "contact", "op": "add", "name": "bob"})
        await alice.recv_until("contact")
        await bob.send({"t": "contact", "op": "add", "name": "alice"})
        await bob.recv_until("contact")
        for client in (alice, bob):
            await client.send({"t": "join", "room": "#tea"})
            await client.recv_until("joined")
        await alice.send({"t": "say", "room": "#tea", "text": "old alice here", "id": "a1"})
        await alice.recv_until("ack")
        for client, emoji in ((bob, "tea"), (alice, "tea"), (alice, "cake")):
            await client.send({"t": "react", "room": "#tea", "target": 1, "emoji": emoji,
                               "id": f"r{emoji}"})
            await client.recv_until("ack", id=f"r{emoji}")
        await alice.send({"t": "say", "to": "bob", "text": "a secret", "id": "a2"})
        await alice.recv_until("ack")
        await bob.recv_until("msg", text="a secret")
        # The configuration file's redis_url, as a node's machine has it.
        config = tmp_path / "server.toml"
        config.write_text(f'[server]\nredis_url = "{redis.url}"\n')
        out = await cfm_admin("remove-user", "ALICE", "--yes", "--config", str(config),
                              tmp_path=tmp_path)
        assert "Removed alice on every node" in out and "archived archived:" in out, out
        assert "1 room membership" in out or "2 room memberships" in out, out
        assert await alice.wait_closed() == 4003
        for node in (a, b):
            world = node.hub.world
            await eventually(lambda w=world: "alice" not in w.users)
            assert "alice" not in world.rooms["#tea"].members
            await eventually(lambda w=world: "alice" not in w.users["bob"].contacts)
            assert "dm:alice:bob" not in world.rooms
            assert "dm:alice:bob" not in world.users["bob"].rooms
        client = Redis.from_url(redis.url)
        left = [k async for k, _ in client.hscan_iter("cfm:{state}:records")
                if b"alice" in k]
        assert left == [], left
        assert not await client.exists("cfm:{dm:alice:bob}:log")
        await client.aclose()
        # Someone new claims the handle: none of the old alice's rooms, contacts or DMs.
        async with WireClient.connect(b.url) as newcomer:
            welcome = await newcomer.hello("alice")
            assert welcome["t"] == "welcome", welcome
            assert welcome["rooms"] == [] and welcome["contacts"] == [], welcome
            await newcomer.send({"t": "join", "room": "#tea"})
            await newcomer.recv_until("joined")
            await newcomer.send({"t": "history", "room": "#tea"})
            history = await newcomer.recv_until("history")
            texts = [m["text"] for m in history["msgs"] if not m.get("change")]
            assert texts == ["old alice here"], history
            # Whoever claims the handle next has reacted to nothing; bob's reaction stays.
            assert history["msgs"][0]["reactions"] == [{"emoji": "tea", "names": ["bob"]}]
            # The old alice's message ids are not the newcomer's: "a1" is a new message.
            await newcomer.send({"t": "say", "room": "#tea", "text": "new alice", "id": "a1"})
            assert (await newcomer.recv_until("ack"))["seq"] == 5
            await newcomer.send({"t": "join", "room": "dm:alice:bob"})
            assert (await newcomer.recv_until("joined"))["seq"] == 0
    finally:
        await alice.close()
        await bob.close()
    async with WireClient.connect(a.url) as bob_again:
        welcome = await bob_again.hello("bob", bob.token)
        assert "alice" not in {c["name"] for c in welcome["contacts"]}, welcome
        assert "dm:alice:bob" not in {r["room"] for r in welcome["rooms"]}, welcome


async def test_users_and_stats_read_redis_in_pages(redis: RedisProcess, nodes,
                                                   tmp_path: Path) -> None:
    a, b = await nodes(), await nodes()
    async with WireClient.connect(a.url) as dora, WireClient.connect(b.url) as emil:
        assert (await dora.hello("dora"))["t"] == "welcome"
        assert (await emil.hello("emil", bot=True))["t"] == "welcome"
        await dora.send({"t": "join", "room": "#cake"})
        await dora.recv_until("joined")
        for i in range(3):
            await dora.send({"t": "say", "id": f"s{i}", "room": "#cake", "text": f"hi {i}"})
            await dora.recv_until("ack", id=f"s{i}")
        await emil.send({"t": "say", "id": "d1", "to": "dora", "text": "yo"})
        await emil.recv_until("ack")
    client = Redis.from_url(redis.url)
    await client.config_resetstat()
    users = json.loads(await cfm_admin("users", "--json", "--redis", redis.url,
                                       tmp_path=tmp_path))
    by_name = {u["name"]: u for u in users}
    assert by_name["dora"]["kind"] == "person" and by_name["emil"]["kind"] == "bot"
    assert (by_name["dora"]["rooms"], by_name["dora"]["dms"]) == (1, 1), by_name["dora"]
    assert by_name["dora"]["messages"] is None  # not counted on a cluster
    stats = json.loads(await cfm_admin("stats", "--json", "--redis", redis.url,
                                       tmp_path=tmp_path))
    assert (stats["users"], stats["persons"], stats["bots"]) == (2, 1, 1), stats
    assert (stats["rooms"], stats["dms"], stats["messages"]) == (2, 1, 4), stats
    assert stats["db_bytes"] > 0
    commands = await client.info("commandstats")
    await client.aclose()
    assert "cmdstat_keys" not in commands and "cmdstat_hscan" in commands, sorted(commands)


async def test_a_nodes_stale_copy_of_a_user_does_not_undo_a_reset_or_a_removal(
        redis: RedisProcess, broker_factory) -> None:
    """A node that has not applied the operator's change yet writes the user's record
    (a status change from a session it still holds): Redis keeps the new token, and a
    removed user stays removed. What the node knows rightly is stored."""
    from cfm_server.cluster import admin, records
    from cfm_server.cluster.state import SharedState
    from cfm_server.cluster.writes import ClusterWrites
    from cfm_server.domain.signin import hash_token

    client = Redis.from_url(redis.url)
    await client.hset("cfm:{#lobby}:meta", "epoch", "e1")  # as a node's first start does
    await admin.add_user(redis.url, "xena", None, 1, deliver=lambda token: None)
    raw = await client.hget("cfm:{state}:records", "u:xena")
    broker = await broker_factory()
    stale = SharedState(broker)  # not following the log: its copy stays as it was
    stale.records = {"u:xena": raw}
    writes = ClusterWrites(stale, broker)
    record = records.parse({"u:xena": raw}).users["xena"]

    async def stored() -> Any:
        value = await client.hget("cfm:{state}:records", "u:xena")
        return None if value is None else records.parse({"u:xena": value}).users["xena"]

    record.status = "busy"  # what the node knows is what Redis holds: stored
    await writes.put_user(record)
    assert (await stored()).status == "busy"
    stale.records = {"u:xena": await client.hget("cfm:{state}:records", "u:xena")}
    _, token, _ = await admin.reset_token(redis.url, "xena", (), deliver=lambda t: None)
    record.status = "away"
    await writes.put_user(record)
    now = await stored()
    assert now.token_hash == hash_token(token) and now.status == "busy", now
    await admin.remove_user(redis.url, "xena", 2)
    await writes.put_user(record)
    assert await stored() is None
    # A record the node makes with a token of its own (the AI contacts') is stored.
    record.name, record.token_hash = "yuri", hash_token("fresh")
    await writes.put_user(record)
    assert (await client.hget("cfm:{state}:records", "u:yuri")) is not None
    await client.aclose()
