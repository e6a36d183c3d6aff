"""Retention on a real server (issue 10, item 7): off by default; with retention_bytes
or retention_days a pass drops each room's old messages but never its latest, so the
room's sequence carries on across a restart; `cfm admin usage` shows disk use."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cfm_cli.main import app
from cfm_server import retention
from tests.wire import signed_in

LOBBY = "#lobby"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    for key in list(os.environ):
        if key.startswith("CFM_"):
            monkeypatch.delenv(key)


async def _say(server: Any, n: int, text: str = "0123456789") -> str | None:
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": LOBBY})
        await alice.recv_until("joined")
        for i in range(n):
            await alice.send({"t": "say", "room": LOBBY, "text": text, "id": f"m{i}"})
        await alice.recv_n("ack", n)
        return alice.token


async def _history(server: Any, token: str | None) -> list[int]:
    async with signed_in(server.url, "alice", token=token) as alice:
        await alice.send({"t": "history", "room": LOBBY, "after": 0, "limit": 200})
        return [m["seq"] for m in (await alice.recv_until("history"))["msgs"]]


async def test_by_default_nothing_is_dropped(server) -> None:
    token = await _say(server, 5)
    assert not retention.enabled(server.config)
    assert await retention.prune_once(server.hub, server.config) == 0
    assert await _history(server, token) == [1, 2, 3, 4, 5]


async def test_size_and_age_drop_old_messages_but_the_sequence_goes_on(server_factory) -> None:
    server = await server_factory(retention_bytes=35)
    token = await _say(server, 10)
    await retention.prune_once(server.hub, server.config)
    assert await _history(server, token) == [8, 9, 10]  # 30 bytes of text fit in 35
    data_dir = server.config.data_dir
    await server.stop(close_code=1012)
    again = await server_factory(data_dir=data_dir, retention_days=1)
    async with signed_in(again.url, "alice", token=token) as alice:
        await alice.send({"t": "say", "room": LOBBY, "text": "later", "id": "x"})
        assert (await alice.recv_until("ack"))["seq"] == 11
    # A day later only the latest message is left: it carries the seq.
    day_later = (await _ts_of_latest(again, token)) + 86_400_000 + 1
    await retention.prune_once(again.hub, again.config, now_ms=day_later)
    assert await _history(again, token) == [11]


async def _ts_of_latest(server: Any, token: str | None) -> int:
    async with signed_in(server.url, "alice", token=token) as alice:
        await alice.send({"t": "history", "room": LOBBY, "limit": 1})
        return int((await alice.recv_until("history"))["msgs"][-1]["ts"])


async def test_admin_usage_shows_disk_use_per_room_and_user(server_factory) -> None:
    server = await server_factory()
    await _say(server, 4, "x" * 100)
    async with signed_in(server.url, "bob") as bob:
        await bob.send({"t": "say", "to": "alice", "text": "hi", "id": "b"})
        await bob.recv_until("ack")
    await server.stop(close_code=1001)
    result = CliRunner().invoke(
        app, ["admin", "usage", "--data-dir", str(server.config.data_dir), "--json"])
    assert result.exit_code == 0, result.output
    usage = json.loads(result.output)
    rooms = {r["name"]: r for r in usage["rooms"]}
    assert rooms[LOBBY]["messages"] == 4 and rooms[LOBBY]["bytes"] > 400
    assert rooms["dm:alice:bob"]["messages"] == 1
    assert [u["name"] for u in usage["users"]] == ["alice", "bob"]
    assert usage["total_messages"] == 5
    text = CliRunner().invoke(
        app, ["admin", "usage", "--data-dir", str(server.config.data_dir), "--top", "1"])
    assert text.exit_code == 0 and LOBBY in text.output and "dm:alice:bob" not in text.output
