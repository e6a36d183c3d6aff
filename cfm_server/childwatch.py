"""A helper process the server keeps running (a search indexer, the single node's or a
cluster node's): its death noticed at once, one line logged, and a new one started
after a back-off.

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
followed after ``FIRST_DELAY_S`` again. So a crash at each start (an unwritable index
file) costs a start every 30 s, and a kill now and then a second of ``behind``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable

from cfm_server.childproc import stop_child

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
SETTLED_S = 60.0  # lived this long: its death starts the back-off again from the first
POLL_S = 1.0  # without pidfds: how often the process is looked at


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
    return what its owner made of the death (logged instead of how it ended). The
    process's input is a pipe from the owner (closed here at its death)."""

    def __init__(self, what: str, spawn: Callable[[], subprocess.Popen[bytes]],
                 died: Callable[[int], str | None], log: logging.Logger, *,
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

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The running process; None between a death and the next start."""
        return self._process

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

    # --- watching ---------------------------------------------------------------------

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._started = time.monotonic()
        loop = self._loop
        assert loop is not None
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
        lived = time.monotonic() - self._started
        if lived >= self.settled_s:
            self._delay = 0.0  # it had run a while: this death starts the schedule again
        delay = self._next_delay()
        said = self._died(returncode)
        if said is None:
            self._log.warning("%s (pid %d) died (%s) after %.0f s; starting a new one in "
                              "%g s", self.what, process.pid, how_it_ended(returncode),
                              lived, delay)
        else:
            self._log.warning("%s (pid %d) %s; starting a new one in %g s", self.what,
                              process.pid, said, delay)
        self._next_start(delay)

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
