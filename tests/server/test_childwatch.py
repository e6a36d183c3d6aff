"""A helper process the server keeps running (cfm_server/childwatch.py), over real child
processes: each death noticed and logged once, a new process started after the first
delay, then twice as long after each quick death up to the cap, the first delay again
after one that lived long enough; a start that fails tried again later; ``stop`` ends
the process, which is no death, and starts nothing after."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys

import pytest

from cfm_server.childwatch import OUTPUT, ChildKeeper, Mended, how_it_ended
from tests.wire import eventually

log = logging.getLogger("tests.childwatch")
_SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
_DIED = re.compile(r"the sleeper \(pid (\d+)\) died \((.+?)\) after \d+ s"
                   r"(?: \(\d+ deaths in a row, each within [\d.]+ s of its start\))?; "
                   r"starting a new one in ([\d.]+) s")


def _kill_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "poll"])
async def test_a_dead_child_is_started_again_with_a_doubling_back_off(
        caplog: pytest.LogCaptureFixture, pidfd: bool) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    spawned: list[subprocess.Popen[bytes]] = []
    deaths: list[int] = []

    def spawn() -> subprocess.Popen[bytes]:
        spawned.append(subprocess.Popen(_SLEEPER, stdin=subprocess.DEVNULL))
        return spawned[-1]

    keeper = ChildKeeper("the sleeper", spawn, lambda _: deaths.append(len(spawned)), log,
                         first_delay_s=0.01, max_delay_s=0.04, settled_s=3600.0)
    keeper.use_pidfd = pidfd and keeper.use_pidfd  # the poll: where there are no pidfds
    keeper.poll_s = 0.02
    try:
        assert keeper.start() is spawned[0] and keeper.process is spawned[0]
        assert (keeper._pidfd >= 0) == keeper.use_pidfd  # watched the way asked
        for n in range(1, 5):
            spawned[-1].send_signal(signal.SIGKILL)
            await eventually(lambda n=n: len(spawned) == n + 1 and keeper.process is not None)
        # One death each, noticed before its successor was started.
        assert deaths == [1, 2, 3, 4] and keeper.restarts == 4
        died = [_DIED.search(r.getMessage()) for r in caplog.records]
        found = [m.groups() for m in died if m]
        assert found == [(str(p.pid), "killed by SIGKILL", delay) for p, delay
                         in zip(spawned, ("0.01", "0.02", "0.04", "0.04"), strict=False)]
        started = [r.getMessage() for r in caplog.records if "started again" in r.getMessage()]
        assert started == [f"the sleeper started again (pid {p.pid})" for p in spawned[1:]]

        # One that ran a while before it died: the first delay again.
        keeper.settled_s = 0.0
        spawned[-1].terminate()
        await eventually(lambda: len(spawned) == 6 and keeper.process is not None)
        last = _DIED.search(caplog.records[-2].getMessage())
        assert last is not None and last.groups()[1:] == ("killed by SIGTERM", "0.01")

        # Stopped: the process is ended, which is no death, and nothing is started after.
        await keeper.stop()
        assert spawned[-1].poll() is not None and keeper.process is None
        keeper.check()
        assert len(spawned) == 6 and deaths == [1, 2, 3, 4, 5] and keeper.restarts == 5
        assert sum("died" in r.getMessage() for r in caplog.records) == 5
    finally:
        await keeper.stop()
        _kill_all(spawned)


async def test_a_child_that_cannot_be_started_again_is_tried_again_later(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    spawned: list[subprocess.Popen[bytes]] = []
    refusals = 2

    def spawn() -> subprocess.Popen[bytes]:
        nonlocal refusals
        if spawned and refusals:
            refusals -= 1
            raise OSError(24, "Too many open files")
        spawned.append(subprocess.Popen(_SLEEPER, stdin=subprocess.DEVNULL))
        return spawned[-1]

    keeper = ChildKeeper("the sleeper", spawn, lambda _: None, log,
                         first_delay_s=0.01, max_delay_s=1.0)
    try:
        keeper.start()
        spawned[0].kill()
        await eventually(lambda: len(spawned) == 2 and keeper.process is not None)
        tries = [r.getMessage() for r in caplog.records if "cannot start" in r.getMessage()]
        assert tries == ["cannot start a new sleeper ([Errno 24] Too many open files); "
                         f"trying again in {delay} s" for delay in ("0.02", "0.04")]
    finally:
        await keeper.stop()
        _kill_all(spawned)


async def test_what_the_owner_made_of_a_death_is_its_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    """The owner is told each death's exit status; what it returns (it mended what
    made the process stop) is logged in place of how the process ended, once."""
    caplog.set_level(logging.INFO, logger=log.name)
    spawned: list[subprocess.Popen[bytes]] = []
    statuses: list[int] = []

    def spawn() -> subprocess.Popen[bytes]:
        code = "import sys; sys.exit(3)" if not spawned else "import time; time.sleep(600)"
        spawned.append(subprocess.Popen([sys.executable, "-c", code],
                                        stdin=subprocess.DEVNULL))
        return spawned[-1]

    def died(returncode: int) -> Mended | None:
        statuses.append(returncode)
        return Mended(True, "found its file damaged: made it again") if returncode == 3 \
            else None

    keeper = ChildKeeper("the sleeper", spawn, died, log, first_delay_s=0.01)
    try:
        keeper.start()
        await eventually(lambda: len(spawned) == 2 and keeper.process is not None)
        assert statuses == [3]
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert lines == [f"the sleeper (pid {spawned[0].pid}) found its file damaged: made "
                         "it again; starting a new one in 0.01 s"]
    finally:
        await keeper.stop()
        _kill_all(spawned)


# A helper that logs as the indexers do, then fails at its start: no SQLite "corrupt"
# (nothing its owner can mend), the same at every start.
_FAILS = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="%(levelname)s %(name)s: %(message)s")
log = logging.getLogger("tests.childwatch.helper")
log.info("starting on /srv/index.sqlite3")
log.error("search index /srv/index.sqlite3 stopped: no such table: rooms")
raise SystemExit(1)
"""
_CRASHES = "raise ValueError('boom')"


async def test_a_child_that_fails_at_every_start_is_an_error_with_its_last_output(
        caplog: pytest.LogCaptureFixture) -> None:
    """Each death is one ERROR line with the exit status, how many deaths came in a row
    and the last lines the process wrote to its stderr; those lines reach the server's
    log as they come, under their own logger and level; the back-off doubles. (It used
    to be a WARNING with the exit status only, every 30 s forever, the output on the
    server's stderr alone.)"""
    caplog.set_level(logging.INFO)
    spawned: list[subprocess.Popen[bytes]] = []

    def spawn() -> subprocess.Popen[bytes]:
        code = _FAILS if len(spawned) < 3 else _CRASHES
        spawned.append(subprocess.Popen([sys.executable, "-c", code],
                                        stdin=subprocess.PIPE, stderr=OUTPUT))
        return spawned[-1]

    keeper = ChildKeeper("the helper", spawn, lambda _: None, log, first_delay_s=0.01,
                         max_delay_s=10.0)
    try:
        keeper.start()
        await eventually(lambda: keeper.deaths == 4)
        assert not keeper.running or keeper.process is spawned[-1]
    finally:
        await keeper.stop()
        _kill_all(spawned)
    deaths = [r for r in caplog.records if r.name == log.name and "died" in r.getMessage()]
    assert [r.levelno for r in deaths] == [logging.ERROR] * 4
    first = deaths[0].getMessage()
    assert re.fullmatch(
        rf"the helper \(pid {spawned[0].pid}\) died \(exited with status 1\) after \d+ s; "
        r"starting a new one in 0.01 s; the last lines it wrote:\n"
        r"    INFO tests.childwatch.helper: starting on /srv/index.sqlite3\n"
        r"    ERROR tests.childwatch.helper: search index /srv/index.sqlite3 stopped: no "
        r"such table: rooms", first), first
    assert [re.search(r"\((\d) deaths in a row, each within 60 s of its start\); starting a "
                      r"new one in ([\d.]+) s", r.getMessage()).groups()  # type: ignore[union-attr]
            for r in deaths[1:]] == [("2", "0.02"), ("3", "0.04"), ("4", "0.08")]
    crash = deaths[3].getMessage()
    assert "died (exited with status 1)" in crash
    assert crash.endswith("\n    Traceback (most recent call last):\n"
                          '      File "<string>", line 1, in <module>\n'
                          "    ValueError: boom"), crash
    # Its lines in the server's log as it wrote them, under its logger, at their level.
    helper = [(r.levelno, r.getMessage()) for r in caplog.records
              if r.name == "tests.childwatch.helper"]
    assert helper[:2] == [
        (logging.INFO, "starting on /srv/index.sqlite3"),
        (logging.ERROR, "search index /srv/index.sqlite3 stopped: no such table: rooms")]
    assert len(helper) == 6
    # A traceback with no log line before it: a WARNING of the keeper's logger (its
    # death's ERROR line repeats it).
    assert (logging.WARNING, "ValueError: boom") in [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == log.name]


def test_how_a_process_ended_in_words() -> None:
    assert how_it_ended(-9) == "killed by SIGKILL"
    assert how_it_ended(1) == "exited with status 1"
    assert how_it_ended(-200) == "killed by signal 200"
