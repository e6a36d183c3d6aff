"""What a helper process of the server (a search indexer) does to end with its parent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time


def die_with(parent: int) -> None:
    """Be killed by the kernel the moment ``parent`` (the server or node that started this
    process) dies (Linux): not only once its pipe's end is read — at nice 19 on a busy
    machine that can take seconds, during which this process would hold the parent's
    stderr open (whoever waits for the parent's output to end, a supervisor or a test,
    waits too), and its files."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(0)  # the parent died before the line above: nothing to work for


STOP_WAIT_S = 10.0  # at close, how long a terminated helper process may take to exit


async def stop_child(process: subprocess.Popen[bytes], log: logging.Logger) -> None:
    """End a helper process the server started with its input on a pipe: close that
    pipe (its end is the process's cue to finish), terminate it, give it
    ``STOP_WAIT_S`` without blocking the event loop, then kill it."""
    with contextlib.suppress(OSError):
        if process.stdin is not None:
            process.stdin.close()
    with contextlib.suppress(OSError):
        process.terminate()
    deadline = time.monotonic() + STOP_WAIT_S
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if process.poll() is None:
        log.warning("the search indexer did not stop; killing it")
        process.kill()
        process.wait()
