"""Helpers for the SDK tests: bounded waits on a Client's event stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cfm_common.bot import Bot
from cfm_common.client import Client, StateChanged
from cfm_common.frames import Msg

TIMEOUT = 10.0


async def next_event(client: Client, match: Callable[[Any], bool], timeout: float = TIMEOUT,
                     seen: list[Any] | None = None) -> Any:
    """The client's next event that ``match`` accepts; every event read goes to ``seen``."""

    async def scan() -> Any:
        async for event in client:
            if seen is not None:
                seen.append(event)
            if match(event):
                return event
        raise AssertionError("the event stream ended")

    return await asyncio.wait_for(scan(), timeout)


class Recorder:
    """Reads a client's events in the background and lets a test wait on them."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.events: list[Any] = []
        self.ended = False
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self.client:
            self.events.append(event)
            self._changed.set()
        self.ended = True
        self._changed.set()

    async def wait(self, done: Callable[[Recorder], bool], timeout: float = TIMEOUT) -> None:
        async def until() -> None:
            while not done(self):
                if self.ended:
                    raise AssertionError("the event stream ended")
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)

    def msgs(self, room: str | None = None) -> list[Msg]:
        return [e for e in self.events if isinstance(e, Msg) and room in (None, e.room)]

    def seqs(self, room: str) -> list[int]:
        return [m.seq for m in self.msgs(room)]

    def states(self) -> list[StateChanged]:
        return [e for e in self.events if isinstance(e, StateChanged)]


async def restart(server_factory: Any, server: Any, close_code: int = 1012, **overrides: Any
                  ) -> Any:
    """Stop ``server`` and start a new one on the same port and data directory."""
    port, data_dir = server.port, server.config.data_dir
    await server.stop(close_code=close_code)
    overrides.setdefault("data_dir", data_dir)
    return await server_factory(port=port, **overrides)


@pytest.fixture
async def clients(server_factory: Any) -> AsyncIterator[Callable[..., Client]]:
    """Make Clients (token in memory unless told) that are closed at teardown, before
    the servers (this fixture depends on ``server_factory``, so it is torn down first)."""
    made: list[Client] = []

    def make(url: str, name: str, **kwargs: Any) -> Client:
        kwargs.setdefault("token_file", False)
        client = Client(url, name, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


@pytest.fixture
async def bots() -> Any:
    """``bots(url, name, **kwargs)`` → a Bot (no token file), stopped at teardown."""
    made: list[Bot] = []

    def make(url: str, name: str, **kwargs: Any) -> Bot:
        kwargs.setdefault("token_file", False)
        bot = Bot(url, name, **kwargs)
        made.append(bot)
        return bot

    yield make
    for bot in made:
        await bot.stop()
