"""Faults under two real ``cfm serve --redis`` processes, with SDK clients writing through
both nodes: SIGKILL a node, SIGKILL Redis and restart it on its AOF, cut one node's
Redis connection. Each time: no acked message lost, none doubled, no seq gap, and every
surviving client sees every message exactly once, in order.

Presence after a killed node is tested in test_serve.py
(``test_a_killed_nodes_users_go_offline_for_watchers_on_the_others``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cfm_common import frames as f
from cfm_common.client import Client
from tests.cluster.proxy import FaultyProxy
from tests.cluster.redis_proc import RedisProcess
from tests.server.serve_proc import ServeProcess, serve

ROOM = "#faults"
WRITERS = 4  # two start on each node
PER_WRITER = 40
FAULT_AFTER = WRITERS * PER_WRITER // 3  # acks before the fault is made
WAIT = 60.0  # a bound on every wait (a busy 2-core machine), never a timed assertion


@dataclass
class Watcher:
    """A client that records every message of the room it is handed."""

    client: Client
    seqs: list[int] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    async def follow(self) -> None:
        async for event in self.client:
            if isinstance(event, f.Msg) and event.room == ROOM:
                self.seqs.append(event.seq)
                self.texts[event.seq] = event.text


def node_args(redis_url: str, node: str, data: Path) -> tuple[str, ...]:
    return ("--redis", redis_url, "--node-id", node, "--data-dir", str(data / node),
            "--no-rate-limits", "--set", "presence_expiry=2")


@contextlib.asynccontextmanager
async def two_nodes(url_a: str, url_b: str, data: Path
                    ) -> AsyncIterator[tuple[ServeProcess, ServeProcess]]:
    async with serve(*node_args(url_a, "fa", data)) as a, \
            serve(*node_args(url_b, "fb", data)) as b:
        yield a, b


async def run_with_fault(a: ServeProcess, b: ServeProcess,
                         fault: Callable[[], Awaitable[None]], *,
                         a_survives: bool = True) -> None:
    """Writers through both nodes, ``fault()`` once a third of the says are acked, then
    the checks. Clients list their own node first and the other second (the SDK moves to
    the next URL when its connection drops)."""
    urls = {"a": [a.url, b.url], "b": [b.url, a.url]}
    watchers: list[Watcher] = []
    for i in range(WRITERS + 2):  # + a reader on each node that never writes
        client = Client(urls["ab"[i % 2]], f"user{i}", token_file=False,
                        request_timeout=WAIT)
        await client.connect()
        await client.join(ROOM)
        watcher = Watcher(client)
        watcher.task = asyncio.create_task(watcher.follow())
        watchers.append(watcher)
    writers = watchers[:WRITERS]
    acked: dict[str, int] = {}  # text -> seq of its ack
    enough = asyncio.Event()
    # Each writer's last say waits for the fault: however fast the others go, the fault
    # comes while the stream is under way, never after it.
    faulted = asyncio.Event()

    async def write(w: Watcher, k: int) -> None:
        for n in range(PER_WRITER):
            text = f"w{k}-{n}"
            if n == PER_WRITER - 1:
                await faulted.wait()
            # One id per message: the SDK re-sends it (same id) until acked.
            ack = await asyncio.wait_for(w.client.say(text, room=ROOM), WAIT)
            acked[text] = ack.seq
            if len(acked) >= FAULT_AFTER:
                enough.set()

    try:
        writing = asyncio.gather(*(write(w, k) for k, w in enumerate(writers)))
        await asyncio.wait_for(enough.wait(), WAIT)
        await fault()
        total = WRITERS * PER_WRITER
        assert len(acked) < total, "the fault came after the stream, not in the middle"
        faulted.set()
        await asyncio.wait_for(writing, WAIT * 2)

        assert len(acked) == total
        # Doubled 0 and gaps 0: the acks are exactly seqs 1..total, one per message.
        assert sorted(acked.values()) == list(range(1, total + 1))
        by_seq = {seq: text for text, seq in acked.items()}
        # Lost 0: what a fresh client reads back from Redis is every acked message once.
        async with Client([b.url, a.url] if a_survives else [b.url], "auditor",
                          token_file=False, request_timeout=WAIT) as auditor:
            await auditor.join(ROOM)
            stored: list[tuple[int, str]] = []
            before: int | None = None
            while True:
                page = await auditor.history(ROOM, before=before, limit=100)
                stored = [(m.seq, m.text) for m in page.msgs] + stored
                if not page.more or not page.msgs:
                    break
                before = page.msgs[0].seq
        assert stored == sorted(by_seq.items())
        # Every surviving client sees every message of the others exactly once, in order.
        own = {k: {seq for text, seq in acked.items() if text.startswith(f"w{k}-")}
               for k in range(WRITERS)}
        for k, w in enumerate(watchers):
            mine = own.get(k, set())
            expected = [s for s in range(1, total + 1) if s not in mine]

            def caught_up(w: Watcher = w, expected: list[int] = expected) -> bool:
                return set(expected) <= set(w.seqs)

            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT
            while not caught_up() and loop.time() < deadline:
                await asyncio.sleep(0.05)
            assert len(w.seqs) == len(set(w.seqs)), f"user{k} saw a seq twice"
            got = [s for s in w.seqs if s not in mine]  # (own ones may come back on a resume)
            assert got == expected, f"user{k}: missing {sorted(set(expected) - set(got))[:10]}, " \
                f"doubled {[s for s in set(got) if got.count(s) > 1][:10]}"
            assert all(w.texts[s] == by_seq[s] for s in got)
        if not a_survives:  # node a's clients carried on through node b
            assert all(w.client.url == b.url for w in watchers)
    finally:
        for w in watchers:
            await w.client.close()
            if w.task is not None:
                w.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await w.task


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "nodes"


async def test_a_node_sigkilled_mid_stream_loses_and_doubles_nothing(redis, data) -> None:
    async with two_nodes(redis.url, redis.url, data) as (a, b):
        async def kill_a() -> None:
            a.proc.send_signal(signal.SIGKILL)  # its clients move to node b
            await a.proc.wait()

        await run_with_fault(a, b, kill_a, a_survives=False)


async def test_redis_sigkilled_mid_stream_and_restarted_on_its_aof(redis, data) -> None:
    async with two_nodes(redis.url, redis.url, data) as (a, b):
        async def kill_redis() -> None:
            redis.kill()
            await asyncio.sleep(0.5)  # says meanwhile get error{internal, retry_ms}
            await redis.start()  # the same port and dir: it loads its AOF

        await run_with_fault(a, b, kill_redis)


async def test_one_nodes_redis_connection_cut_for_a_while(redis: RedisProcess, data) -> None:
    proxy = FaultyProxy(redis.port)
    await proxy.start()
    try:
        async with two_nodes(proxy.url, redis.url, data) as (a, b):
            async def cut_a() -> None:
                proxy.refusing = True  # node a cannot reconnect either, for a while
                proxy.cut()
                await asyncio.sleep(2.0)
                proxy.refusing = False

            await run_with_fault(a, b, cut_a)
            assert proxy.accepted > 2  # node a did reconnect through the proxy
    finally:
        await proxy.close()
