"""SIGTERM, SIGINT and SIGHUP of a cfm process (``cfm serve``, ``cfm bot ai``, a bot's
``Bot.run()``), answered from before its event loop runs to the process's last
instruction.

    signals = ProcessSignals()                      # before the loop: a stop is kept
    signals.attach(loop, stop=event.set, reload=…)  # in the loop: handed to it
    …                                               # the server (the bot) stops
    signals.release(ignore=True)                    # from now to the exit, none ends it

A bot takes SIGTERM and SIGINT only (``ProcessSignals(reload=False)``): SIGHUP keeps
whatever it was. Out of the main thread (a bot run in a thread of a bigger program)
nothing is installed, as Python allows signal handlers in the main thread only.

The handlers are Python-level (``signal.signal``), not the loop's ``add_signal_handler``:
removing a loop's handler, which closing the loop does, puts the default action back, and
for SIGTERM and SIGHUP that is death. (The interpreter runs a Python-level handler in
the main thread, the one the kernel gives a signal sent to the process, between two
bytecodes: it only hands the signal to the loop, ``call_soon_threadsafe``, which wakes
it, on asyncio's loop and uvloop alike.) A second SIGTERM landing in the last moment of a
shutdown (the loop closed, its threads joined, the interpreter finalizing) — systemd, a
supervisor or a script that sends it twice — ended the process by the signal, status -15
(143 in a shell), which they count as a failed stop. Once the server has stopped the
three are ignored (``SIG_IGN``): the interpreter's finalization leaves an ignored signal
as it is, where it resets a Python-level handler to the default action. A start that
failed (status 2) puts the handlers from before back instead: nothing ran to stop, and a
caller in the same process (a test through typer's CliRunner) gets its signals back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, TypeVar

log = logging.getLogger(__name__)

STOP = (signal.SIGTERM, signal.SIGINT)
# (No SIGHUP on Windows, where a bot of the SDK may run.)
HANDLED = (*STOP, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()))

T = TypeVar("T")


class ProcessSignals:
    """The process's handlers for ``HANDLED`` (``STOP`` only without ``reload``); one per
    process (signals are global)."""

    def __init__(self, *, reload: bool = True) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: Callable[[], None] | None = None
        self._reload: Callable[[], None] | None = None
        self.stop_requested = False  # a SIGTERM or SIGINT came (before attach() too)
        self._reload_requested = False  # a SIGHUP came before attach()
        self._repeat_said = False
        self._handled = HANDLED if reload else STOP
        self._before: dict[int, Any] | None = None
        if threading.current_thread() is threading.main_thread():
            self._before = {sig: signal.signal(sig, self._handler) for sig in self._handled}

    def attach(self, loop: asyncio.AbstractEventLoop, *, stop: Callable[[], None],
               reload: Callable[[], None] | None = None) -> None:
        """Hand the signals to ``loop`` from now on: ``stop`` on the first SIGTERM or
        SIGINT, ``reload`` on each SIGHUP (at once for those that came before)."""
        self._loop, self._stop, self._reload = loop, stop, reload
        if self._reload_requested:  # logrotate moved the log file while we started
            reload()
        if self.stop_requested:
            stop()

    def release(self, *, ignore: bool) -> None:
        """The command is over (the first call counts). ``ignore``: a server ran or was
        asked to stop, and every further signal it handles is discarded by the kernel
        until and during the interpreter's exit; else the handlers from before return."""
        before, self._before = self._before, None
        if before is None:
            return
        self._loop = None
        if ignore:
            _quiet_the_race()
        for sig in self._handled:
            # (None: a handler set outside Python, which cannot be put back)
            previous = signal.SIG_DFL if before[sig] is None else before[sig]
            signal.signal(sig, signal.SIG_IGN if ignore else previous)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes, maybe inside the loop's own
        # code: only hand the signal over.
        loop = self._loop
        if loop is None:  # before attach(): kept for it
            if signum in STOP:
                self.stop_requested = True
            else:
                self._reload_requested = True
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._dispatch, signum)

    def _dispatch(self, signum: int) -> None:
        if signum not in STOP:  # SIGHUP
            if self._reload is not None:
                self._reload()
        elif not self.stop_requested:
            self.stop_requested = True
            if self._stop is not None:
                self._stop()
        elif not self._repeat_said:  # once: a supervisor may send it again and again
            self._repeat_said = True
            log.info("%s again: already shutting down", signal.Signals(signum).name)


async def unless_stopped(start: Coroutine[Any, Any, T], stop: asyncio.Event
                         ) -> asyncio.Task[T] | None:
    """Run ``start`` unless ``stop`` is set first: its finished task then (``result()``
    gives what it returned or raises what it raised), else None, ``start`` cancelled and
    waited for (it undoes what it did when cancelled)."""
    starting = asyncio.ensure_future(start)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if starting.done():
        return starting
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    return None


_RACE = {f"Signal {int(sig)} ignored due to race condition" for sig in HANDLED}


def _quiet_the_race() -> None:
    """A signal caught just before its handler became SIG_IGN, and not yet handed to
    Python, is reported by the interpreter as an exception ("Signal 15 ignored due to
    race condition", with a traceback) when it finds no handler to run: it was meant to
    be ignored, so that report is dropped; any other goes to the hook from before."""
    before = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not (isinstance(unraisable.exc_value, OSError)
                and str(unraisable.exc_value) in _RACE):
            before(unraisable)

    sys.unraisablehook = hook
