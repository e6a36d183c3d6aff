"""examples/echo_bot.py as a subprocess against a ``cfm serve`` subprocess, restart included."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cfm_common.client import Client, ClientError, ConnectionState
from tests.faults.procs import ServerProcess
from tests.sdk.conftest import Recorder

ROOT = Path(__file__).resolve().parents[2]
ECHO_BOT = ROOT / "examples" / "echo_bot.py"


def child_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")  # never the real user data dir
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["PYTHONPATH"] = str(ROOT)
    return env


async def stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    return proc.returncode


@pytest.fixture
async def procs() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        await stop(proc)


async def say_when_online(client: Client, text: str, to: str) -> Any:
    """Say ``text`` to ``to`` as soon as that user exists (the bot signs in first: a
    Python process starting up, which a loaded machine may take several seconds for)."""
    for _ in range(300):
        try:
            return await client.say(text, to=to)
        except ClientError as exc:
            if exc.code != "no_such_user":
                raise
            await asyncio.sleep(0.1)
    raise AssertionError(f"{to} never signed in")


def echoes(recorder: Recorder) -> list[str]:
    return [m.text for m in recorder.msgs() if m.sender == "echo" and m.kind == "text"]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """``cfm serve`` as a subprocess: started on port 0 (the port is read from its
    "listening on" line, none is assumed free), restarted on that same port."""
    server = ServerProcess(tmp_path / "server", env=child_env(tmp_path))
    yield server
    await server.stop()


async def test_the_echo_bot_answers_and_survives_a_server_restart(
    tmp_path: Path, procs: list[asyncio.subprocess.Process], serve: ServerProcess
) -> None:
    server, env = serve, child_env(tmp_path)
    url = await server.start()
    bot = await asyncio.create_subprocess_exec(
        sys.executable, str(ECHO_BOT), url, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    procs.append(bot)

    async with Client(url, "alice", token_file=tmp_path / "alice.token") as alice:
        events = Recorder(alice)
        await say_when_online(alice, "hello echo", "echo")
        await events.wait(lambda r: "hello echo" in echoes(r))
        await alice.nudge("echo")
        await events.wait(lambda r: any(m.kind == "nudge" and m.sender == "echo"
                                        for m in r.msgs()))

        assert await server.stop() == 0
        await events.wait(lambda r: r.states()[-1].state is ConnectionState.RECONNECTING)
        await server.start()
        await alice.say("still there?", to="echo")  # waits in the outbox until reconnected
        await events.wait(lambda r: "still there?" in echoes(r), timeout=30)
        assert echoes(events) == ["hello echo", "still there?"]

    assert bot.returncode is None  # it rode out the restart
    assert await stop(bot) == 0
    assert bot.stderr is not None
    log = (await bot.stderr.read()).decode()
    assert "reconnecting" in log
    token_files = list((tmp_path / "xdg-data").rglob("echo.token"))
    assert len(token_files) == 1


async def test_the_echo_bot_exits_1_when_its_name_belongs_to_someone_else(
    server: Any, tmp_path: Path
) -> None:
    async with Client(server.url, "echo", token_file=False):
        bot = await asyncio.create_subprocess_exec(
            sys.executable, str(ECHO_BOT), server.url, env=child_env(tmp_path),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(bot.communicate(), 20)
    assert bot.returncode == 1
    assert "name_taken" in err.decode()
