"""What a helper process of the server (a search indexer) does to end with its parent."""

from __future__ import annotations

import contextlib
import os
import sys


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
