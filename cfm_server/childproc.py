"""What a helper process of the server (a search indexer) does to end with its parent,
how its parent starts it, and how it ends it. (Started again when it dies first:
``childwatch``.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

# The sys.path entry this cfm_server was imported from (a site-packages, a checkout), as
# written there (not resolved: a symlinked site-packages is found as it is spelt).
_ROOT = str(Path(__file__).absolute().parent.parent)


def child_command(module: str, *args: str) -> list[str]:
    """The command line of a helper process running ``module``'s ``main(sys.argv)`` with
    this interpreter and this very cfm.

    ``-P``: the working directory is not put first on ``sys.path``. With ``-c`` it is,
    so a server started from a checkout, or from any directory holding a ``cfm_server``
    (another version's checkout, an operator's scratch copy), would run its helper from
    that directory's code, not its own. Instead the directory this process imported
    ``cfm_server`` from goes first, unless it is on ``sys.path`` already (a
    site-packages): parent and child run the same code, an uninstalled checkout's too.
    (``-c``, not ``-m``: the module's package imports the module before ``-m`` would
    run it.)"""
    boot = (f"import sys; root = {_ROOT!r}\n"
            "if root not in sys.path: sys.path.insert(0, root)\n"
            f"from {module} import main; sys.exit(main(sys.argv))")
    return [sys.executable, "-P", "-c", boot, *args]


def die_with(parent: int) -> None:
    """Be killed by the kernel the moment ``parent`` (the server or node that started this
    process) dies (Linux): not only once its pipe's end is read — at nice 19 on a busy
    machine that can take seconds, during which this process would hold its files open
    (and, where its stderr is the parent's own rather than a pipe to it, that stderr:
    whoever waits for the parent's output to end, a supervisor or a test, waits too).

    And not before its parent means it to: SIGINT and SIGTERM are ignored. Ctrl+C in a
    terminal signals the whole foreground process group, and systemd's stop
    (``KillMode=control-group``, the default) the service's whole cgroup; ended by them,
    the process would be taken for dead by its parent (``childwatch``), which is
    stopping too, and started again. The parent ends it with SIGKILL (``stop_child``)."""
    import signal

    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(0)  # the parent died before the line above: nothing to work for


STOP_WAIT_S = 10.0  # at close, how long a killed helper process may take to be reaped


async def stop_child(process: subprocess.Popen[bytes], log: logging.Logger) -> None:
    """End a helper process the server started with its input on a pipe: close that
    pipe, kill it (SIGKILL: it ignores SIGTERM, ``die_with``; what it was writing is one
    SQLite transaction, rolled back at the next open, as after SIGTERM's default death),
    and reap it without blocking the event loop for up to ``STOP_WAIT_S``."""
    with contextlib.suppress(OSError):
        if process.stdin is not None:
            process.stdin.close()
    with contextlib.suppress(OSError):
        process.kill()
    deadline = time.monotonic() + STOP_WAIT_S
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if process.poll() is None:  # a process stuck in the kernel (a dead disk)
        log.warning("the search indexer (pid %d) did not end after SIGKILL; leaving it",
                    process.pid)
