"""The operator's metrics beside the relay's own (``metrics.py``): the process and the
interpreter, the build, refused handshakes, the store on disk, readiness — and a
listener of its own for ``/metrics`` (``metrics_listen``), to keep it off the public port.

Everything is registered on the server's own registry; values that live on disk are
read at scrape time (a few ``stat`` calls), nothing is added to the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import Counter, Gauge, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cfm_common import __version__
from cfm_server.netaddr import parse_listen

if TYPE_CHECKING:
    from cfm_server.config import ServerConfig
    from cfm_server.metrics import Metrics
    from cfm_server.store import Store


class Server(Protocol):
    """What the operator's metrics read of the server (``cfm_server.server.Server``;
    a Protocol, so that this module does not import the server that imports it)."""

    config: ServerConfig
    store: Store | None
    metrics: Metrics

    @property
    def data_dir(self) -> Path: ...

    def not_ready(self) -> str | None: ...


log = logging.getLogger(__name__)

class OpsMetrics:
    """What ``Server`` counts for the operator; registered on ``server.metrics.registry``."""

    def __init__(self, server: Server) -> None:
        registry = server.metrics.registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        Gauge("cfm_build_info", "The running cfm: 1, with its version as a label",
              ["version", "python"], registry=registry).labels(
            __version__, platform.python_version()).set(1)
        Gauge("cfm_start_time_seconds", "When this server started (Unix time)",
              registry=registry).set(time.time())
        self.refused = Counter("cfm_refused_handshakes",
                               "Connections refused before the WebSocket handshake, by reason",
                               ["reason"], registry=registry)
        registry.register(_StoreCollector(server))


class _StoreCollector(Collector):
    def __init__(self, server: Server) -> None:
        self._server = server

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # read at scrape time only (registering must not read the store)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        server = self._server
        yield GaugeMetricFamily("cfm_ready", "1 when /readyz answers ready, else 0",
                                value=0 if server.not_ready() else 1)
        if server.config.store != "sqlite" or server.store is None:
            return
        path: Path = getattr(server.store, "path", server.data_dir / "cfm.sqlite3")
        for name, suffix, what in (("cfm_store_bytes", "", "The database file"),
                                   ("cfm_store_wal_bytes", "-wal", "The database's WAL")):
            with contextlib.suppress(OSError):
                size = path.with_name(path.name + suffix).stat().st_size
                yield GaugeMetricFamily(name, f"{what}, in bytes", value=size)
        with contextlib.suppress(OSError):
            yield GaugeMetricFamily("cfm_data_disk_free_bytes",
                                    "Free space on the disk holding the data directory",
                                    value=shutil.disk_usage(path.parent).free)
        seconds = getattr(server.store, "last_checkpoint_seconds", None)
        if seconds is not None:
            yield GaugeMetricFamily("cfm_checkpoint_seconds",
                                    "How long the last WAL checkpoint took", value=seconds)


# --- a listener of its own -------------------------------------------------------------

REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 8192



async def start_metrics_listener(address: str, render: Callable[[], bytes],
                                 content_type: str) -> asyncio.Server:
    """Serve ``GET /metrics`` (only) on ``address``: plain HTTP/1.1, one request per
    connection, bounded in size and time."""
    host, port = parse_listen(address)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            words = head.split(b"\r\n", 1)[0].split()
            path = words[1].split(b"?", 1)[0] if len(words) >= 2 else b""
            if words[:1] == [b"GET"] and path == b"/metrics":
                status, body, kind = "200 OK", render(), content_type
            else:
                status, body, kind = "404 Not Found", b"not found\n", "text/plain"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: "
                         f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, limit=MAX_REQUEST_BYTES)


def describe(server: Any) -> str:
    """Where /metrics is served, for the start-up banner."""
    listen = server.config.metrics_listen
    return f"metrics at http://{listen}/metrics" if listen else "metrics at /metrics"
