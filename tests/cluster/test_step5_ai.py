"""The AI contacts on a cluster: two real nodes over one real redis-server. They run on
one node at a time (a lease), answer users on the other node, move to the other node
when their node stops, and keep their memory, quotas and kill switch in Redis."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from cfm_server.ai.config import AIConfig
from tests.ai.llm_stub import LLMStub, start_stub
from tests.cluster.redis_proc import RedisProcess
from tests.wire import WireClient, eventually

PERSONA = "smartybot"
TTL = 1.0  # the AI lease's: short, so that a takeover after a death is quick


@pytest.fixture
def llm() -> Any:
    stub, server, thread = start_stub()
    yield stub
    stub.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


NODE_DEFAULTS = {"ai_enabled": True, "ai_lease_ttl": TTL}


def running(server: Any) -> bool:
    ai = server.ai_contacts.cluster
    return ai is not None and ai.running is not None and PERSONA in ai.running.handles


async def holder_and_other(a: Any, b: Any) -> tuple[Any, Any]:
    """Once the AI contacts run: the node running them, and the other (exactly one)."""
    await eventually(lambda: running(a) or running(b), timeout=15)
    assert running(a) != running(b), "the AI contacts run on both nodes"
    return (a, b) if running(a) else (b, a)


async def ask(client: WireClient, text: str, n: int) -> str:
    await client.send({"t": "say", "to": PERSONA, "text": text, "id": f"q{n}"})
    while True:
        frame = await client.recv_until("msg", timeout=15)
        if frame.get("from", frame.get("sender")) == PERSONA:
            return str(frame["text"])


async def test_the_ai_contacts_run_once_and_move_to_the_other_node_with_their_memory(
        nodes) -> None:
    a, b = await nodes(), await nodes()
    holder, other = await holder_and_other(a, b)
    async with WireClient.connect(other.url) as alice:
        welcome = await alice.hello("alice")
        assert PERSONA in [c["name"] for c in welcome["contacts"]]  # a default contact
        first = await ask(alice, "hi! my name is Alice", 1)
        assert first
        # Its memory reaches Redis (written a moment after the reply).
        batcher = other.node.broker.batcher

        async def remembered() -> bytes | None:
            value: bytes | None = await batcher.call("GET", "cfm:ai-memory:smartybot")
            return value

        for _ in range(150):
            value = await remembered()
            if value is not None and b"Alice" in value:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the persona's memory never reached Redis")
        await holder.stop(close_code=1001)  # gives the lease up: the other takes over now
        await eventually(lambda: running(other), timeout=15)
        third = await ask(alice, "what's my name?", 2)
        assert "Alice" in third, third


async def test_the_ai_quotas_hold_across_a_takeover(nodes, llm: LLMStub) -> None:
    ai = AIConfig(backend="openai", base_url=llm.openai_url, model="stub",
                  user_daily_quota=2, rooms=())
    a, b = await nodes(ai=ai), await nodes(ai=ai)
    holder, other = await holder_and_other(a, b)
    async with WireClient.connect(other.url) as alice:
        await alice.hello("alice")
        for n in range(2):
            assert (await ask(alice, f"question {n}", n)).startswith("stub reply")
        assert len(llm.calls) == 2
        flat = await other.node.broker.batcher.call("HGETALL", f"cfm:ai-quota:{_today()}")
        counts = dict(zip(flat[::2], flat[1::2], strict=True))
        assert counts[b"u:alice"] == b"2" and counts[b"t"] == b"2", counts
        await holder.stop(close_code=1001)
        await eventually(lambda: running(other), timeout=15)
        refused = await ask(alice, "question 3", 3)
        assert not refused.startswith("stub reply"), refused
        assert len(llm.calls) == 2  # the new holder knew alice had used her quota


async def test_the_kill_switch_is_cluster_wide(nodes, redis: RedisProcess) -> None:
    from cfm_server.cluster.ai import set_kill_switch

    a, b = await nodes(), await nodes()
    holder, other = await holder_and_other(a, b)
    await set_kill_switch(other.node.broker.batcher, True)  # said on the other node
    await eventually(lambda: holder.ai_contacts.cluster.running.guards.kill_switch)
    await set_kill_switch(other.node.broker.batcher, False)
    await eventually(lambda: not holder.ai_contacts.cluster.running.guards.kill_switch)
    # The operator's command, with its own connection.
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("cfm")), "admin", "ai-kill-switch", "on",
        "--redis", redis.url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    await eventually(lambda: holder.ai_contacts.cluster.running.guards.kill_switch)
    # A new holder reads it from Redis.
    await holder.stop(close_code=1001)
    await eventually(lambda: running(other), timeout=15)
    assert other.ai_contacts.cluster.running.guards.kill_switch


def _today() -> str:
    import time

    from cfm_server.ai.guards import utc_day

    return utc_day(time.time()).isoformat()
