"""``cfm admin usage`` and ``invite`` with ``--redis`` on a Redis Cluster of 3 masters
(``redis+cluster://``): the rooms' streams on their own slots, read in one pipeline
across the masters; the nodes' records of how they run on yet another."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cluster.test_admin import cfm_admin
from tests.cluster.test_redis_cluster import RedisCluster, nodes, redis_cluster  # noqa: F401
from tests.wire import signed_in


async def test_usage_and_invite_work_on_a_redis_cluster(
        redis_cluster: RedisCluster, nodes, tmp_path: Path) -> None:  # noqa: F811
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "ann") as ann, signed_in(b.url, "ben") as ben:
        for i, room in enumerate(("#one", "#two", "#three")):  # on three slots
            await ann.send({"t": "join", "room": room})
            await ann.recv_until("joined")
            await ann.send({"t": "say", "room": room, "text": "x" * (10 * (i + 1)),
                            "id": f"a{i}"})
            await ann.recv_until("ack", id=f"a{i}")
        await ben.send({"t": "say", "to": "ann", "text": "hi", "id": "b1"})
        await ben.recv_until("ack", id="b1")
    url = redis_cluster.url
    usage = json.loads(await cfm_admin("usage", "--json", "--redis", url, tmp_path=tmp_path))
    rooms = {r["name"]: r["messages"] for r in usage["rooms"]}
    assert rooms == {"#one": 1, "#two": 1, "#three": 1, "dm:ann:ben": 1}, usage
    assert [(u["name"], u["messages"]) for u in usage["users"]] == [("ann", 3), ("ben", 1)]
    out = await cfm_admin("invite", "--redis", url, tmp_path=tmp_path)
    assert "this cluster's registration is 'open' (as 2 running nodes" in out, out
