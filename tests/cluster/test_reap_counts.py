"""A node's share of the per-address connection cap (``max_conns_per_ip``) when it dies,
and when it is only cut off from Redis: real ``cfm serve --redis`` processes over a real
``redis-server``, a cap small enough that the reconnects of one address hit it.

- SIGKILLed: its clients reconnecting to the other node get in at once, while the dead
  node's registration has not even expired (up to 2/3 × ``presence_expiry`` after its
  last beat; they used to be answered 429 until then);
- cut off from Redis (its connections to Redis dropped: for Redis, the same as dead):
  its share is released meanwhile, and counted again once it is back — after a few
  seconds, or after longer than ``presence_expiry`` with a reap between (such a node's
  connections used to be lost for good: the address could then open the cap's worth
  more) — and each one it closes afterwards is taken back once (nothing counted twice,
  nothing left over).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from redis.asyncio import Redis

from cfm_common.client import Client, Connected
from cfm_server.cluster import keys
from tests.cluster.proxy import FaultyProxy
from tests.cluster.redis_proc import RedisProcess
from tests.server.serve_proc import ServeProcess, serve
from tests.wire import WireClient

CAP = 3
WAIT = 60.0  # a bound on every wait (a busy 2-core machine), never a timed assertion
# A dead node stays registered for 20–40 s after its last beat: far longer than the
# reconnects take, so "still registered" tells "let in at once" from "let in after it
# expired" (what the old count waited for).
LONG_EXPIRY = "presence_expiry=60"


def node_args(redis_url: str, node: str, data: Path, expiry: str) -> tuple[str, ...]:
    return ("--redis", redis_url, "--node-id", node, "--data-dir", str(data / node),
            "--max-conns-per-ip", str(CAP), "--set", expiry,
            "--set", "hello_timeout=300")  # raw connections that never say hello stay


@contextlib.asynccontextmanager
async def two_nodes(url_a: str, url_b: str, data: Path, expiry: str
                    ) -> AsyncIterator[tuple[ServeProcess, ServeProcess]]:
    async with serve(*node_args(url_a, "n1", data, expiry)) as a, \
            serve(*node_args(url_b, "n2", data, expiry)) as b:
        yield a, b


@pytest.fixture
async def client(redis: RedisProcess) -> AsyncIterator[Redis]:
    conn = Redis.from_url(redis.url)
    yield conn
    await conn.aclose()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {WAIT} s: {what}")
        await asyncio.sleep(0.05)


async def refused(url: str) -> bool:
    """Whether a new connection to ``url`` is answered 429 (one that gets in is closed)."""
    try:
        conn = await WireClient.open(url)
    except Exception as exc:  # websockets' InvalidStatus
        assert exc.response.status_code == 429, exc  # type: ignore[attr-defined]
        return True
    await conn.close()
    return False


async def registered_for(client: Redis, node: str) -> float:
    """Seconds ``node``'s registration has left on Redis's clock (< 0: expired; -inf: gone)."""
    expiry = await client.zscore(keys.PRESENCE_NODES, node)
    if expiry is None:
        return float("-inf")
    seconds, micros = await client.time()
    return (expiry - (seconds * 1000 + micros // 1000)) / 1000


def redis_links(proc: ServeProcess, redis_port: int) -> set[str]:
    """``ip:port`` of every connection the node's processes hold to Redis."""
    node = psutil.Process(proc.proc.pid)
    found = set()
    for p in (node, *node.children(recursive=True)):
        for conn in p.net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == redis_port:
                found.add(f"{conn.laddr.ip}:{conn.laddr.port}")
    return found


async def sigkill(proc: ServeProcess, client: Redis, redis_port: int) -> None:
    """SIGKILL the node and wait until Redis has seen each of its connections close (as
    it does at once when a process dies: the kernel closes its sockets)."""
    links = redis_links(proc, redis_port)
    assert links, "the node holds no connection to Redis?"
    proc.proc.send_signal(signal.SIGKILL)
    await proc.proc.wait()

    async def all_closed() -> bool:
        held = {c["addr"] for c in await client.client_list()}
        return not links & held

    await until(all_closed, "Redis sees the killed node's connections closed")


async def test_a_killed_nodes_clients_get_in_on_the_other_node_at_once(redis, client,
                                                                         tmp_path) -> None:
    async with two_nodes(redis.url, redis.url, tmp_path, LONG_EXPIRY) as (a, b):
        held = [await WireClient.open(a.url) for _ in range(CAP)]
        assert await refused(b.url), "the cap counts both nodes' connections"
        await sigkill(a, client, redis.port)
        back: list[WireClient] = []
        try:
            for _ in range(CAP):  # the killed node's clients, reconnecting to node b
                back.append(await WireClient.open(b.url))  # 429 before, until n1 expired
            assert await refused(b.url), "the cap still holds (node b's own three)"
            assert await registered_for(client, "n1") > 0, \
                "let in only once the dead node's registration expired"
        finally:
            for conn in (*back, *held):
                with contextlib.suppress(Exception):
                    await conn.close()


async def test_a_user_with_several_sessions_is_back_at_once_after_their_node_dies(
        redis, client, tmp_path) -> None:
    """The SDK's view: three sessions of one user behind one address, all on the node
    that dies; each moves to the next URL and is signed in again while the dead node's
    registration still stands."""
    async with two_nodes(redis.url, redis.url, tmp_path, LONG_EXPIRY) as (a, b):
        first = Client([a.url, b.url], "dora", token_file=False, request_timeout=WAIT)
        await first.connect()
        sessions = [first] + [Client([a.url, b.url], "dora", token=first.token,
                                     token_file=False, request_timeout=WAIT)
                              for _ in range(CAP - 1)]
        connected: dict[int, asyncio.Event] = {}
        refusals: list[str] = []

        async def follow(k: int, c: Client) -> None:
            async for event in c:
                if isinstance(event, Connected) and c.url == b.url:
                    connected[k].set()
                elif getattr(event, "error", None) is not None:
                    refusals.append(str(event.error))

        tasks: list[asyncio.Task[Any]] = []
        try:
            for c in sessions[1:]:
                await c.connect()
            assert all(c.url == a.url for c in sessions)
            for k, c in enumerate(sessions):
                connected[k] = asyncio.Event()
                tasks.append(asyncio.create_task(follow(k, c)))
            await sigkill(a, client, redis.port)
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in connected.values())),
                                   WAIT)
            left = await registered_for(client, "n1")
            assert left > 0, f"back only after the dead node expired ({left} s; {refusals})"
            assert all(c.welcome is not None and c.welcome.session.startswith("n2.")
                       for c in sessions)
        finally:
            for c in sessions:
                await c.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("expiry", ["presence_expiry=2", LONG_EXPIRY],
                         ids=["reaped-meanwhile", "for-a-few-seconds"])
async def test_a_node_cut_off_from_redis_counts_its_connections_again_once_back(
        redis, client, tmp_path, expiry) -> None:
    """Node a's Redis connections cut (and refused) for a while: its share is released
    meanwhile, as a dead node's would be (Redis cannot tell the two apart), and counted
    again once a is back (and registered again, if node b reaped it meanwhile); what it
    closes afterwards is taken back once."""
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    opened: list[WireClient] = []
    try:
        async with two_nodes(proxy.url, redis.url, tmp_path, "presence_expiry=2") as (a, b):
            held = [await WireClient.open(a.url) for _ in range(CAP)]
            opened += held
            assert await refused(b.url)
            proxy.refusing = True
            proxy.cut()
            reaped = expiry != LONG_EXPIRY
            if reaped:
                await b.wait_line(r"node n1 reaped by node n2", WAIT)
            # Meanwhile node b lets the address in: a's three are not counted.
            await until(lambda: _not(refused(b.url)), "node a's share released")
            proxy.refusing = False
            if reaped:
                await a.wait_line(r"node n1 was reaped while alive", WAIT)
            # Back: its three count again, so the address is at the cap on node b too.
            # (Node a itself would refuse a fourth anyway: its own count at accept. A
            # probe b lets in is closed, its count taken back before the next is made.)
            await until(lambda: refused(b.url), "node a's connections counted again")
            # Two of them close: two fit again (nothing left over), not three (nothing
            # taken twice: the third of a's still counts).
            for conn in held[:2]:
                await conn.close()

            async def fits() -> bool:
                try:
                    opened.append(await WireClient.open(b.url))
                except Exception:
                    return False
                return True

            for _ in range(2):
                await until(fits, "a closed connection taken back")
            assert await refused(b.url)
            assert await refused(a.url)
            assert reaped or "reaped" not in a.text() + b.text()
    finally:
        for conn in opened:
            with contextlib.suppress(Exception):
                await conn.close()
        await proxy.close()


async def _not(check: Awaitable[bool]) -> bool:
    return not await check
