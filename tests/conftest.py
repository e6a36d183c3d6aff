"""Shared fixtures: a real ``cfm serve`` in-process on an ephemeral loopback port.

``server``          a started Server (SQLite store in tmp_path, AI contacts off, default
                    limits), stopped at teardown.
``server_factory``  ``await server_factory(**overrides)`` → a started Server with those
                    ServerConfig fields; every one is stopped at teardown.

Raw protocol clients live in :mod:`tests.wire`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port


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
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    from cfm_server.server import Server

    started: list[Any] = []

    async def factory(**overrides: Any) -> Any:
        overrides.setdefault("data_dir", tmp_path / f"server{len(started)}")
        # A port of this worker's own (not 0): tests restart servers on the same port,
        # and an ephemeral one could be taken meanwhile by a parallel worker.
        overrides.setdefault("port", free_port())
        server = Server(make_config(tmp_path, **overrides))
        await server.start()
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        await server.stop(close_code=1001)


@pytest.fixture
async def server(server_factory: Callable[..., Awaitable[Any]]) -> Any:
    return await server_factory()
