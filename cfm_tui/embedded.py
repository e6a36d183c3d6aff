"""The embedded server: a cfm relay inside this process, so `cfm chat` works alone.

The only module of cfm_tui that imports cfm_server (a layer contract in pyproject.toml),
and only when the server starts: a chat with --server needs none of it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cfm_common.rules import CloseCode
from cfm_tui.session import EXAMPLE_URL

log = logging.getLogger(__name__)


EMBEDDED_BUSY = (
    "Another cfm chat is already running with the built-in server. Close it, or run "
    f"`cfm serve` and start both with --server {EXAMPLE_URL}"
)


class EmbeddedServerBusy(Exception):
    """The embedded server's data dir is locked: another `cfm chat` runs one on it."""


class EmbeddedServer:
    """A relay inside this process on a free local port, so `cfm chat` works alone."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    @property
    def url(self) -> str | None:
        return self._server.url if self._server is not None else None

    async def start(self) -> str:
        if self._server is None:
            # Imported here: only `cfm chat` without --server needs the server package.
            from cfm_server.config import ServerConfig
            from cfm_server.server import Server
            from cfm_server.store.sqlite import DataDirInUse

            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            server = Server(ServerConfig(host="127.0.0.1", port=0, data_dir=self.data_dir))
            try:
                await server.start()
            except DataDirInUse as exc:
                # The server's own words ("stop that server… another data directory")
                # fit `cfm serve`, not a second chat window.
                raise EmbeddedServerBusy(EMBEDDED_BUSY) from exc
            self._server = server
            log.info("embedded server listening on %s", server.url)
        return self._server.url

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(close_code=CloseCode.GOING_AWAY)
