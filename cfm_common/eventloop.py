"""Run a coroutine on uvloop when it is installed, else on plain asyncio.

uvloop's loop and transports are C, so every read, write and callback costs less: the
server's hot path (``cfm serve``) and the benchmark's driver (``cfm bench``) run on it.
It comes with cfm on the platforms it supports; nothing else of it is needed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        uvloop = None
    # Run outside the except clause: an error in ``main`` is not "during handling of
    # ModuleNotFoundError" (that chained every traceback to uvloop's absence).
    if uvloop is None:
        return asyncio.run(main)
    log.debug("event loop: uvloop %s", uvloop.__version__)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
