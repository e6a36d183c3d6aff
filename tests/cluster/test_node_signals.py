"""A cluster node's signals at the edges of its life (docs/server.md, "Signals"): one
after its loop has closed does not end it by the signal, and a SIGTERM the moment it
starts listening stops it cleanly, its node id left free at once. Real ``cfm serve
--redis`` processes over a real redis-server, each signalling itself at the moment under
test (tests/server/serve_signalled.py; the single node's twins are in
tests/server/test_shutdown_signals.py).
"""

from __future__ import annotations

import pytest

from tests.cluster.serve_exit import started
from tests.cluster.test_node_start import holder
from tests.server.test_shutdown_signals import (
    exit_status,
    spawn_signalled,
    stopped_after_its_loop,
)


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
