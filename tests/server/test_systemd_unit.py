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
