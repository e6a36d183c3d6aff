"""One ``store`` fixture, run against every Store implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cfm_server.store import MemoryStore, Store


def make_memory(tmp_path: Path) -> Store:
    return MemoryStore()


STORE_FACTORIES = {"memory": make_memory}


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = STORE_FACTORIES[request.param](tmp_path)
    await opened.open()
    yield opened
    await opened.close()
