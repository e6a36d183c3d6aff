"""Every ``cfm admin`` command takes relative paths, beside a running server and a
stopped one (issue 15 item 7: ``users --data-dir data`` printed an 80-line traceback)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cfm_cli.main import app
from tests.wire import signed_in


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    for key in list(os.environ):
        if key.startswith("CFM_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def admin(*args: str) -> Any:
    result = CliRunner().invoke(app, ["admin", *args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return result


async def test_relative_paths_beside_a_running_server(server_factory: Any,
                                                      tmp_path: Path) -> None:
    server = await server_factory(data_dir=tmp_path / "data")
    async with signed_in(server.url, "alice"):
        pass
    for command in (["users"], ["users", "--json"], ["stats"], ["invite"]):
        result = admin(*command, "--data-dir", "data")
        assert result.exit_code == 0, (command, result.output)
    assert "alice" in admin("users", "--data-dir", "data").output
    result = admin("add-user", "bob", "--data-dir", "data")
    assert result.exit_code == 2 and "stop cfm serve first" in result.output
    result = admin("backup", "bk", "--data-dir", "./data")
    assert result.exit_code == 0, result.output
    # On a thread: the server's loop (this test's) answers the control socket.
    result = await asyncio.to_thread(admin, "reset-token", "alice", "--data-dir", "data",
                                     "--token-file", "a.token")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.token").read_text().strip()
    result = await asyncio.to_thread(admin, "remove-user", "alice", "--yes", "--data-dir",
                                     "data")
    assert result.exit_code == 0 and "Removed alice" in result.output, result.output


async def test_relative_paths_on_a_stopped_server(server_factory: Any, tmp_path: Path) -> None:
    server = await server_factory(data_dir=tmp_path / "data")
    async with signed_in(server.url, "alice"):
        pass
    await server.stop()
    (tmp_path / "server.toml").write_text('data_dir = "data"\n')
    assert admin("users", "--config", "server.toml").exit_code == 0
    result = admin("reset-token", "alice", "--data-dir", "data", "--token-file", "a.token")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.token").read_text().strip()
    result = admin("add-user", "bob", "--data-dir", "data", "--token-file", "sub/b.token")
    assert result.exit_code == 0, result.output
    assert admin("remove-user", "bob", "--yes", "--data-dir", "data").exit_code == 0
    assert admin("stats", "--data-dir", "data").exit_code == 0
    assert admin("backup", "bk", "--data-dir", "data").exit_code == 0
    assert admin("restore", "bk", "--data-dir", "again").exit_code == 0
    assert admin("users", "--data-dir", "again", "--json").exit_code == 0


async def test_backup_and_restore_name_their_directories_so_the_hint_works_from_anywhere(
        server_factory: Any, tmp_path: Path) -> None:
    """The "restore with" and "start the server on it" lines are run later, from cron's
    mail or another shell: a relative DEST in them would point somewhere else."""
    server = await server_factory(data_dir=tmp_path / "data")
    await server.stop()
    result = admin("backup", "bk", "--data-dir", "data")
    assert result.exit_code == 0, result.output
    assert f"cfm admin restore {tmp_path / 'bk'} --data-dir NEWDIR" in result.output
    result = admin("restore", "data/../bk", "--data-dir", "again")
    assert result.exit_code == 0, result.output
    assert f"Restored {tmp_path / 'bk'} " in result.output
    assert f" --data-dir {tmp_path / 'again'}\n" in result.output


def test_a_misspelled_cfm_variable_is_named_by_cfm_admin_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CFM_DATA_DIRR silently ignored would make cfm admin back up (or list) the default
    data directory instead of the one the operator meant."""
    monkeypatch.setenv("CFM_DATA_DIRR", "data")
    result = admin("stats")
    assert ("the environment variable CFM_DATA_DIRR is not a cfm setting (did you mean "
            "CFM_DATA_DIR?); it is ignored") in result.output


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_the_wrong_user_is_told_the_whole_command_to_run_instead(tmp_path: Path) -> None:
    """``sudo -u cfm cfm admin ...`` fails with "command not found" when cfm lives in a
    virtualenv (/opt/cfm/venv/bin/cfm): the hint names the program as it was run."""
    import pwd
    import subprocess
    import sys

    nobody = pwd.getpwnam("nobody")
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    cfm = Path(sys.executable).with_name("cfm")
    result = subprocess.run([str(cfm), "admin", "stats", "--data-dir", "data"],
                            capture_output=True, text=True, timeout=60, check=False,
                            cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"(sudo -u nobody {cfm} admin stats --data-dir data)" in result.stderr


async def test_invite_names_a_way_to_sign_up_that_keeps_the_code_off_the_command_line(
        server_factory: Any, tmp_path: Path) -> None:
    """``--invite CODE`` puts the code in the process list and the shell history; the
    sign-in screen's field does not."""
    await server_factory(data_dir=tmp_path / "data", registration="invite")
    result = admin("invite", "--data-dir", "data")
    assert result.exit_code == 0, result.output
    assert "the Invite code field the sign-in screen shows" in result.output
