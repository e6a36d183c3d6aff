"""Signals at every moment of a bot process's life: a bot's ``Bot.run()`` and ``cfm bot
ai`` (one AI contact as its own process), as ``cfm serve`` (tests/server/
test_shutdown_signals.py). A SIGTERM or SIGINT while it signs in stops it cleanly, nothing
left signed in; one that lands after its event loop closed (a supervisor that sends
SIGTERM twice, a second Ctrl+C) no longer ends it by the signal (-15) or with a
KeyboardInterrupt traceback: status 0 either way.

Each runs the real process, which signals itself at the moment under test
(tests/server/serve_signalled.py: a real ``kill`` of its own pid), against a real server.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.server.serve_proc import ServeProcess
from tests.server.test_shutdown_signals import SIGNALLED, exit_status, own_env

BOT = Path(__file__).parent / "bots" / "slow_bot.py"


async def spawn(moment: str, signame: str, tmp_path: Path, *command: str) -> ServeProcess:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SIGNALLED), moment, signame, *command,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=own_env(tmp_path))
    return ServeProcess(proc)


def ai_command(server: Any, tmp_path: Path) -> tuple[str, ...]:
    return ("--run=cfm_cli.main", "bot", "ai", "--server", server.url, "--persona", "clippo",
            "--token-dir", str(tmp_path / "tokens"))


def bot_command(server: Any) -> tuple[str, ...]:
    return (f"--run={BOT}", server.url)


async def ended_cleanly(proc: ServeProcess, moment: str, signame: str) -> str:
    code = await exit_status(proc)
    text = proc.text()
    assert f"signal-self: {signame} at {moment}" in text, text[-3000:]
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    return text


@pytest.mark.parametrize("kind", ["bot", "ai"])
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("moment", ["returned", "atexit"])
async def test_a_signal_after_the_loop_has_closed_does_not_end_it_by_the_signal(
        server: Any, tmp_path: Path, kind: str, signame: str, moment: str) -> None:
    # It used to: -15 for SIGTERM (the loop's handler removed as it closed, the default
    # action back), a KeyboardInterrupt traceback for SIGINT.
    command = bot_command(server) if kind == "bot" else ai_command(server, tmp_path)
    proc = await spawn(moment, signame, tmp_path, *command)
    await proc.wait_line(r"is online at")
    proc.proc.send_signal(signal.SIGTERM)
    text = await ended_cleanly(proc, moment, signame)
    if moment == "returned":  # it went on after the signal, to its own end
        assert "signal-self: still alive" in text


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
async def test_a_signal_while_the_ai_contact_signs_in_stops_it_cleanly(
        server: Any, tmp_path: Path, signame: str) -> None:
    # It used to end by the signal (-15) or with a KeyboardInterrupt traceback: the
    # handlers were installed only once the persona was online.
    moment = "log:cfm_common.client:connected to"
    proc = await spawn(moment, signame, tmp_path, *ai_command(server, tmp_path))
    text = await ended_cleanly(proc, moment, signame)
    assert "cfm bot ai: clippo stopped before it started" in text, text[-3000:]
    assert "reconnecting" not in text and "Ctrl+C to stop" not in text, text[-3000:]
    # Signed out: nobody named clippo is online on the server any more.
    async with asyncio.timeout(10):
        while "clippo" in server.hub.users and server.hub.users["clippo"].sessions:
            await asyncio.sleep(0.01)
