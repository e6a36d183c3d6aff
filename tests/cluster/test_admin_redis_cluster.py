"""``cfm admin``'s account tools on a Redis Cluster of 3 masters (``redis+cluster://``):
the same commands as on one Redis (tests/cluster/test_admin.py), whose keys now live on
three servers — the records on one slot, each room on its own, a DM archived across
slots (``DUMP``/``RESTORE``, not ``RENAME``), ``SCAN`` over every master."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cluster.test_admin import cfm_admin, hello, token_in
from tests.cluster.test_redis_cluster import RedisCluster, nodes, redis_cluster  # noqa: F401
from tests.wire import WireClient, eventually


async def test_the_account_tools_work_on_a_redis_cluster(
        redis_cluster: RedisCluster, nodes, tmp_path: Path) -> None:  # noqa: F811
    a, b = await nodes(), await nodes()
    url = redis_cluster.url
    out = await cfm_admin("add-user", "alice", "--redis", url, tmp_path=tmp_path)
    old = token_in(out)
    alice = await WireClient.open(a.url)
    bob = await WireClient.open(b.url)
    try:
        assert (await alice.hello("alice", old))["t"] == "welcome"
        assert (await bob.hello("bob"))["t"] == "welcome"
        await bob.send({"t": "say", "to": "alice", "text": "hi", "id": "b1"})
        await bob.recv_until("ack")
        await alice.recv_until("msg", text="hi")
        out = await cfm_admin("reset-token", "alice", "--redis", url, tmp_path=tmp_path)
        assert await alice.wait_closed() == 4003
        new = token_in(out)
        refused = await hello(b.url, "alice", old)
        assert refused["t"] == "error" and refused["code"] == "bad_token", refused
        assert (await hello(b.url, "alice", new))["t"] == "welcome"
        users = json.loads(await cfm_admin("users", "--json", "--redis", url,
                                           tmp_path=tmp_path))
        assert {u["name"]: u["dms"] for u in users} == {"alice": 1, "bob": 1}, users
        stats = json.loads(await cfm_admin("stats", "--json", "--redis", url,
                                           tmp_path=tmp_path))
        assert (stats["users"], stats["dms"], stats["messages"]) == (2, 1, 1), stats
        out = await cfm_admin("remove-user", "bob", "--yes", "--redis", url,
                              tmp_path=tmp_path)
        assert "archived archived:" in out, out
        assert await bob.wait_closed() == 4003
        for node in (a, b):
            await eventually(lambda n=node: "bob" not in n.hub.world.users)
        stats = json.loads(await cfm_admin("stats", "--json", "--redis", url,
                                           tmp_path=tmp_path))
        assert (stats["users"], stats["dms"], stats["archived"]) == (1, 0, 1), stats
    finally:
        await alice.close()
        await bob.close()
