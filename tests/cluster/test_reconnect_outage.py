"""An SDK client comes back within seconds of the end of a Redis outage, without
hammering the node meanwhile: a real ``cfm serve --redis`` node over a real
redis-server, a client (the SDK's default back-off) reaching it through a loopback TCP
proxy that cuts its connection while Redis is down. Each reconnect meanwhile is answered
``error{internal, retry_ms}`` and closed with 1013; the client waits what the node asked
(its next probe of Redis, at most 2.5 s), spread up to half as much again, instead of a
back-off that grows to 30 s. Asserted on the schedule of attempts the client reports
(``StateChanged.retry_in``), not on the machine's speed."""

from __future__ import annotations

import asyncio
from typing import Any

from cfm_common.client import Client, Connected, ConnectionState, StateChanged
from tests.cluster.proxy import FaultyProxy
from tests.cluster.redis_proc import RedisProcess
from tests.sdk.conftest import Recorder

WAIT = 60.0  # a bound on every wait (a busy 2-core machine), never a timed assertion
REFUSALS = 6  # reconnects refused before Redis comes back: the old back-off is at 4-16 s
PROBE_CAP = 2.0 * 1.25  # the longest a node waits between probes of Redis (batcher.py)
LONGEST = PROBE_CAP * 1.5  # the longest the client may wait once told the probe's time


def waits(record: Recorder) -> list[float]:
    return [e.retry_in for e in record.events if isinstance(e, StateChanged)
            and e.state is ConnectionState.RECONNECTING and e.retry_in is not None]


async def test_a_client_comes_back_on_the_nodes_hint_after_a_redis_outage(
        nodes: Any, redis: RedisProcess) -> None:
    node = await nodes()
    port = int(node.url.rsplit(":", 1)[1].split("/")[0])
    front = FaultyProxy(port)
    await front.start()
    url = front.url.replace("redis://", "ws://").replace("/0", "/ws")
    client = Client(url, "alice", token_file=False)  # the default back-off
    record = Recorder(client)
    try:
        await asyncio.wait_for(client.connect(), WAIT)
        await redis.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while node.not_ready() is None:  # the node notices within its watchdog's time
            assert loop.time() < deadline, "the node never noticed Redis was gone"
            await asyncio.sleep(0.05)
        front.cut()  # as a proxy that takes the node out closes its clients
        await record.wait(lambda r: len(waits(r)) >= REFUSALS, timeout=WAIT * 2)
        await redis.start()  # same port and dir
        await record.wait(lambda r: sum(isinstance(e, Connected) for e in r.events) == 2,
                          timeout=WAIT)
        schedule = waits(record)
        # The first wait follows the drop (no answer yet: the back-off's first step);
        # every later one follows a refusal that said when to come back.
        hinted = schedule[1:]
        assert len(hinted) >= REFUSALS - 1, schedule
        assert all(0.5 <= w <= LONGEST for w in hinted), schedule  # never sooner, not late
        # So the client was back at most one such wait after the node was ready.
        assert client.state is ConnectionState.CONNECTED
    finally:
        await client.close()
        await front.close()
