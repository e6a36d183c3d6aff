"""The exceptions of cluster mode.

    ClusterError            Redis answered something cluster mode cannot use (a bug, or a
     │                      Redis configured against the documented requirements)
     └── ClusterUnavailable Redis cannot be reached or refuses writes for now (down,
                            restarting, loading its AOF, out of memory, persistence
                            failing). Retryable: nothing was stored unless Redis ran the
                            script and the reply was lost, which a retry with the same
                            (sender, id) resolves to the original seq and ts.

The hub answers ``ClusterUnavailable`` with ``error{code:"internal", retry_ms}``: the SDK
already re-sends an unacknowledged ``say`` or ``nudge`` after an ``internal`` error, with
its original id, so no new error code is needed on the wire.
"""

from __future__ import annotations


class ClusterError(Exception):
    """Redis answered what cluster mode cannot use."""


class ClusterUnavailable(ClusterError):
    """Redis is out of reach for now; ``retry_ms`` says when a retry is worth it.
    ``unreachable``: failed because the node's Redis is out of reach (the node's outage
    tracker logs that once, ``outage.py``), not refused by a Redis that answered."""

    def __init__(self, msg: str, retry_ms: int, *, unreachable: bool = False) -> None:
        super().__init__(msg)
        self.retry_ms = retry_ms
        self.unreachable = unreachable
