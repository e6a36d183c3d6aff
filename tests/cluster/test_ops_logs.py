"""What an operator reads in a cluster's logs, from real ``cfm serve --redis`` processes
over a real redis-server: a node's death logged once, by the node that reaped it; an
outage of Redis logged as one line when it starts and one when it ends (not a line per
part per retry, nor per change refused meanwhile), with ``/metrics`` telling the same."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from redis.asyncio import Redis

from cfm_server.cluster import keys
from tests.cluster.opsprobe import CLUSTER_WARNING, WAIT, http_of, scrape, until_scraped
from tests.cluster.redis_proc import RedisProcess
from tests.server.serve_proc import serve
from tests.wire import WireClient, signed_in


def node_args(redis: RedisProcess, node: str, data: Path, expiry: float) -> tuple[str, ...]:
    return ("--redis", redis.url, "--node-id", node, "--data-dir", str(data / node),
            "--set", f"presence_expiry={expiry}", "--set", "presence_grace=0")


async def test_a_sigkilled_node_is_logged_once_by_the_node_that_reaped_it(
        redis: RedisProcess, tmp_path: Path) -> None:
    async with serve(*node_args(redis, "fa", tmp_path, 1.5)) as a, \
            serve(*node_args(redis, "fb", tmp_path, 1.5)) as b:
        # On fb: bob only there, carol on both nodes (she stays online).
        doomed = [await WireClient.open(b.url) for _ in range(2)]
        try:
            for client, name in zip(doomed, ("bob", "carol"), strict=True):
                assert (await client.hello(name))["t"] == "welcome"
            async with signed_in(a.url, "carol", token=doomed[1].token):
                b.proc.send_signal(signal.SIGKILL)
                await b.proc.wait()
                start = len(a.lines)
                await a.wait_line(r"node fb reaped by node fa \(.*\): 1 of its 2 users "
                                  r"went offline", WAIT, start=start)
                # Two more heartbeats of fa (its expiry moves each time): none reaps again.
                client = Redis.from_url(redis.url)
                try:
                    scores: list[float | None] = []
                    for _ in range(int(WAIT * 10)):
                        score = await client.zscore(keys.PRESENCE_NODES, "fa")
                        if not scores or scores[-1] != score:
                            scores.append(score)
                        if len(scores) >= 3:
                            break
                        await asyncio.sleep(0.1)
                    assert len(scores) >= 3, scores
                finally:
                    await client.aclose()
                reaps = [line for line in a.lines if "reaped by node" in line]
                assert len(reaps) == 1, reaps
                assert (await scrape(http_of(a.url)))["cfm_cluster_nodes_reaped_total"] == 1
        finally:
            for client in doomed:
                await client.close()


async def test_an_outage_of_redis_is_one_line_when_it_starts_and_one_when_it_ends(
        redis: RedisProcess, tmp_path: Path) -> None:
    # An expiry far longer than the outage: no node is reaped (its own lines).
    async with serve(*node_args(redis, "fa", tmp_path, 60)) as a, \
            serve(*node_args(redis, "fb", tmp_path, 60)) as b:
        bases = [http_of(a.url), http_of(b.url)]
        async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
            for client in (alice, bob):
                await client.send({"t": "join", "room": "#ops", "id": "j"})
                await client.recv_until("joined", ref="j")
            for base in bases:
                assert (await scrape(base))["cfm_cluster_redis_reachable"] == 1
            starts = [len(a.lines), len(b.lines)]
            assert redis.proc is not None
            os.kill(redis.proc.pid, signal.SIGSTOP)
            try:
                for base in bases:  # both notice (the pub/sub watchdog, a pipeline's deadline)
                    await until_scraped(base, lambda s: s["cfm_cluster_redis_reachable"] == 0,
                                        "the node to see Redis gone")
                # Requests meet the outage on both nodes: each answered retry_ms.
                for i, client in enumerate((alice, bob, alice)):
                    await client.send({"t": "say", "room": "#ops", "text": "x", "id": f"s{i}"})
                    error = await client.recv_until("error", timeout=WAIT)
                    assert error["code"] == "internal" and error["retry_ms"] > 0, error
                # A change of a shared record (the user's) meets it too: refused alike,
                # and no line of its own (it used to log an ERROR per change refused).
                await bob.send({"t": "presence", "status": "busy"})
                error = await bob.recv_until("error", timeout=WAIT)
                assert error["code"] == "internal" and error["ref"] == "presence", error
            finally:
                os.kill(redis.proc.pid, signal.SIGCONT)
            for base in bases:
                samples = await until_scraped(
                    base, lambda s: s["cfm_cluster_redis_reachable"] == 1, "Redis back")
                assert samples["cfm_cluster_redis_outages_total"] == 1
        for node, start in zip((a, b), starts, strict=True):
            await node.wait_line(r"Redis reachable again from node f[ab] after [\d.]+ s",
                                 WAIT, start=start)
            lines = node.lines[start:]
            text = "\n".join(lines)
            assert sum("Redis unreachable from node" in line for line in lines) == 1, text
            assert sum("Redis reachable again" in line for line in lines) == 1, text
            warnings = [line for line in lines if CLUSTER_WARNING.search(line)]
            assert len(warnings) == 2, text  # the start and the end, nothing per retry
            assert not [line for line in lines if " ERROR " in line], text
