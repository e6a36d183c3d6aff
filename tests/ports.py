"""Ports for tests that must name one before something listens on it (a proxy's config,
a server started later, a Redis to restart on the same port).

Binding port 0 and closing the socket hands out a port from the kernel's ephemeral range,
which every outgoing connection and every ``port=0`` listener of the parallel test
workers draws from too: another test could take it before ours listens. These ports come
from below that range, from a block of their own per pytest-xdist worker, so the only
tests that can pick them are the ones in the same worker, which run one at a time.
"""

from __future__ import annotations

import os
import random
import socket

FIRST = 20000  # below Linux's ephemeral range (32768-60999 by default)
BLOCK = 1000  # ports per worker: gw0 gets 20000-20999, gw1 21000-21999, ...


BLOCKS = 12  # 20000-31999


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw3"; unset without xdist
    digits = worker.removeprefix("gw")
    index = int(digits) if digits.isdigit() else 0
    # Two test runs at once on one machine (a developer's suite beside another's) would
    # otherwise share blocks: a server restarted on its port could find the other run's
    # server there, and its clients sign in to the wrong one. Each run starts at a block
    # of its own choosing (the workers of one run share its uid, so they stay apart).
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
    return (int.from_bytes(run.encode()[-4:], "big") + index) % BLOCKS


def free_port() -> int:
    """A loopback port nothing listens on now, from this worker's own block."""
    base = FIRST + _worker_index() * BLOCK
    candidates = random.sample(range(base, base + BLOCK), 50)
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}-{base + BLOCK - 1}")
