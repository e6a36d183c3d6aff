"""Shared fixtures: a real ``cfm serve`` in-process on an ephemeral loopback port.

``server``          a started Server (SQLite store in tmp_path, AI contacts off, default
                    limits), stopped at teardown.
``server_factory``  ``await server_factory(**overrides)`` → a started Server with those
                    ServerConfig fields; every one is stopped at teardown. In the
                    cluster variant of a both-mode test (tests/modes.py) it is a
                    ``Cluster`` of two nodes over one redis-server instead.
``server_mode``     "single" or "cluster" (tests/modes.py: which tests run in both)

Raw protocol clients live in :mod:`tests.wire`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests import modes
from tests.ports import free_port


def pytest_addoption(parser: pytest.Parser) -> None:
    modes.add_option(parser)


def pytest_configure(config: pytest.Config) -> None:
    modes.configure(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    modes.generate(metafunc)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    modes.mark_xfails(items)


@pytest.fixture
def server_mode(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "single")


def make_config(tmp_path: Path, **overrides: Any) -> Any:
    from cfm_server.config import ServerConfig

    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": tmp_path,
        "store": "sqlite",
        "ai_enabled": False,
        "rate_limits": True,
        # Short closes keep teardown fast; the protocol does not depend on them.
        "close_timeout": 1.0,
    }
    values.update(overrides)
    return ServerConfig(**values)


@pytest.fixture
async def server_factory(
    tmp_path: Path, server_mode: str
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    from cfm_server.server import Server

    started: list[Any] = []
    redises: dict[Path, Any] = {}

    async def start_node(**overrides: Any) -> Any:
        # A port of this worker's own (not 0): tests restart servers on the same port,
        # and an ephemeral one could be taken meanwhile by a parallel worker.
        overrides.setdefault("port", free_port())
        server = Server(make_config(tmp_path, **overrides))
        await server.start()
        started.append(server)
        return server

    async def redis_for(data_dir: Path) -> Any:
        from tests.cluster.redis_proc import BINARY, MISSING, RedisProcess

        if data_dir not in redises:
            if BINARY is None:
                pytest.skip(MISSING)
            redises[data_dir] = RedisProcess(tmp_path / f"redis{len(redises)}")
            await redises[data_dir].start()
        return redises[data_dir]

    async def factory(**overrides: Any) -> Any:
        overrides.setdefault("data_dir", tmp_path / f"server{len(started)}")
        if server_mode == "cluster":
            return await modes.start_cluster(tmp_path, overrides.pop("data_dir"), redis_for,
                                             start_node, **overrides)
        return await start_node(**overrides)

    yield factory
    for server in reversed(started):
        await server.stop(close_code=1001)
    for redis in redises.values():
        await redis.stop()


@pytest.fixture
async def server(server_factory: Callable[..., Awaitable[Any]]) -> Any:
    return await server_factory()
