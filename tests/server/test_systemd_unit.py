"""contrib/systemd/cfm.service: a hardened unit whose reload is SIGHUP, checked with
``systemd-analyze verify`` where systemd is installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "cfm.service"


def settings() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_the_unit_is_hardened_and_reloads_with_sighup() -> None:
    unit = settings()
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("PrivateTmp", "yes"), ("ProtectHome", "yes"), ("UMask", "0077"),
                       ("StateDirectoryMode", "0700"), ("User", "cfm")):
        assert unit[key] == [value], key
    exec_start = unit["ExecStart"][0].split()
    data_dir = exec_start[exec_start.index("--data-dir") + 1]
    assert unit["ReadWritePaths"] == [data_dir]
    assert int(unit["LimitNOFILE"][0]) >= 65536
    assert unit["RestartPreventExitStatus"] == ["2"]  # a bad setting: no restart loop


def test_the_units_command_line_is_one_cfm_serve_takes() -> None:
    from typer.testing import CliRunner

    from cfm_cli.main import app

    exec_start = settings()["ExecStart"][0].split()
    assert exec_start[1] == "serve"
    flags = [word for word in exec_start if word.startswith("--")]
    help_text = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    for flag in flags:
        assert flag in help_text, flag


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify wants ExecStart's program to exist: point it at this environment's cfm.
    cfm = Path(sys.executable).with_name("cfm")
    unit = tmp_path / "cfm.service"
    unit.write_text(UNIT.read_text().replace("/opt/cfm/venv/bin/cfm", str(cfm)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "cfm.service" not in result.stderr, result.stderr  # no warnings about it


BACKUP = UNIT.with_name("cfm-backup.service")
TIMER = UNIT.with_name("cfm-backup.timer")


def test_the_backup_unit_backs_up_the_servers_data_dir_as_its_user() -> None:
    """cfm-backup.service runs ``cfm admin backup`` on the data directory cfm.service
    serves, as the same user (cfm admin refuses any other), into a directory per run."""
    server = settings()
    backup: dict[str, list[str]] = {}
    for line in BACKUP.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            backup.setdefault(key.strip(), []).append(value.strip())
    assert backup["User"] == server["User"]
    serve_words = server["ExecStart"][0].split()
    data_dir = serve_words[serve_words.index("--data-dir") + 1]
    command = backup["ExecStart"][0]
    assert f"{serve_words[0]} admin backup " in command  # the same installation
    assert command.endswith(f"--data-dir {data_dir}'")
    assert "%%Y-%%m-%%d" in command  # a bare % is a systemd specifier
    assert data_dir in backup["ReadWritePaths"][0].split()
    assert "[Install]" not in BACKUP.read_text()  # started by the timer only
    assert "WantedBy=timers.target" in TIMER.read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_accepts_the_backup_timer(tmp_path: Path) -> None:
    for unit in (BACKUP, TIMER):
        (tmp_path / unit.name).write_text(unit.read_text())
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / TIMER.name),
                             str(tmp_path / BACKUP.name)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "cfm-backup" not in result.stderr, result.stderr
