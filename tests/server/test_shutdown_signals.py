"""Signals at the edges of ``cfm serve``'s life (docs/server.md, "Signals"): one that
lands after the event loop has closed (systemd or a supervisor sending SIGTERM twice)
does not end the process by the signal, a second one during the shutdown is answered
"already shutting down", and a SIGTERM the moment the server starts listening stops it
cleanly — nothing of its start-up left half done.

Each runs the real ``cfm serve`` in a process that signals itself at the moment under
test (``serve_signalled.py``: a real ``kill`` of its own pid, at a log line or after the
command returned), so the moment is hit every time, with no sleep. The cluster node's
twins are in tests/cluster/test_node_signals.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.serve_proc import ServeProcess

SIGNALLED = Path(__file__).with_name("serve_signalled.py")
EXIT_WAIT = 30.0


async def spawn_signalled(moment: str, signame: str, tmp_path: Path, *args: str,
                          ai: bool = False, env: dict[str, str] | None = None
                          ) -> ServeProcess:
    """``cfm serve --port 0`` (``--no-ai`` unless ``ai``) that sends itself ``signame``
    at ``moment``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SIGNALLED), moment, signame, "--host", "127.0.0.1",
        "--port", "0", *([] if ai else ["--no-ai"]), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**own_env(tmp_path), **(env or {})})
    return ServeProcess(proc)


def own_env(tmp_path: Path) -> dict[str, str]:
    """The environment without CFM_* variables and the user's server.toml."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFM_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    return env


async def exit_status(server: ServeProcess) -> int:
    """How the process ended, waited for by itself (no signal of ServeProcess.stop's)."""
    try:
        code = await asyncio.wait_for(server.proc.wait(), EXIT_WAIT)
    except TimeoutError:
        await server.stop()
        raise AssertionError(f"cfm serve did not exit:\n{server.text()[-3000:]}") from None
    await server.stop()  # (reads the rest of its output)
    return code


async def stopped_after_its_loop(moment: str, signame: str, tmp_path: Path,
                                 *args: str) -> ServeProcess:
    """A started ``cfm serve`` stopped with SIGTERM, which sends itself ``signame`` at
    ``moment`` after its loop has closed; checked to exit 0, no traceback."""
    server = await spawn_signalled(moment, signame, tmp_path, *args)
    await server.wait_line(r"cfm serve: listening on ws://")
    server.proc.send_signal(signal.SIGTERM)
    code = await exit_status(server)
    assert f"signal-self: {signame} at {moment}" in server.text(), server.text()[-3000:]
    assert code == 0, server.text()[-3000:]
    assert "Traceback" not in server.text()
    if moment == "returned":  # it went on after the signal, to its own end
        assert "signal-self: still alive" in server.text()
    return server


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGHUP"])
@pytest.mark.parametrize("moment", ["returned", "atexit"])
async def test_a_signal_after_the_loop_has_closed_does_not_end_the_server_by_it(
        tmp_path, moment, signame) -> None:
    # It used to: -15 for SIGTERM (143 in a shell, a failed stop to systemd), -1 for
    # SIGHUP, a KeyboardInterrupt traceback for SIGINT.
    await stopped_after_its_loop(moment, signame, tmp_path, "--data-dir", str(tmp_path / "d"))


# Logged before the event loop runs (its handlers installed, nothing to hand them to yet).
BEFORE_THE_LOOP = "log:cfm_server.config:CFM_NO_SUCH_SETTING is not a cfm setting"


async def test_sigterm_before_the_event_loop_runs_stops_it_cleanly(tmp_path) -> None:
    # It used to end the process by the signal (-15): the loop's handlers were not yet
    # installed.
    server = await spawn_signalled(BEFORE_THE_LOOP, "SIGTERM", tmp_path, "--data-dir",
                                   str(tmp_path / "d"), env={"CFM_NO_SUCH_SETTING": "1"})
    assert await exit_status(server) == 0, server.text()[-3000:]
    assert f"signal-self: SIGTERM at {BEFORE_THE_LOOP}" in server.text()
    assert "cfm serve: stopped before it started" in server.text()
    assert "Traceback" not in server.text()


async def test_sighup_before_the_event_loop_runs_is_done_once_it_runs(tmp_path) -> None:
    # It used to end the process by the signal (-1), logrotate's reload at a start.
    server = await spawn_signalled(BEFORE_THE_LOOP, "SIGHUP", tmp_path, "--data-dir",
                                   str(tmp_path / "d"), env={"CFM_NO_SUCH_SETTING": "1"})
    await server.wait_line(r"SIGHUP: nothing to reload")
    await server.wait_line(r"cfm serve: listening on ws://")
    assert await server.stop() == 0, server.text()[-3000:]


async def test_a_second_sigterm_during_the_shutdown_is_answered_already_shutting_down(
        tmp_path) -> None:
    # The AI contacts sign out first thing in a shutdown: the second SIGTERM comes while
    # the rest of it (flush, clients closed, store closed) is still to run.
    server = await spawn_signalled("log:cfm_server.conn:code 1000 by the client", "SIGTERM",
                                   tmp_path, "--data-dir", str(tmp_path / "d"), ai=True)
    await server.wait_line(r"cfm serve: listening on ws://")
    server.proc.send_signal(signal.SIGTERM)
    assert await exit_status(server) == 0, server.text()[-3000:]
    await server.wait_line(r"INFO cfm_common\.procsignals: SIGTERM again: already shutting "
                           r"down")
    assert "Traceback" not in server.text()


@pytest.mark.parametrize("moment", ["log:cfm_server.server:listening on",
                                    "log:cfm_common.client:connected to"])
async def test_sigterm_as_a_single_node_starts_listening_stops_it_cleanly(
        tmp_path, moment) -> None:
    """At the "listening on" line, and as the AI contacts sign in: the start-up steps
    after the listener (server.json, admin.sock, the AI contacts) are undone as a stop
    undoes them; it used to end with the store never closed, admin.sock left, and AI
    contacts signed in and reconnecting to a server going away."""
    data = tmp_path / "d"
    server = await spawn_signalled(moment, "SIGTERM", tmp_path, "--data-dir", str(data),
                                   ai=True)
    assert await exit_status(server) == 0, server.text()[-3000:]
    text = server.text()
    assert f"signal-self: SIGTERM at {moment}" in text
    assert "cfm serve: stopped before it started" in text, text[-3000:]
    assert "Traceback" not in text
    assert "reconnecting" not in text, text[-3000:]
    # The store was closed (its WAL folded in) and the control socket removed.
    left = sorted(p.name for p in data.iterdir())
    assert "cfm.sqlite3-wal" not in left and "admin.sock" not in left, left


def test_sigterm_again_and_again_until_it_is_gone_still_ends_it_with_status_0(
        tmp_path) -> None:
    """A supervisor that sends SIGTERM until the process is gone: whichever moment of
    the shutdown each one lands in (the loop's, its closing, the interpreter's exit),
    the status is 0. (Not one moment picked, as above: every moment, by numbers.)"""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cfm_server", "--host", "127.0.0.1", "--port", "0",
         "--no-ai", "--data-dir", str(tmp_path / "d")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=own_env(tmp_path))
    assert proc.stdout is not None
    try:
        output = []
        for line in proc.stdout:  # (ends if it exits instead of listening)
            output.append(line.decode())
            if "cfm serve: listening on" in output[-1]:
                break
        sent = 0
        while sent < 30_000:  # a millisecond apart: bounded at about 30 s
            proc.send_signal(signal.SIGTERM)  # (nothing once it has been waited for)
            sent += 1
            try:
                proc.wait(timeout=0.001)
                break
            except subprocess.TimeoutExpired:
                pass
        output.append(proc.stdout.read().decode())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    text = "".join(output)
    assert proc.returncode == 0, (sent, text[-3000:])
    assert sent > 1, text[-3000:]
    assert "Traceback" not in text


def test_a_start_that_failed_gives_the_caller_its_signal_handlers_back(tmp_path) -> None:
    """``cfm serve`` run in this process (typer's CliRunner) that exits 2 (its data dir
    is a file): the handlers from before are back. The three are ignored to the end
    only once a server ran or a stop was asked for; this process goes on."""
    from typer.testing import CliRunner

    from cfm_cli.main import app

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    def mine(signum: int, frame: object) -> None:
        raise AssertionError(f"signal {signum} in the test")

    before = {sig: signal.signal(sig, mine)
              for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        result = CliRunner().invoke(app, ["serve", "--port", "0", "--no-ai",
                                          "--data-dir", str(blocker)])
        assert result.exit_code == 2, result.output
        assert {sig: signal.getsignal(sig) for sig in before} == dict.fromkeys(before, mine)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


# SIGTERM and SIGUSR1 caught together (held while blocked): Python runs their handlers in
# signal order, SIGUSR1's first, and it makes the three ignored — as cfm serve does at the
# end of its shutdown — before SIGTERM's turn comes.
CAUGHT_AS_IGNORED = """
import os, signal
from cfm_common.procsignals import ProcessSignals
signals = ProcessSignals()
signal.signal(signal.SIGUSR1, lambda signum, frame: signals.release(ignore=True))
both = {signal.SIGUSR1, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, both)
os.kill(os.getpid(), signal.SIGTERM)
os.kill(os.getpid(), signal.SIGUSR1)
signal.pthread_sigmask(signal.SIG_UNBLOCK, both)
print("still here")
"""


def test_a_signal_caught_as_the_handlers_become_ignored_is_not_reported() -> None:
    """Caught by the kernel just before its handler became SIG_IGN, but not yet run by
    Python: ignored like the ones after it, not reported as "Signal 15 ignored due to
    race condition" with a traceback."""
    result = subprocess.run([sys.executable, "-c", CAUGHT_AS_IGNORED], capture_output=True,
                            text=True, timeout=30)
    assert (result.returncode, result.stdout) == (0, "still here\n"), result
    assert result.stderr == "", result.stderr
