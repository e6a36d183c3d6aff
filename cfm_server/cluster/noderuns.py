"""How each node of a cluster runs, kept in Redis for ``cfm admin --redis``.

A single node writes its URL, ``public_url`` and ``registration`` (as flags, environment
and settings file made them) to ``<data dir>/server.json`` at each start, and ``cfm
admin`` reads it: ``invite`` warns when the server's registration is not by invite (a
code nobody is asked for), and ``invite``, ``reset-token`` and ``add-user`` name the
URL people type. A cluster node writes its own ``server.json`` too (``runfile.py``),
but each node has settings of its own and ``cfm admin --redis`` runs anywhere, so each
also writes that same record as its field of the hash ``cfm:node-runs`` (node id →
JSON), and ``cfm admin`` reads the records of the nodes running now: those whose
expiry in the presence's ``nodes`` zset (Redis's clock) has not passed. A node that
starts drops the records of nodes no longer in that zset (stopped cleanly, or reaped),
so the hash holds one field per node id in use; when no node runs, the records of those
that ran last are what is left.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from cfm_server.cluster import keys
from cfm_server.cluster.batcher import Batcher
from cfm_server.cluster.errors import ClusterError

log = logging.getLogger(__name__)


async def record(batcher: Batcher, node_id: str, run: dict[str, Any]) -> None:
    """Write this node's record (at its start, after its claim put it in ``nodes``), and
    drop those of nodes that left. A failure is logged, not raised: ``cfm admin`` then
    cannot tell how this node runs, which is no reason to stop serving."""
    try:
        await batcher.call("HSET", keys.NODE_RUNS, node_id, json.dumps(run))
        present: Any = await batcher.call("ZRANGE", keys.PRESENCE_NODES, 0, -1)
        recorded: Any = await batcher.call("HKEYS", keys.NODE_RUNS)
        gone = set(recorded or ()) - set(present or ())
        if gone:
            await batcher.call("HDEL", keys.NODE_RUNS, *sorted(gone))
    except ClusterError as exc:
        log.warning("cannot record this node's settings in Redis for cfm admin: %s", exc)


@dataclass(frozen=True, slots=True)
class Runs:
    """What the nodes recorded: ``nodes`` (node id → its record) of the running nodes,
    or, when none runs (``running`` False), of those that ran last."""

    nodes: dict[str, dict[str, Any]]
    running: bool

    def values(self, field: str) -> dict[str, Any]:
        """Each node's value of ``field`` (a node whose record lacks it: None)."""
        return {node: run.get(field) for node, run in sorted(self.nodes.items())}


async def read(url: str) -> Runs:
    """The records in the Redis at ``url`` (for an admin command: its own connection;
    Redis's errors go up as they are)."""
    from cfm_server.cluster.rediscluster import one_shot

    async with one_shot(url) as client:
        return await _read(client)


async def _read(client: Any) -> Runs:
    seconds, micros = await client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    live = {n.decode() for n in await client.zrangebyscore(
        keys.PRESENCE_NODES, f"({now_ms}", "+inf")}
    nodes = {}
    for node, value in (await client.hgetall(keys.NODE_RUNS)).items():
        try:
            run = json.loads(value)
        except ValueError:
            continue  # not a record this cfm wrote: nothing to say about that node
        if isinstance(run, dict):
            nodes[node.decode()] = run
    running = {n: r for n, r in nodes.items() if n in live}
    return Runs(running, True) if running else Runs(nodes, False)
