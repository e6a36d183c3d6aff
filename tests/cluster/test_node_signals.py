"""A cluster node's signals at the edges of its life (docs/server.md, "Signals"): one
after its loop has closed does not end it by the signal, and a SIGTERM the moment it
starts listening stops it cleanly, its node id left free at once. Real ``cfm serve
--redis`` processes over a real redis-server, each signalling itself at the moment under
test (tests/server/serve_signalled.py; the single node's twins are in
tests/server/test_shutdown_signals.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat

import pytest

from tests.cluster.serve_exit import started
from tests.cluster.test_node_start import holder
from tests.server.test_shutdown_signals import (
    exit_status,
    spawn_signalled,
    stopped_after_its_loop,
)
from tests.wire import signed_in


@pytest.mark.parametrize("moment", ["returned", "atexit"])
async def test_a_signal_after_a_nodes_loop_has_closed_does_not_end_it_by_it(
        redis, tmp_path, moment) -> None:
    await stopped_after_its_loop(moment, "SIGTERM", tmp_path, "--redis", redis.url,
                                 "--data-dir", str(tmp_path / "n"))


@pytest.mark.parametrize("moment", ["listener", "log:cfm_server.server:listening on"])
async def test_sigterm_as_a_node_starts_listening_stops_it_and_frees_its_id_at_once(
        redis, tmp_path, moment) -> None:
    """As its listener is bound (its run record still to write to Redis) and at its
    "listening on" line (the AI contacts' lease and retention still to start). At the
    first it used to exit without leaving the cluster's presence: the next start with
    its id waited for the registration to expire (8 s here)."""
    args = ("--redis", redis.url, "--node-id", "n1", "--set", "presence_expiry=12",
            "--data-dir", str(tmp_path / "n"))
    node = await spawn_signalled(moment, "SIGTERM", tmp_path, *args, ai=True)
    assert await exit_status(node) == 0, node.text()[-3000:]
    assert f"signal-self: SIGTERM at {moment}" in node.text()
    assert "Traceback" not in node.text()
    assert await holder(redis.url, "n1") == "", node.text()[-3000:]
    async with started(*args) as again:
        assert "has not left" not in again.text()  # no wait: the id was free


async def test_logrotate_reopens_a_nodes_log_with_the_pid_its_server_json_records(
        redis, tmp_path) -> None:
    """docs/server.md's logrotate recipe without systemd on a cluster node: move the log
    file, ``kill -HUP`` the pid ``<data dir>/server.json`` records. A node used to write
    no such file (its record was in Redis only), so the recipe had no pid to signal."""
    data, log_file = tmp_path / "n", tmp_path / "cfm.log"
    async with started("--redis", redis.url, "--node-id", "r1", "--data-dir", str(data),
                       "--log-file", str(log_file), "--log-format", "json") as node:
        record = json.loads((data / "server.json").read_text())
        assert record["pid"] == node.proc.pid
        assert (record["url"], record["node"], record["redis"]) == (node.url, "r1",
                                                                   redis.url)
        assert stat.S_IMODE((data / "server.json").stat().st_mode) == 0o600
        log_file.rename(tmp_path / "cfm.log.1")  # what logrotate does, before it signals
        os.kill(record["pid"], signal.SIGHUP)
        for _ in range(200):  # bounded wait for the new file's first line
            if log_file.exists() and "SIGHUP" in log_file.read_text():
                break
            await asyncio.sleep(0.05)
        async with signed_in(node.url, "alice"):
            pass
        assert node.proc.returncode is None
    new = [json.loads(line)["msg"] for line in log_file.read_text().splitlines()]
    assert new[0] == f"SIGHUP: reopened the log file {log_file}"
    assert any(line.startswith("closed alice") for line in new), new
    assert any("listening on" in json.loads(line)["msg"]
               for line in (tmp_path / "cfm.log.1").read_text().splitlines())
