"""Fixtures of the cluster tests: a real redis-server per test, brokers on it.

``redis``          a started RedisProcess (AOF on, fsync always) in tmp_path; the test is
                   skipped, saying why, when redis-server is not installed
``broker_factory`` ``await broker_factory(url=None, **kwargs)`` → a started Broker whose
                   deliveries are recorded in ``broker.seen`` as (room, seq, origin, msg);
                   every one is closed at teardown
``nodes``          ``await nodes(**settings)`` → one more ``cfm serve --redis`` node over
                   ``redis`` (a module's ``NODE_DEFAULTS`` apply to each)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.redis_proc import BINARY, MISSING, RedisProcess


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    if BINARY is None:
        pytest.skip(MISSING)
    proc = RedisProcess(tmp_path / "redis")
    await proc.start()
    yield proc
    await proc.stop()


@pytest.fixture
async def broker_factory(
    redis: RedisProcess,
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    from cfm_server.cluster.broker import Broker

    made: list[Any] = []

    async def factory(url: str | None = None, **kwargs: Any) -> Any:
        seen: list[tuple[str, int, str, bytes]] = []
        kwargs.setdefault("node", f"n{len(made) + 1}")
        broker = Broker(url or redis.url,
                        on_message=lambda *d: seen.append(d), **kwargs)
        broker.seen = seen  # type: ignore[attr-defined]
        await broker.start()
        made.append(broker)
        return broker

    yield factory
    for broker in made:
        await broker.close()


@pytest.fixture
async def nodes(redis: RedisProcess, server_factory: Callable[..., Awaitable[Any]],
                request: pytest.FixtureRequest,
                ) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await nodes(**settings)``: one more ``cfm serve --redis`` node (n1, n2, …) over
    the test's redis-server. A module's ``NODE_DEFAULTS`` (a dict) are every node's
    settings unless the call names them."""
    made: list[Any] = []
    defaults = getattr(request.module, "NODE_DEFAULTS", {})

    async def node(**overrides: Any) -> Any:
        server = await server_factory(redis_url=redis.url, node_id=f"n{len(made) + 1}",
                                      **{**defaults, **overrides})
        made.append(server)
        return server

    yield node
