"""``cfm admin reset-token`` on a running server (account recovery without a restart):
through the data directory's control socket, only the token's hash reaches the server."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cfm_cli.main import app
from cfm_server import control
from tests.wire import WireClient, signed_in


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    for key in list(os.environ):
        if key.startswith("CFM_"):
            monkeypatch.delenv(key)


def admin(*args: str) -> Any:
    return CliRunner().invoke(app, ["admin", *args])


async def test_reset_token_on_a_running_server(server_factory: Any, tmp_path: Path) -> None:
    server = await server_factory(data_dir=tmp_path / "d")
    sock = server.data_dir / control.SOCKET_FILE
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    async with signed_in(server.url, "alice") as alice:
        old = alice.token
        # On a thread: the server's loop (this test's) must answer meanwhile.
        result = await asyncio.to_thread(admin, "reset-token", "alice", "--data-dir",
                                         str(server.data_dir), "--token-file",
                                         str(tmp_path / "alice.token"))
        assert result.exit_code == 0, result.output
        assert "New token for alice, in force now" in result.output
        assert "1 open session closed" in result.output
        assert await alice.wait_closed(timeout=10) == 4003  # whoever held the old one: out
    new = (tmp_path / "alice.token").read_text().strip()
    async with WireClient.connect(server.url) as thief:
        assert (await thief.hello("alice", old))["code"] == "bad_token"
    async with signed_in(server.url, "alice", token=new):
        pass
    # Persisted: the next start knows the new token only.
    await server.stop()
    assert not sock.exists()
    again = await server_factory(data_dir=tmp_path / "d")
    async with signed_in(again.url, "alice", token=new):
        pass


async def test_reset_token_refusals_on_a_running_server(server_factory: Any,
                                                        tmp_path: Path) -> None:
    server = await server_factory(data_dir=tmp_path / "d")
    result = await asyncio.to_thread(admin, "reset-token", "nobody", "--data-dir",
                                     str(server.data_dir), "--token-file",
                                     str(tmp_path / "x.token"))
    assert result.exit_code == 2
    assert "no user 'nobody' on this server" in result.output and "nothing changed" in \
        result.output
    assert not (tmp_path / "x.token").exists()  # no token for an account that has none


def test_no_running_server_to_ask(tmp_path: Path) -> None:
    with pytest.raises(control.ControlError, match="cannot reach the running server"):
        control.request(tmp_path, {"op": "set-token"})


async def test_malformed_requests_get_an_answer_not_a_traceback(
    server_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await server_factory(data_dir=tmp_path / "d")
    for message in ({"op": "set-token"}, {"op": "drop-tables"}, {"op": "set-token",
                                                                 "name": "x", "token_hash": 1}):
        reply = await asyncio.to_thread(control.request, server.data_dir, message)
        assert reply["ok"] is False and reply["error"], reply
    assert not [r for r in caplog.records if r.exc_info]
