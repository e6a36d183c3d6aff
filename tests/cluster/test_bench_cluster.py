"""``cfm bench --cluster N``: Redis and N real ``cfm serve --redis`` nodes, a room's
members dealt over them, the CPU of every server process counted."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cfm_bench.cli import app
from tests.cluster.redis_proc import BINARY, MISSING


@pytest.mark.skipif(BINARY is None, reason=MISSING)
def test_cli_spawns_redis_and_two_nodes_and_counts_both() -> None:
    result = CliRunner().invoke(app, [
        "--cluster", "2", "--scenario", "latency", "--clients", "6", "--publishers", "2",
        "--rate", "100", "--duration", "0.6", "--warmup", "0.2", "--procs", "1", "--json",
    ])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["target"] == "cfm-cluster2"
    assert figures["errors"] == 0
    assert figures["deliveries"] > 0
    assert figures["latency"]["p50_ms"] <= figures["latency"]["p99_ms"]
    by_process = figures["server_cpu_by_process"]
    # Both nodes, their search indexers (child processes) and Redis are watched (their
    # CPU counted in the per-CPU-s figures); a Redis fork (an AOF rewrite) may show too.
    parts = {"node1", "node2", "node1.indexer", "node2.indexer", "redis"}
    assert parts <= set(by_process), by_process
    assert all(name.startswith("redis.") for name in set(by_process) - parts), by_process
    assert by_process["node1"] > 0 and by_process["node2"] > 0


def test_cluster_goes_with_spawn_only() -> None:
    result = CliRunner().invoke(app, ["--cluster", "2", "--baseline"])
    assert result.exit_code != 0
    assert "exactly one" in result.output
