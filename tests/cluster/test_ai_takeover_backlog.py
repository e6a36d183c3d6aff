"""What is said to an AI contact while its node is dead is answered by the node that
takes it over: the persona's new client starts from its read mark, which lives in Redis
(the bot moves it only once a message is handled), not from the rooms' present. Two
real ``cfm serve --redis`` processes over one real redis-server; the lease holder is
SIGKILLed and a user on a surviving node writes to the persona before the takeover."""

from __future__ import annotations

import signal
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.cluster.redis_proc import RedisProcess
from tests.cluster.test_ai_takeover import (
    LEASE_KEY,
    PERSONA,
    lease_holder,
    node_args,
    until,
    watching,
)
from tests.server.serve_proc import ServeProcess, serve


# Two nodes with the AI contacts, a takeover and two persona answers: on a loaded CI
# machine more than the default two minutes (each wait is bounded by WAIT).
@pytest.mark.timeout(300)
async def test_a_message_sent_while_the_holder_is_dead_is_answered_after_the_takeover(
        redis: RedisProcess, tmp_path: Path) -> None:
    db = aioredis.from_url(redis.url)
    async with AsyncExitStack() as stack:
        procs: dict[str, ServeProcess] = {}
        for node in ("n1", "n2"):
            # A lease of 8 s: the question is stored well before any node takes over,
            # even on a loaded machine (the check below says so if not).
            procs[node] = await stack.enter_async_context(
                serve(*node_args(redis.url, node, tmp_path, 8.0, 1.5), ai=True))

        holder = await lease_holder(db)
        survivor = next(n for n in procs if n != holder)
        async with watching(procs[survivor].url, "wanda") as wanda:
            # One exchange first, so the persona has a read mark in this conversation.
            await wanda.send({"t": "say", "to": PERSONA, "text": "hello?", "id": "q1"})

            def answers() -> list[dict]:
                return [f for f in wanda.seen
                        if f.get("t") == "msg" and f.get("from") == PERSONA]

            async def answered(n: int) -> bool:
                return len(answers()) >= n

            await until(lambda: answered(1), "the persona answers on its first node")
            procs[holder].proc.send_signal(signal.SIGKILL)
            await procs[holder].proc.wait()
            await wanda.send({"t": "say", "to": PERSONA, "text": "are you still there?",
                              "id": "q2"})

            async def stored() -> bool:
                return any(f.get("t") == "ack" and f.get("id") == "q2" for f in wanda.seen)

            await until(stored, "the question is stored")
            assert holder in (await db.get(LEASE_KEY) or b"").decode(), \
                "asked before the takeover"
            await until(lambda: answered(2), "the new holder answers what was said meanwhile")
    await db.aclose()

