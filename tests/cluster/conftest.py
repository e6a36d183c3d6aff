"""Fixtures of the cluster tests: a real redis-server per test, brokers on it.

``redis``          a started RedisProcess (AOF on, fsync always) in tmp_path; the test is
                   skipped, saying why, when redis-server is not installed
``broker_factory`` ``await broker_factory(url=None, **kwargs)`` → a started Broker whose
                   deliveries are recorded in ``broker.seen`` as (room, seq, origin, msg);
                   every one is closed at teardown
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
