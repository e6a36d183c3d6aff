"""``<data dir>/server.json``: how this process runs, written at each start — its URL,
``public_url`` and ``registration`` as flags, environment and files made them (for
``cfm admin``), and its ``pid`` (for the operator: logrotate's ``kill -HUP``, see
docs/server.md). A single node and a cluster node write it alike: it is of this process
and this machine, as the data dir is. A cluster node adds its ``node`` id and its
``redis`` (the URL without its password), and writes the same record to Redis too
(``cluster/noderuns.py``), where ``cfm admin --redis`` reads every node's.

A data dir is one server's (a single node locks it). Two cluster nodes given the same
one would each take the file over at their start, and the pid in it would name only
the last: the start that finds the file of another node that still runs says so.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_FILE = "server.json"


def read(data_dir: Path) -> dict[str, Any]:
    """The record of the last start in ``data_dir``; empty if there is none."""
    try:
        record = json.loads((data_dir / RUN_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write(data_dir: Path, record: dict[str, Any]) -> None:
    """Leave ``record`` in ``data_dir`` (mode 0600); a failure is logged, not raised:
    it is no reason to stop serving."""
    from cfm_common.tokens import write_private

    _warn_if_taken(data_dir, record)
    try:
        write_private(data_dir / RUN_FILE, json.dumps(record, indent=1) + "\n")
    except OSError as exc:
        log.warning("cannot write %s: %s", data_dir / RUN_FILE, exc)


def _warn_if_taken(data_dir: Path, record: dict[str, Any]) -> None:
    """Say so when the file being replaced is another cluster node's that runs."""
    old = read(data_dir)
    node, pid = old.get("node"), old.get("pid")
    if (not isinstance(node, str) or node == record.get("node") or not isinstance(pid, int)
            or pid == os.getpid() or not _alive(pid)):
        return
    log.warning("the data directory %s is node %s's too (pid %d, still running): its %s "
                "now names this node only; give each node a data directory of its own",
                data_dir, node, pid, RUN_FILE)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (EPERM): alive
        return True
    return True
