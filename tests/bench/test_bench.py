"""``cfm bench`` end to end: tiny scenarios against real servers, sane figures.

No figure is compared with a speed: only that the harness measured something, that
the percentiles are ordered, that nothing failed and that the JSON parses.
"""

from __future__ import annotations

import asyncio
import json
import os
import runpy
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cfm_bench.cli import app
from cfm_bench.runner import BenchOptions, autogroup_note, run_scenario
from cfm_bench.target import Target, from_url, spawn_baseline

TINY = {"duration": 0.6, "warmup": 0.2, "procs": 1}


async def _run(target: Target, **options: Any) -> dict[str, Any]:
    # The coordinator blocks; the in-process server keeps running on this event loop.
    return await asyncio.to_thread(run_scenario, target, BenchOptions(**options))


def _in_process(server: Any) -> Target:
    return from_url(server.url, pid=os.getpid())


def _check_traffic(result: dict[str, Any]) -> None:
    assert result["errors"] == 0, result
    assert result["connected"] == result["clients"]
    assert result["deliveries"] > 0
    assert result["deliveries_per_s"] > 0
    latency = result["latency"]
    assert latency["samples"] == result["deliveries"]
    assert 0 <= latency["p50_ms"] <= latency["p99_ms"] <= latency["p999_ms"] <= latency["max_ms"]
    json.loads(json.dumps(result))


async def test_fanout_against_an_in_process_server(
    server_factory: Callable[..., Awaitable[Any]],
) -> None:
    server = await server_factory(rate_limits=False)
    result = await _run(_in_process(server), scenario="fanout", clients=8, publishers=2,
                        duration=0.6, warmup=0.2, procs=2)
    _check_traffic(result)
    assert result["procs"] == 2  # one room dealt over two driver processes
    assert result["target"] == "url"
    assert result["server_cpu"] is not None and result["server_cpu"] >= 0
    assert result["msg_frame_bytes"] > 32  # a msg carries the 32-character text and more
    assert result["publishers"] == 2
    # The probes refill the windows from their callback: more than the first windows went.
    assert result["published"] > result["publishers"] * result["window"]
    # At max rate a say goes as soon as the window lets it: no lateness to add.
    assert "send_lateness" not in result
    assert result["scheduled_latency"] == result["latency"]


async def test_fixed_rate_rooms_across_two_driver_processes(
    server_factory: Callable[..., Awaitable[Any]],
) -> None:
    server = await server_factory(rate_limits=False, store="memory")
    result = await _run(_in_process(server), scenario="rooms", clients=12, rooms=4, rate=200.0,
                        duration=0.8, warmup=0.2, procs=2)
    _check_traffic(result)
    assert result["procs"] == 2
    assert result["members_per_room"] == 3
    # An open-loop publisher sends about rate x time; each say reaches the 2 other members.
    assert 0 < result["published"] <= 200 * (0.8 + 0.2 + 0.3) * 1.2 + 4
    # Each fixed-rate send's lateness is recorded, and the receivers add it back for the
    # scheduled figure: never below send -> receipt, sample by sample.
    assert result["send_lateness"]["samples"] == result["published"]
    scheduled, latency = result["scheduled_latency"], result["latency"]
    assert scheduled["samples"] == latency["samples"]
    for key in ("p50_ms", "p99_ms", "max_ms"):
        assert scheduled[key] >= latency[key]


async def test_replay_pages_past_the_replay_limit(
    server_factory: Callable[..., Awaitable[Any]],
) -> None:
    server = await server_factory(rate_limits=False, replay_limit=100)
    result = await _run(_in_process(server), scenario="replay", messages=350)
    assert result["errors"] == 0, result
    assert result["received"] == 350
    assert result["last_seq"] == 350
    assert result["replay_limit"] == 100
    assert result["history_pages"] >= 2  # 250 after the replay, 200 per page
    assert result["replay_seconds"] > 0


async def test_bigroom_counts_the_frames_of_joins_and_presence(
    server_factory: Callable[..., Awaitable[Any]],
) -> None:
    server = await server_factory(rate_limits=False, store="memory")
    result = await _run(_in_process(server), scenario="bigroom", clients=20, presence=4,
                        room="#big")
    assert result["errors"] == 0, result
    assert len(result["join_steps"]) == 10
    assert sum(step["joins"] for step in result["join_steps"]) == 20
    # Each join is answered (joined) and told to the members already there.
    assert result["join_frames"] >= 20 + 19 * 20 // 2
    assert result["presence_frames"] >= 4 * 19
    assert result["frames"]["member"] > 0


@pytest.mark.parametrize("scenario", ["idle", "connect"])
async def test_idle_and_connect(server_factory: Callable[..., Awaitable[Any]],
                                scenario: str) -> None:
    server = await server_factory(rate_limits=False, store="memory")
    result = await _run(_in_process(server), scenario=scenario, clients=30, rooms=3, procs=2)
    assert result["errors"] == 0, result
    assert result["connected"] == 30
    if scenario == "idle":
        assert result["rss_per_connection"] is not None
    else:
        assert result["connects_per_s"] > 0
        assert result["connect_latency"]["p50_ms"] <= result["connect_latency"]["p99_ms"]


async def test_the_baseline_server_answers_the_harness() -> None:
    target = await asyncio.to_thread(spawn_baseline, None)
    try:
        fanout = await _run(target, scenario="fanout", clients=5, publishers=1, **TINY)
        replay = await _run(target, scenario="replay", messages=600)
    finally:
        await asyncio.to_thread(target.stop)
    _check_traffic(fanout)
    assert fanout["server_rss"] > 0  # the spawned pid is watched
    assert replay["errors"] == 0 and replay["received"] == 600


def test_cli_spawns_cfm_serve_and_prints_json() -> None:
    result = CliRunner().invoke(app, [
        "--spawn", "--store", "memory", "--scenario", "latency", "--clients", "5",
        "--publishers", "2", "--rate", "100", "--duration", "0.6", "--warmup", "0.2",
        "--procs", "1", "--json",
    ])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["target"] == "cfm-memory"
    assert figures["errors"] == 0
    assert figures["deliveries"] > 0
    assert figures["latency"]["p50_ms"] <= figures["latency"]["p99_ms"]
    assert figures["machine"]["nproc"] >= 1


def test_cli_refuses_two_targets() -> None:
    result = CliRunner().invoke(app, ["--spawn", "--baseline"])
    assert result.exit_code != 0
    assert "exactly one" in result.output


def test_compare_runs_three_targets_and_summarize_reads_it() -> None:
    result = CliRunner().invoke(app, [
        "--compare", "--scenario", "fanout", "--clients", "4", "--publishers", "1",
        "--duration", "0.5", "--warmup", "0.1", "--procs", "1", "--json",
    ])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [r["target"] for r in payload["results"]] == ["baseline", "cfm-memory", "cfm-sqlite"]
    assert payload["ratio_to_baseline"]["baseline"] == 1.0
    assert all(r["deliveries"] > 0 for r in payload["results"])
    summarize = runpy.run_path(str(Path(__file__).parents[2] / "benchmarks" / "summarize.py"))
    rows = summarize["rows"](payload)
    assert len([row for row in rows if row.startswith("| cfm-")]) == 2


def test_the_server_watch_counts_the_servers_child_processes() -> None:
    """A spawned single node's search indexer is a process of its own: its CPU and RSS
    are the server's too, named ``server.indexer``, and a child that exits keeps what it
    used (the sum never goes down)."""
    import subprocess
    import sys

    from cfm_bench.target import ServerWatch, spawn_cfm

    target = spawn_cfm("sqlite", None)
    try:
        watch = ServerWatch(target.pid)
        each = watch.cpu_each()
        assert set(each) == {"server", "server.indexer"}, each
        total = watch.cpu()  # read after: the server may have run meanwhile
        assert total is not None and total >= sum(each.values())
        rss = watch.rss_each()
        assert set(rss) == {"server", "server.indexer"} and min(rss.values()) > 0
        assert (watch.rss() or 0) > rss["server"]  # the sum of both
    finally:
        target.stop()
    # A parent whose child burns a fixed amount of CPU, says how much, and exits: the
    # parent reaps it, and what it used is still counted.
    burn = ("import os\nn = 0\nfor i in range(3_000_000): n += i\n"
            "t = os.times()\nprint(t.user + t.system, flush=True)")
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys\n"
         f"child = subprocess.Popen([sys.executable, '-c', {burn!r}, 'indexer'],"
         " stdout=subprocess.PIPE)\n"
         "print('started', flush=True)\n"
         "used = child.stdout.read()\nchild.wait()\n"
         "sys.stdout.buffer.write(used)\nsys.stdout.flush()\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline() == b"started\n"
        watch = ServerWatch(parent.pid)
        first = watch.cpu()
        assert first is not None
        used = float(parent.stdout.readline())  # the child's CPU: it has exited, reaped
        assert used > 0
        after = watch.cpu()
        assert after is not None and after >= used
        assert "server.indexer" not in watch.cpu_each()  # gone: counted in its parent
    finally:
        parent.kill()
        parent.wait()


def test_the_cpu_wait_warning_names_autogroups_only_where_they_are_on(tmp_path) -> None:
    switch = tmp_path / "sched_autogroup_enabled"
    switch.write_text("1\n")
    assert "autogroup" in autogroup_note(str(switch))
    switch.write_text("0\n")
    assert autogroup_note(str(switch)) == ""
    assert autogroup_note(str(tmp_path / "absent")) == ""


def test_msg_sender_reads_the_from_of_a_msg() -> None:
    import msgpack

    from cfm_bench.worker import msg_sender

    frame = {"t": "msg", "room": "#r", "seq": 1, "ts": 2, "from": "b0000042", "text": "hi"}
    assert msg_sender(msgpack.packb(frame)) == "b0000042"
    long_name = "n" * 40  # not a fixstr: read by unpacking
    assert msg_sender(msgpack.packb({**frame, "from": long_name})) == long_name
    assert msg_sender(msgpack.packb({"t": "msg", "room": "#r"})) is None
