"""Invites on a cluster: two real nodes over one real redis-server share the invite key,
and each code's uses are counted in Redis, so its limit holds across nodes."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from cfm_server.cluster import keys
from tests.cluster.redis_proc import RedisProcess
from tests.wire import WireClient, eventually

CFM = str(Path(sys.executable).with_name("cfm"))


NODE_DEFAULTS = {"registration": "invite"}


def make_code(server: Any, uses: int = 1) -> str:
    from cfm_server.invites import make_code as make

    assert server.hub.invites is not None
    return make(server.hub.invites.key, uses=uses)


async def sign_up(url: str, name: str, code: str | None) -> dict[str, Any]:
    async with WireClient.connect(url) as client:
        extra = {"invite": code} if code is not None else {}
        return await client.hello(name, **extra)


async def test_both_nodes_share_one_invite_key_and_take_each_others_codes(nodes) -> None:
    a, b = await nodes(), await nodes()
    assert a.hub.invites.key == b.hub.invites.key
    made_on_a, made_on_b = make_code(a), make_code(b)
    assert (await sign_up(b.url, "alice", made_on_a))["t"] == "welcome"
    assert (await sign_up(a.url, "bob", made_on_b))["t"] == "welcome"
    refused = await sign_up(a.url, "carol", None)
    assert refused["t"] == "error" and refused["code"] == "forbidden", refused


async def test_a_one_use_code_used_on_one_node_is_refused_on_the_other(nodes) -> None:
    a, b = await nodes(), await nodes()
    code = make_code(a)
    assert (await sign_up(a.url, "alice", code))["t"] == "welcome"
    refused = await sign_up(b.url, "bob", code)
    assert refused["t"] == "error" and refused["code"] == "forbidden", refused
    assert "used up" in refused["msg"]


async def test_two_sign_ups_at_once_on_two_nodes_with_a_one_use_code_one_wins(nodes) -> None:
    a, b = await nodes(), await nodes()
    for round_ in range(5):
        code = make_code(a)
        clients = [await WireClient.open(a.url), await WireClient.open(b.url)]
        try:
            replies = await asyncio.gather(
                clients[0].hello(f"ann{round_}", invite=code),
                clients[1].hello(f"ben{round_}", invite=code))
        finally:
            for client in clients:
                await client.close()
        kinds = sorted(r["t"] if r["t"] == "welcome" else r["code"] for r in replies)
        assert kinds == ["forbidden", "welcome"], replies
        # Exactly one account exists, and Redis counted exactly one use.
        nonce = code.split("-")[0]
        assert a.node.state.records.get(f"i:{nonce}") == b"1"
        made = [n for n in (f"ann{round_}", f"ben{round_}") if n in a.hub.world.users]
        assert len(made) == 1, made


async def test_no_use_is_counted_when_the_handle_was_taken_meanwhile(nodes) -> None:
    a, b = await nodes(), await nodes()
    code = make_code(a, uses=2)
    # Both claim one handle at once with a two-use code: one account, one use counted.
    clients = [await WireClient.open(a.url), await WireClient.open(b.url)]
    try:
        replies = await asyncio.gather(*(c.hello("dora", invite=code) for c in clients))
    finally:
        for client in clients:
            await client.close()
    kinds = sorted(r["t"] if r["t"] == "welcome" else r["code"] for r in replies)
    assert kinds == ["name_taken", "welcome"], replies
    nonce = code.split("-")[0]
    # The loser's identity was refused, and its use with it.
    for node in (a, b):
        await eventually(lambda n=node: n.node.state.records.get(f"i:{nonce}") == b"1")
    # The code still lets one more person in.
    assert (await sign_up(b.url, "emil", code))["t"] == "welcome"
    refused = await sign_up(a.url, "fay", code)
    assert refused["t"] == "error" and refused["code"] == "forbidden", refused


async def test_cfm_admin_invite_with_redis_makes_codes_every_node_takes(
        redis: RedisProcess, nodes, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFM_")}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "share"))
    # Before any node ran: the command makes the key in Redis, the nodes take it.
    proc = await asyncio.create_subprocess_exec(
        CFM, "admin", "invite", "--uses", "1", "--redis", redis.url, "--server", "ws://x/ws",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    match = re.search(r"^\s+([0-9a-f]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+)$", out.decode(), re.M)
    assert match, out.decode()
    a, b = await nodes(), await nodes()
    assert (await sign_up(b.url, "gus", match.group(1)))["t"] == "welcome"
    refused = await sign_up(a.url, "hal", match.group(1))
    assert refused["t"] == "error" and refused["code"] == "forbidden", refused


async def cfm_admin(*args: str, tmp_path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFM_")}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "share"))
    proc = await asyncio.create_subprocess_exec(
        CFM, "admin", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=env)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_a_code_revoked_with_redis_is_refused_on_every_node(
        redis: RedisProcess, nodes, tmp_path: Path) -> None:
    a, b = await nodes(), await nodes()
    code = make_code(a, uses=0)
    assert (await sign_up(a.url, "ida", code))["t"] == "welcome"
    out = await cfm_admin("revoke-invite", code, "--redis", redis.url, tmp_path=tmp_path)
    assert "withdrawn on every node" in out
    for node, name in ((a, "jon"), (b, "kim")):
        await eventually(lambda n=node: code.split("-")[0] in n.hub.invites.revoked())
        refused = await sign_up(node.url, name, code)
        assert refused["t"] == "error" and "withdrawn" in refused["msg"], refused
    # A node started later reads the withdrawn codes from Redis.
    c = await nodes()
    refused = await sign_up(c.url, "lea", code)
    assert refused["t"] == "error" and "withdrawn" in refused["msg"], refused


@pytest.mark.parametrize("lost", ["the use", "the identity"])
async def test_a_use_is_counted_exactly_when_its_account_is_made_whatever_reply_is_lost(
        redis: RedisProcess, server_factory, lost: str) -> None:
    """The node's link to Redis freezes right after it sent a sign-up's invite use (its
    reply lost), or the identity's creation: the sign-up is answered ``internal``, and
    in Redis the code's count says 1 exactly when the account exists — never a use
    counted for no account (a one-use code lost), never an account whose use was given
    back (a one-use code letting two people in). Before, the use and the identity were
    two calls, and the use was given back on a failed create that Redis had run."""
    from redis.asyncio import Redis

    from tests.cluster.proxy import FaultyProxy

    proxy = FaultyProxy(redis.port)
    await proxy.start()
    direct = Redis.from_url(redis.url)
    try:
        a = await server_factory(redis_url=proxy.url, node_id="n1", registration="invite")
        code = make_code(a)
        nonce = code.split("-")[0]
        proxy.freeze_after(f"i:{nonce}".encode() if lost == "the use" else b"u:dora")
        async with WireClient.connect(a.url) as client:
            await client.send({"t": "hello", "v": 1, "name": "dora", "invite": code})
            reply = await client.recv(timeout=30)
        assert reply["t"] == "error" and reply["code"] == "internal", reply
        await eventually(lambda: not a.node.unreachable(), timeout=30)
        used = await direct.hget(keys.state_records(), f"i:{nonce}")
        made = await direct.hexists(keys.state_records(), "u:dora")
        assert int(used or 0) == int(made), (used, made)
        # The code lets one more person in exactly when no account used it.
        again = await sign_up(a.url, "emil", code)
        assert (again["t"] == "welcome") == (not made), again
    finally:
        await direct.aclose()
        await proxy.close()
