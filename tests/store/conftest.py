"""One ``store`` fixture, run against every Store implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cfm_server.store import MemoryStore, SqliteStore, Store


def make_memory(tmp_path: Path) -> Store:
    return MemoryStore()


def make_sqlite(tmp_path: Path) -> Store:
    return SqliteStore(tmp_path / "cfm.sqlite3")


STORE_FACTORIES = {"memory": make_memory, "sqlite": make_sqlite}


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = STORE_FACTORIES[request.param](tmp_path)
    await opened.open()
    yield opened
    await opened.close()
