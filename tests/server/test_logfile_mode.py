"""``--log-file``: the log names who connected from where, so a file the server creates
is its user's alone (0600, whatever the umask), also after a rotation and SIGHUP."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cfm_server.logsetup import setup_logging


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_log_file_the_server_creates_is_private(tmp_path: Path) -> None:
    path = tmp_path / "cfm.log"
    old_umask = os.umask(0o022)
    try:
        logs = setup_logging("info", "text", file=path)
        try:
            logging.getLogger("cfm_server.test").info("connection from 203.0.113.9")
            assert mode(path) == 0o600
            path.rename(tmp_path / "cfm.log.1")  # logrotate moves it away ...
            logs.reopen()                         # ... and SIGHUP
            logging.getLogger("cfm_server.test").info("after the rotation")
            assert mode(path) == 0o600
            assert "after the rotation" in path.read_text()
        finally:
            logs.close()
    finally:
        os.umask(old_umask)


def test_an_existing_log_file_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    """logrotate's ``create 0640 cfm adm`` (or the operator) decides an existing file's
    mode; the server only appends."""
    path = tmp_path / "cfm.log"
    path.write_text("")
    path.chmod(0o640)
    logs = setup_logging("info", "json", file=path)
    try:
        logging.getLogger("cfm_server.test").info("hello")
        assert mode(path) == 0o640
    finally:
        logs.close()
