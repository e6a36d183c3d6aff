"""Test your bot against a real cfm server, started inside the test's event loop.

    from cfm_common.testing import running_server

    async def test_my_bot(tmp_path):
        async with running_server(tmp_path) as server:
            bot = make_bot(server.url)                 # your Bot, pointed at server.url
            await bot.start()
            alice = await server.client("alice")       # a connected Client
            await alice.say("!score", to=bot.name)
            reply = await server.next_message(alice, sender=bot.name)
            assert reply.text == "..."
            await bot.stop()

``running_server`` starts ``cfm serve`` in-process on a free loopback port with a SQLite
store under the given directory, AI contacts off and the server's default limits (pass
any ``ServerConfig`` field to change one, e.g. ``rate_limits=False``). ``server.restart()``
stops it (close 1012: clients reconnect and resume) and starts it again on the same port
and data. Everything it made is closed on the way out.

With pytest, ``pytest_plugins = ["cfm_common.testing"]`` in a ``conftest.py`` also gives
the fixture ``cfm_server`` (needs pytest-asyncio, as cfm's own tests use).

The server is part of the ``cfm`` distribution, not of the SDK's layer: it is imported
when a server starts, never when this module is, so that an SDK-only install can still
import the rest of ``cfm_common``.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cfm_common.client import Client
from cfm_common.frames import Msg
from cfm_common.rules import CloseCode

DEFAULT_TIMEOUT = 10.0


class TestServer:
    """A running in-process server and the clients made for it."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, data_dir: Path, settings: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.server: Any = None
        self.port = 0
        self._clients: list[Client] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        try:
            from cfm_server.config import ServerConfig
            from cfm_server.server import Server
        except ImportError as exc:  # an SDK-only install
            raise RuntimeError(
                "cfm_common.testing needs the cfm server: install the full cfm package"
            ) from exc
        values: dict[str, Any] = {
            "host": "127.0.0.1", "port": self.port, "data_dir": self.data_dir,
            "ai_enabled": False, "close_timeout": 1.0,
        }
        values.update(self.settings)
        self.server = Server(ServerConfig(**values))
        await self.server.start()
        self.port = self.server.port

    async def stop(self, close_code: int = 1001) -> None:
        if self.server is not None:
            await self.server.stop(close_code=close_code)
            self.server = None

    async def restart(self) -> None:
        """Stop (close 1012, "restarting": clients come back within seconds) and start
        again on the same port and data directory."""
        await self.stop(close_code=CloseCode.SERVICE_RESTART)
        await self.start()

    async def client(self, name: str, **options: Any) -> Client:
        """A connected :class:`Client` (token in memory unless told), closed at the end."""
        options.setdefault("token_file", False)
        client = Client(self.url, name, **options)
        self._clients.append(client)
        await client.connect()
        return client

    @staticmethod
    async def next_message(client: Client, *, sender: str | None = None,
                           room: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Msg:
        """The client's next ``Msg`` event (from ``sender``, in ``room``), within
        ``timeout`` seconds; other events are passed over."""

        async def scan() -> Msg:
            async for event in client:
                if isinstance(event, Msg) and sender in (None, event.sender) \
                        and room in (None, event.room):
                    return event
            raise AssertionError("the client closed before the message came")

        return await asyncio.wait_for(scan(), timeout)

    async def close(self) -> None:
        for client in self._clients:
            await client.close()
        self._clients.clear()
        await self.stop()


@asynccontextmanager
async def running_server(data_dir: str | Path | None = None, **settings: Any
                         ) -> AsyncIterator[TestServer]:
    """An in-process cfm server for the block (a temporary data directory if none)."""
    with tempfile.TemporaryDirectory(prefix="cfm-test-") as scratch:
        server = TestServer(Path(data_dir) if data_dir is not None else Path(scratch), settings)
        await server.start()
        try:
            yield server
        finally:
            await server.close()


try:  # the pytest fixture, for projects that use pytest
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    pass
else:

    @pytest.fixture
    async def cfm_server(tmp_path: Path) -> AsyncIterator[TestServer]:
        """A running in-process cfm server (default limits) with its data in tmp_path."""
        async with running_server(tmp_path / "cfm-server") as server:
            yield server
