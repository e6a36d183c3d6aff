"""A full disk stops start-up; ``/readyz`` says whether the store can take writes while
``/healthz`` stays plain liveness (issue 15 item 6)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from cfm_server.store import StoreError
from tests.faults.procs import run_to_exit
from tests.faults.test_storage import fill, make_database, tmpfs
from tests.wire import signed_in


async def get(server: Any, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(server.http_url + path, headers=headers)


async def test_readyz_and_healthz_on_a_healthy_server(server_factory: Any) -> None:
    server = await server_factory()
    ready = await get(server, "/readyz")
    assert (ready.status_code, ready.text) == (200, "ready\n")
    assert (await get(server, "/healthz")).status_code == 200


async def test_a_full_disk_under_an_existing_database_stops_start_up(tmp_path: Path) -> None:
    made = tmp_path / "made"
    await make_database(made)
    data_dir = tmp_path / "data"
    with tmpfs(data_dir, "2m"):
        for path in made.iterdir():
            if path.is_file():
                shutil.copy(path, data_dir / path.name)
        fill(data_dir)
        code, output = await run_to_exit(data_dir)
    assert code == 2, output
    assert f"the disk holding {data_dir} is full" in output
    assert "Traceback" not in output


async def test_min_free_mb_is_checked_at_start(server_factory: Any, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"is full \(.* MiB free, min_free_mb is 1e\+09\)"):
        await server_factory(data_dir=tmp_path / "d", min_free_mb=1e9)
    await server_factory(data_dir=tmp_path / "d", min_free_mb=0)  # the check is off


async def test_readyz_follows_the_store_through_a_full_disk(
    server_factory: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "tiny"
    with tmpfs(data_dir, "4m"):
        server = await server_factory(data_dir=data_dir, rate_limits=False, min_free_mb=0)
        async with signed_in(server.url, "alice") as alice:
            await alice.send({"t": "join", "room": "#lobby"})
            await alice.recv_until("joined")
            ballast = fill(data_dir)
            for i in range(400):  # until the store refuses a write
                await alice.send({"t": "say", "room": "#lobby", "text": "x" * 4000,
                                  "id": f"a{i}"})
                reply = await alice.recv()
                while reply["t"] not in ("ack", "error"):
                    reply = await alice.recv()
                if reply["t"] == "error":
                    break
            else:
                raise AssertionError("the disk never filled up")
            ready = await get(server, "/readyz")
            assert ready.status_code == 503
            assert ready.text.startswith("not ready: the last commit failed:"), ready.text
            assert (await get(server, "/healthz")).status_code == 200  # still alive

            ballast.unlink()
            await alice.send({"t": "say", "room": "#lobby", "text": "again", "id": "b"})
            assert (await alice.recv_until("ack"))["id"] == "b"
            assert (await get(server, "/readyz")).status_code == 200


async def test_readyz_reports_a_nearly_full_disk_before_writes_fail(
    server_factory: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "small"
    with tmpfs(data_dir, "8m"):
        server = await server_factory(data_dir=data_dir, min_free_mb=2,
                                      trusted_proxies=["127.0.0.1"])
        assert (await get(server, "/readyz")).status_code == 200
        fill(data_dir)
        ready = await get(server, "/readyz")
        assert ready.status_code == 503 and "is full" in ready.text, ready.text
        assert str(data_dir) in ready.text
        # Someone out there (through the trusted proxy) gets the status, not the path.
        public = await get(server, "/readyz", **{"X-Forwarded-For": "203.0.113.9"})
        assert (public.status_code, public.text) == (503, "not ready\n")
