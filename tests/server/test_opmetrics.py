"""The operator's metrics: process and interpreter, build, refused handshakes, the
store on disk, readiness; no `_created` noise; /metrics on an address of its own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from cfm_common import __version__
from cfm_server.config import ConfigError, ServerConfig
from tests.ports import free_port
from tests.server.serve_proc import serve
from tests.wire import WireClient, signed_in


async def scrape(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(url)


async def test_the_operators_metrics(server_factory: Any) -> None:
    server = await server_factory(max_conns_per_ip=1)
    async with signed_in(server.url, "alice"):
        with pytest.raises(InvalidStatus):
            async with WireClient.connect(server.url):
                pass
    text = (await scrape(server.http_url + "/metrics")).text
    for series in ("process_resident_memory_bytes", "process_open_fds", "python_info",
                   "python_gc_objects_collected_total", "cfm_start_time_seconds",
                   "cfm_store_bytes", "cfm_store_wal_bytes", "cfm_data_disk_free_bytes"):
        assert re.search(rf"^{series}(\{{.*\}})? \S+$", text, re.M), series
    assert 'cfm_build_info{python="' in text and f'version="{__version__}"}} 1.0' in text
    assert "cfm_ready 1.0" in text
    assert 'cfm_refused_handshakes_total{reason="too_many_from_address"} 1.0' in text


async def test_metrics_listen_moves_metrics_off_the_public_port(server_factory: Any) -> None:
    listen = f"127.0.0.1:{free_port()}"
    server = await server_factory(metrics_listen=listen)
    assert (await scrape(server.http_url + "/metrics")).status_code == 404
    private = await scrape(f"http://{listen}/metrics")
    assert private.status_code == 200 and "cfm_build_info" in private.text
    assert (await scrape(f"http://{listen}/other")).status_code == 404
    assert (await scrape(server.http_url + "/healthz")).status_code == 200


def test_a_bad_metrics_listen_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="metrics_listen must be HOST:PORT"):
        ServerConfig(metrics_listen="9464").validate()


async def test_cfm_serve_scrapes_without_created_series(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    async with serve("--data-dir", str(tmp_path), "--metrics-listen", listen) as server:
        await server.wait_line(rf"metrics at http://{re.escape(listen)}/metrics")
        async with WireClient.connect(server.url) as alice:
            await alice.hello("alice")
        text = (await scrape(f"http://{listen}/metrics")).text
    assert "cfm_frames_in_total" in text and "_created" not in text
