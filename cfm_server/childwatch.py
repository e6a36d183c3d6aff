"""A helper process the server keeps running (a search indexer, the single node's or a
cluster node's): its death noticed at once, one line logged, and a new one started
after a back-off; what it writes to its stderr goes to the server's log.

Why: an indexer may die while its server lives on — the OOM killer picks the biggest
process, an operator SIGKILLs the wrong pid, a bug crashes it. Its server would answer
searches from a frozen index (``behind`` growing) until its own next start. The owner
(``SearchIndex``, ``ClusterSearch``) says how to start one (``spawn``, which also hands
the new process whatever it needs to catch up) and what to do about a dead one
(``died``: forget a note half written to its pipe; mend what made it stop, when its
exit status says so — a damaged index file — and say so, the one line of the death);
this module does the watching, the timing, and the stop.

Noticed without blocking the event loop and without polling: a pidfd (Linux 5.3+)
becomes readable when its process exits, so the loop's ``add_reader`` calls back at
once. Elsewhere a timer polls ``Popen.poll()`` (a non-blocking ``waitpid``) every
``POLL_S``; the owner also calls ``check`` when a write to the pipe fails.

The back-off: ``FIRST_DELAY_S``, twice as long after each death that follows quickly,
at most ``MAX_DELAY_S``; a process that ran ``SETTLED_S`` or more before it died is
followed after ``FIRST_DELAY_S`` again. So a kill now and then costs a second of
``behind``, and a crash at each start (a file the process cannot use, which nothing
will mend by itself) a start every 10 minutes once it has failed ten times.

The death line: a death the owner mended (a damaged index file made again) is a
WARNING saying what it did; any other is an ERROR with how the process ended (its exit
status, or the signal), how many deaths came in a row, and the last lines it wrote to
its stderr (a crash's traceback, its own last ERROR), so that the cause is on the line
that says it died. Its stderr is a pipe read by the loop (``add_reader``) as it comes:
each line is logged by the server, under the logger and at the level the process
wrote it with (``LEVEL logger: message``, its logging's format), so it reaches the
server's ``--log-file`` and JSON format like any other line; a line that is not one
(a traceback's) goes with the line before it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

from cfm_server.childproc import stop_child

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 600.0
SETTLED_S = 60.0  # lived this long: its death starts the back-off again from the first
POLL_S = 1.0  # without pidfds: how often the process is looked at
TAIL_LINES = 10  # of its stderr, on its death line
TAIL_CHARS = 500  # of each of those lines
# How much of its output is read at its death (all it wrote before it exited, unless a
# process of its own holds the pipe open).
_DRAIN_READS = 64
_LOG_LINE = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): (.*)")

# A helper's stderr: a pipe the keeper reads (``Popen(stderr=OUTPUT)``); on Windows,
# whose loops read no pipes as they come, the server's own.
OUTPUT = subprocess.PIPE if sys.platform != "win32" else None


class Mended(NamedTuple):
    """What the owner made of a death (``died``'s answer): ``said`` is logged in place of
    how the process ended; ``ok``: a WARNING (it mended the cause), else an ERROR."""

    ok: bool
    said: str


def how_it_ended(returncode: int) -> str:
    """``killed by SIGKILL``, ``exited with status 1``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


class ChildKeeper:
    """Keeps one helper process running for its owner, on the owner's event loop.

    ``start`` (the first process: an OSError is the caller's), then on its own: each
    death logged, ``died(returncode)`` called, and after the back-off ``spawn()`` again
    (an OSError then is logged and tried again later); ``stop`` ends it. ``died`` may
    return what its owner made of the death (``Mended``). The process's input is a pipe
    from the owner (closed here at its death); its stderr, if ``spawn`` made it a pipe
    (``OUTPUT``), is read and logged here."""

    def __init__(self, what: str, spawn: Callable[[], subprocess.Popen[bytes]],
                 died: Callable[[int], Mended | None], log: logging.Logger, *,
                 first_delay_s: float = FIRST_DELAY_S, max_delay_s: float = MAX_DELAY_S,
                 settled_s: float = SETTLED_S) -> None:
        self.what = what  # "the search indexer", in the log lines
        self._spawn = spawn
        self._died = died
        self._log = log
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.settled_s = settled_s
        self.use_pidfd = hasattr(os, "pidfd_open")  # else (or if it fails) a poll
        self.poll_s = POLL_S
        self._delay = 0.0  # the wait before the next start after a death; 0: the first
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._started = 0.0  # monotonic, of the watched process
        self._pidfd = -1
        self._timer: asyncio.TimerHandle | None = None  # the poll, or the next start
        self._stopped = False
        self.restarts = 0  # processes started after a death (tests, figures)
        self.deaths = 0  # (metrics)
        self.in_a_row = 0  # deaths each within settled_s of its start, the last ones
        self._output = -1  # the watched process's stderr (our end of the pipe)
        self._partial = b""  # a line of it begun
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        # Where a line that is no log line goes: the logger and level of the one before
        # (a traceback's lines, after its record), else the keeper's at WARNING (a crash's
        # traceback: its death's ERROR line repeats it).
        self._follows: tuple[logging.Logger, int] = (log, logging.WARNING)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The running process; None between a death and the next start."""
        return self._process

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self) -> subprocess.Popen[bytes]:
        """The first process, from the event loop's thread (``die_with`` ties the child
        to the thread that started it). OSError if it cannot be started."""
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        process = self._spawn()
        self._watch(process)
        return process

    def check(self) -> None:
        """The owner has a sign of death (its pipe's write failed): look now."""
        process = self._process
        if process is not None and process.poll() is not None:
            self._ended()

    async def stop(self) -> None:
        """Watch no more, start nothing more, and end the running process, if any
        (``stop_child``: its end is no death)."""
        self._stopped = True
        self._unwatch()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        process, self._process = self._process, None
        if process is not None:
            await stop_child(process, self._log)
            self._drain_output()
            self._close_output(process)

    # --- watching ---------------------------------------------------------------------

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._started = time.monotonic()
        loop = self._loop
        assert loop is not None
        self._watch_output(process, loop)
        if self.use_pidfd:
            try:
                self._pidfd = os.pidfd_open(process.pid)
                loop.add_reader(self._pidfd, self._ended)
                return
            except (OSError, NotImplementedError, RuntimeError):
                # An old kernel, a loop without add_reader (Windows' proactor).
                self._close_pidfd()
        self._timer = loop.call_later(self.poll_s, self._poll)

    def _poll(self) -> None:
        self._timer = None
        process = self._process
        if process is None or self._loop is None:
            return
        if process.poll() is not None:
            self._ended()
        else:
            self._timer = self._loop.call_later(self.poll_s, self._poll)

    def _unwatch(self) -> None:
        if self._pidfd >= 0 and self._loop is not None:
            with contextlib.suppress(Exception):  # the loop may be closing already
                self._loop.remove_reader(self._pidfd)
        self._close_pidfd()
        if self._timer is not None and self._process is not None:
            self._timer.cancel()  # the poll (between processes it is the next start)
            self._timer = None

    # --- its stderr ---------------------------------------------------------------------

    def _watch_output(self, process: subprocess.Popen[bytes],
                      loop: asyncio.AbstractEventLoop) -> None:
        self._tail.clear()
        self._partial = b""
        self._follows = (self._log, logging.WARNING)
        if process.stderr is None:
            return
        self._output = process.stderr.fileno()
        os.set_blocking(self._output, False)
        # (A loop without readers, Windows' proactor: what it wrote is read at its death.)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_reader(self._output, self._read_output)

    def _read_output(self) -> None:
        try:
            data = os.read(self._output, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # its end closed (it is exiting): the death reads the rest
            self._unwatch_output()
            return
        self._take_output(data)

    def _take_output(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > 1 << 16:  # no line end in sight: a line of its own
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            self._log_output(line.decode("utf-8", "replace").rstrip())

    def _log_output(self, text: str) -> None:
        if not text:
            return
        self._tail.append(text if len(text) <= TAIL_CHARS else text[:TAIL_CHARS] + "…")
        match = _LOG_LINE.fullmatch(text)
        if match is not None:
            level = logging.getLevelName(match[1])
            self._follows = (logging.getLogger(match[2]), level)
            self._follows[0].log(level, "%s", match[3])
        else:
            logger, level = self._follows
            logger.log(level, "%s", text)

    def _drain_output(self) -> None:
        """What the process wrote before it ended, read to its end (it has exited)."""
        if self._output < 0:
            return
        for _ in range(_DRAIN_READS):
            try:
                data = os.read(self._output, 1 << 16)
            except OSError:  # (BlockingIOError: a process of its own holds it open)
                break
            if not data:
                break
            self._take_output(data)
        if self._partial:
            self._log_output(self._partial.decode("utf-8", "replace").rstrip())
            self._partial = b""

    def _unwatch_output(self) -> None:
        if self._output >= 0 and self._loop is not None:
            with contextlib.suppress(Exception):  # not watched, or the loop is closing
                self._loop.remove_reader(self._output)

    def _close_output(self, process: subprocess.Popen[bytes]) -> None:
        self._unwatch_output()
        self._output = -1
        with contextlib.suppress(OSError):
            if process.stderr is not None:
                process.stderr.close()

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = -1

    # --- a death, and the next start ---------------------------------------------------

    def _ended(self) -> None:
        process = self._process
        if process is None or self._stopped:
            return
        returncode = process.poll()  # reaps it; never blocks
        if returncode is None:
            return  # not yet (a write failed a moment before the exit): the watch stays
        self._unwatch()
        self._process = None
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()  # its pipe: the owner's end of it
        self._drain_output()
        self._close_output(process)
        lived = time.monotonic() - self._started
        self.deaths += 1
        if lived >= self.settled_s:
            self._delay = 0.0  # it had run a while: this death starts the schedule again
            self.in_a_row = 0
        self.in_a_row += 1
        delay = self._next_delay()
        mended = self._died(returncode)
        if mended is not None and mended.ok:
            self._log.warning("%s (pid %d) %s; starting a new one in %g s", self.what,
                              process.pid, mended.said, delay)
        else:
            said = mended.said if mended is not None else f"died ({how_it_ended(returncode)})"
            self._log.error("%s (pid %d) %s after %.0f s%s; starting a new one in %g s%s",
                            self.what, process.pid, said, lived, self._row(), delay,
                            self._last_output(process))
        self._next_start(delay)

    def _row(self) -> str:
        if self.in_a_row < 2:
            return ""
        return f" ({self.in_a_row} deaths in a row, each within {self.settled_s:g} s of its start)"

    def _last_output(self, process: subprocess.Popen[bytes]) -> str:
        if process.stderr is None:
            return ""
        if not self._tail:
            return "; it wrote nothing to its stderr"
        return "; the last lines it wrote:\n" + "\n".join(f"    {line}" for line in self._tail)

    def _next_delay(self) -> float:
        """The wait before the next start: ``first_delay_s``, then twice as long each
        time, up to ``max_delay_s``."""
        delay = self._delay or self.first_delay_s
        self._delay = min(self.max_delay_s, delay * 2)
        return delay

    def _next_start(self, delay: float) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_later(delay, self._restart)

    def _restart(self) -> None:
        self._timer = None
        if self._stopped:
            return
        try:
            process = self._spawn()
        except (OSError, subprocess.SubprocessError) as e:
            delay = self._next_delay()
            self._log.warning("cannot start a new %s (%s); trying again in %g s",
                              self.what.removeprefix("the "), e, delay)
            self._next_start(delay)
            return
        self.restarts += 1
        self._watch(process)
        self._log.info("%s started again (pid %d)", self.what, process.pid)
