from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ai.llm_stub import LLMStub, start_stub


@pytest.fixture
def llm() -> Iterator[LLMStub]:
    """A running LLM API stub on an ephemeral loopback port."""
    stub, server, thread = start_stub()
    yield stub
    stub.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class FakeClock:
    """Seconds since the epoch that move only when a test says so."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01 00:00 UTC
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
