"""``<data dir>/server.json`` (cfm_server/runfile.py): one per data dir, so a cluster
node that takes over the file of another node still running says so — the pid in it,
which logrotate's recipe signals, names only the last one started."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from cfm_server import runfile


def test_a_node_taking_over_a_running_nodes_server_json_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cfm_server.runfile")
    alive = os.getppid()  # a process that runs, and is not this one
    runfile.write(tmp_path, {"node": "n1", "pid": alive})
    runfile.write(tmp_path, {"node": "n1", "pid": os.getpid()})  # its own restart: quiet
    assert not caplog.records
    runfile.write(tmp_path, {"node": "n1", "pid": alive})
    runfile.write(tmp_path, {"node": "n2", "pid": os.getpid()})
    assert [r.getMessage() for r in caplog.records] == [
        f"the data directory {tmp_path} is node n1's too (pid {alive}, still running): its "
        "server.json now names this node only; give each node a data directory of its own"]
    assert json.loads((tmp_path / "server.json").read_text())["node"] == "n2"
