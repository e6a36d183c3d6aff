"""``cfm serve`` as a real process: flags, bad settings, SIGTERM, SIGKILL durability."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psutil
from typer.testing import CliRunner

from cfm_cli.main import app
from tests.wire import WireClient

URL_RE = re.compile(rb"listening on (ws://\S+)")


@asynccontextmanager
async def serve_process(*args: str, env: dict | None = None) -> AsyncIterator[tuple]:
    """A ``cfm serve`` subprocess on a free port; yields (process, url)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cfm_server", "--port", "0", "--no-ai", "--log-level", "warning",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        url = None
        async with asyncio.timeout(20):
            while url is None:
                line = await proc.stdout.readline()
                assert line, "the server exited before listening"
                if match := URL_RE.search(line):
                    url = match.group(1).decode()
        yield proc, url
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def test_help_lists_every_flag() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--host", "--port", "--data-dir", "--no-ai", "--config", "--no-rate-limits",
                 "--store", "--max-frame", "--max-text", "--hello-timeout",
                 "--max-conns-per-ip", "--allowed-origin", "--send-buffer", "--replay-limit",
                 "--say-rate", "--nudge-interval", "--abuse-max", "--ping-interval",
                 "--shutdown-close-code", "--default-contact", "--set"):
        assert flag in result.output, flag


def test_a_bad_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--max-text", "0", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "max_text" in result.output and "Traceback" not in result.output
    bad = tmp_path / "server.toml"
    bad.write_text("port = 'many'\n")
    result = runner.invoke(app, ["serve", "--config", str(bad)])
    assert result.exit_code == 2 and "port" in result.output
    bad.write_text("colour = 'blue'\n")
    result = runner.invoke(app, ["serve", "--config", str(bad)])
    assert result.exit_code == 2 and "colour" in result.output
    result = runner.invoke(app, ["serve", "--set", "nothing=1"])
    assert result.exit_code == 2 and "--set" in result.output
    result = runner.invoke(app, ["serve"], env={"CFM_SAY_RATE": "fast"})
    assert result.exit_code == 2 and "CFM_SAY_RATE" in result.output


def test_an_unusable_data_dir_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(app, ["serve", "--port", "0", "--data-dir", str(blocker)])
    assert result.exit_code == 2, result.output
    assert "--data-dir" in result.output and "Traceback" not in result.output


async def test_sigterm_closes_clients_1012_and_exits_0(tmp_path: Path) -> None:
    async with serve_process("--data-dir", str(tmp_path)) as (proc, url):
        async with WireClient.connect(url) as client:
            assert (await client.hello("alice"))["t"] == "welcome"
            proc.send_signal(signal.SIGTERM)
            assert await client.wait_closed(timeout=10) == 1012
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert (tmp_path / "cfm.sqlite3").exists()


async def test_shutdown_close_code_1001_from_the_environment(tmp_path: Path) -> None:
    env = {"CFM_SHUTDOWN_CLOSE_CODE": "1001"}
    async with serve_process("--data-dir", str(tmp_path), env=env) as (proc, url):
        async with WireClient.connect(url) as client:
            await client.hello("alice")
            proc.send_signal(signal.SIGINT)
            assert await client.wait_closed(timeout=10) == 1001
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_every_acked_message_survives_sigkill(tmp_path: Path) -> None:
    n = 300
    async with serve_process("--data-dir", str(tmp_path), "--no-rate-limits") as (proc, url):
        async with WireClient.connect(url) as alice:
            await alice.hello("alice")
            token = alice.token
            await alice.send({"t": "join", "room": "#lobby"})
            for i in range(n):
                await alice.send({"t": "say", "room": "#lobby", "text": f"m{i}", "id": f"m{i}"})
            acks = await alice.recv_n("ack", n, timeout=20)
            proc.send_signal(signal.SIGKILL)  # right after the last ack, no shutdown at all
        await proc.wait()
    acked = {a["id"]: (a["seq"], a["ts"]) for a in acks}
    async with serve_process("--data-dir", str(tmp_path)) as (proc, url):  # noqa: SIM117 (the url comes from the first)
        async with WireClient.connect(url) as alice:
            welcome = await alice.hello("alice", token=token)
            assert {r["room"]: r["seq"] for r in welcome["rooms"]}["#lobby"] >= n
            stored = {}
            after = 0
            for _ in range(10):
                await alice.send({"t": "history", "room": "#lobby", "after": after, "limit": 200})
                page = await alice.recv_until("history")
                stored.update({m["id"]: (m["seq"], m["ts"]) for m in page["msgs"]})
                if not page["more"]:
                    break
                after = page["msgs"][-1]["seq"]
    assert all(stored.get(key) == value for key, value in acked.items())


async def test_the_search_indexer_ends_with_a_sigkilled_server(tmp_path: Path) -> None:
    """The indexer process must not outlive its server: it would hold the server's
    output open (a supervisor waiting for it waits on) and write the index file a
    restarted server's indexer wants. Stopped, it cannot notice its pipe's end by
    itself: only the kernel's parent-death signal ends it."""
    async with serve_process("--data-dir", str(tmp_path)) as (proc, _url):
        indexer = None
        for _ in range(200):  # until the indexer has its file open: past its set-up
            for child in psutil.Process(proc.pid).children():
                if any(f.path.endswith(".search.sqlite3") for f in child.open_files()):
                    indexer = child
            if indexer is not None:
                break
            await asyncio.sleep(0.05)
        assert indexer is not None, "the server started no indexer process"
        indexer.send_signal(signal.SIGSTOP)
        proc.send_signal(signal.SIGKILL)
        _gone, alive = psutil.wait_procs([indexer], timeout=10)
        for child in alive:
            child.kill()  # so that the server's pipes close
        assert not alive, f"outlived the server: {alive}"


def test_python_m_cfm_server_help() -> None:
    out = subprocess.run([sys.executable, "-m", "cfm_server", "--help"], capture_output=True,
                         text=True, timeout=30, check=True)
    assert "--data-dir" in out.stdout
