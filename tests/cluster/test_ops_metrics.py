"""A cluster node's ``/metrics``: its pipelines to Redis and their round trips, the gaps
it filled, the leases it holds — two real nodes (in-process Servers) over a real
redis-server, scraped over HTTP as Prometheus would; and the outage tracker's reminder
while Redis stays out of reach, with a real Broker."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import pytest
from redis.asyncio import Redis

from cfm_server.cluster import keys, scripts
from cfm_server.cluster.broker import new_epoch
from tests.cluster.opsprobe import WAIT, scrape, until_scraped
from tests.cluster.redis_proc import RedisProcess
from tests.wire import signed_in

COUNT = "cfm_cluster_pipeline_seconds_count"


async def test_the_round_trip_histogram_counts_a_pipeline_per_awaited_say(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        for client in (alice, bob):
            await client.send({"t": "join", "room": "#ops", "id": "j"})
            await client.recv_until("joined", ref="j")
        before = await scrape(a.http_url)
        says = 10
        for i in range(says):  # each acked before the next: a pipeline each, at least
            await alice.send({"t": "say", "room": "#ops", "text": f"m{i}", "id": f"m{i}"})
            await alice.recv_until("ack", id=f"m{i}", timeout=WAIT)
        after = await scrape(a.http_url)
    assert after[COUNT] - before[COUNT] >= says
    assert after["cfm_cluster_pipeline_seconds_sum"] > before["cfm_cluster_pipeline_seconds_sum"]
    # Every pipeline observed once it answered (one may be in flight at a scrape).
    assert after[COUNT] <= after["cfm_cluster_pipelines_total"]
    assert after["cfm_cluster_pipelines_total"] - before["cfm_cluster_pipelines_total"] >= says
    assert after["cfm_cluster_commands_total"] >= after["cfm_cluster_pipelines_total"]
    assert after['cfm_cluster_pipeline_seconds_bucket{le="+Inf"}'] == after[COUNT]
    assert after["cfm_cluster_redis_reachable"] == 1
    assert after["cfm_cluster_gaps_filled_total"] == 0  # nothing was lost on the way


async def test_a_lost_publish_is_counted_as_a_gap_filled(nodes, redis: RedisProcess) -> None:
    a = await nodes()
    room = "#gaps"
    async with signed_in(a.url, "alice") as alice:
        await alice.send({"t": "join", "room": room, "id": "j"})
        await alice.recv_until("joined", ref="j")
        # Seq 1 is stored by the very script, but its publish goes nowhere: lost on the way.
        client = Redis.from_url(redis.url)
        try:
            head, tail = scripts.msg_parts(room, "bob", "lost", 1, "text", "lost-1")
            sha = await client.script_load(scripts.APPEND.source)
            await client.evalsha(sha, 4, keys.room_meta(room), keys.room_log(room),
                                 keys.room_ids(room), keys.room_changes(room),
                                 8, "bob", "lost-1", 1, head, tail, new_epoch(), "nowhere",
                                 "elsewhere")
        finally:
            await client.aclose()
        await alice.send({"t": "say", "room": room, "text": "after", "id": "s"})
        await alice.recv_until("ack", id="s", timeout=WAIT)  # seq 2: 1 is missing here
        await until_scraped(a.http_url, lambda s: s["cfm_cluster_gaps_filled_total"] == 1,
                            "the gap to be filled")


def leases(samples: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in samples.items() if k.startswith("cfm_cluster_lease_held")}


async def test_each_lease_is_held_by_one_node_and_moves_when_it_stops(nodes) -> None:
    settings: dict[str, Any] = {"ai_enabled": True, "ai_lease_ttl": 2.0, "retention_days": 30}
    a, b = await nodes(**settings), await nodes(**settings)
    names = ('cfm_cluster_lease_held{lease="ai-contacts"}',
             'cfm_cluster_lease_held{lease="retention"}')

    async def held() -> dict[str, float]:
        """Per lease, how many nodes say they hold it (both nodes list both leases)."""
        scraped = [leases(await scrape(node.http_url)) for node in (a, b)]
        assert all(set(s) == set(names) for s in scraped), scraped
        return {name: sum(s[name] for s in scraped) for name in names}

    for _ in range(int(WAIT * 10)):
        if all(v == 1 for v in (await held()).values()):
            break
        await asyncio.sleep(0.1)
    assert all(v == 1 for v in (await held()).values()), await held()
    holder = a if leases(await scrape(a.http_url))[names[0]] == 1 else b
    other = b if holder is a else a
    await holder.stop(close_code=1001)  # releases its leases: the other takes them
    await until_scraped(other.http_url, lambda s: all(leases(s)[n] == 1 for n in names),
                        "the other node to hold both leases")


async def test_an_outage_is_recalled_at_most_once_per_interval_while_it_lasts(
        broker_factory, redis: RedisProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cfm_server.cluster")
    # A watchdog quick enough for a short test, slow enough for a busy machine.
    broker = await broker_factory(ping_interval=0.5, ping_timeout=2.0)
    broker.outage.remind = 0.5
    await broker.head("#warm")  # a pipeline's connection exists: it times out, not refuses
    for _ in range(int(WAIT * 10)):
        if broker.subscriber.connected:
            break
        await asyncio.sleep(0.1)
    assert broker.subscriber.connected and broker.outage.reachable
    caplog.clear()
    assert redis.proc is not None
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        loop = asyncio.get_running_loop()
        stopped = loop.time()
        for _ in range(int(WAIT * 10)):
            if any("still unreachable" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.1)
        # Meanwhile everything the broker does fails at once, and retries, quietly.
        for _ in range(20):
            with pytest.raises(Exception, match="unreachable"):
                await broker.head("#x")
        await asyncio.sleep(1.0)  # a while longer: more reminders, never more than one per 0.5 s
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    lasted = loop.time() - stopped
    for _ in range(int(WAIT * 10)):
        if broker.outage.reachable:
            break
        await asyncio.sleep(0.1)
    assert broker.outage.reachable
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("Redis unreachable from node" in line for line in lines) == 1, lines
    reminders = [line for line in lines if "still unreachable" in line]
    assert 1 <= len(reminders) <= lasted / 0.5 + 1, lines
    assert sum("Redis reachable again" in line for line in lines) == 1, lines
    assert len(lines) == len(reminders) + 2, lines  # nothing else: no line per retry
