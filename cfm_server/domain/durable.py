"""A change of lasting state is confirmed only once it is durable, on both backends.

The handlers of ``contact``, ``presence``, ``read``, ``leave``, ``join``, ``moderators``
and a ``hello`` that changes the user's record change the live state at once (the frames
read after them see it) and write the change through ``writes``. What tells anybody of
the change — the echo to the sender, ``added_you``, ``member``, presence to watchers, a
read mark to the other sessions, the ``moderators`` reply, the ``welcome`` — waits for
the write's ``Commit`` (``confirm``): a frame answered "done" is durable, as an ``ack`` is.
If the write fails (a cluster node that cannot reach Redis, a single node's full disk)
nobody is told, the live state goes back to what the store holds (``Unsettled``) and
the sender gets ``error{code: "internal", retry_ms, ref}``: the same frame, sent again
later, does it. Otherwise a node would keep, and show, a change its store does not have
(lost at the next start; on a cluster, unknown to every other node).

Says do not come here: their ack already waits for their commit (messages.py).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from cfm_common.codec import encode
from cfm_common.frames import Error
from cfm_common.rules import ErrorCode
from cfm_server.domain.ports import Connection
from cfm_server.metrics import Metrics
from cfm_server.store import Commit

NOT_STORED = "the server could not store that now; send it again"
# Called with whether a tracked write was stored, once it is done (Unsettled.track).
Settle = Callable[[bool], None]


def _stored(commit: Commit) -> bool:
    return not commit.cancelled() and commit.exception() is None


class _Chain:
    """The writes of one record in flight: what the store holds once they are done."""

    __slots__ = ("durable", "writes")

    def __init__(self, durable: Any) -> None:
        self.durable = durable
        self.writes = 0


class Unsettled:
    """Record writes whose commits are not done yet, per record.

    A record's writes complete in the order they were made (a group commit's batch, a
    Redis pipeline), so when the last one in flight fails, the record goes back to the
    value of the last one that succeeded, or to the value before the first: a block
    and an unblock that both fail leave the contact as it was, not blocked.
    """

    __slots__ = ("_chains",)

    def __init__(self) -> None:
        self._chains: dict[Hashable, _Chain] = {}

    def track(self, key: Hashable, before: Any, after: Any,
              restore: Callable[[Any], None]) -> Settle:
        """A write of ``after`` over ``before`` (the live state holds ``after`` already);
        ``restore(value)`` puts a value back into the live state. Returns what to call
        with whether the write was stored, once it is done (``confirm`` does, or
        ``settled``): one done-callback per write, not two."""
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = _Chain(before)
        chain.writes += 1

        def settle(stored: bool) -> None:
            chain.writes -= 1
            if stored:
                chain.durable = after
            if chain.writes:
                return  # a later write of the record decides
            if self._chains.get(key) is chain:
                del self._chains[key]
            if not stored:
                restore(chain.durable)

        return settle


def settled(commit: Commit, settle: Settle) -> None:
    """``settle`` once ``commit`` is done: a write whose change nobody is told of."""
    commit.add_done_callback(lambda done: settle(_stored(done)))


def confirm(session: Connection, ref: str, commit: Commit, metrics: Metrics,
            told: Callable[[], None], settle: Settle | None = None,
            refused: Callable[[], None] | None = None) -> None:
    """Once ``commit`` is done: ``settle`` (``Unsettled.track``'s), then ``told()`` if
    it is durable; else ``refused()`` and ``error{internal, retry_ms, ref}`` to
    ``session`` (the write's ``retry_ms`` if it has one: Redis out of reach)."""

    def done_with(done: Commit) -> None:
        stored = not done.cancelled() and done.exception() is None  # (_stored, inlined)
        if settle is not None:
            settle(stored)
        if stored:
            told()
            return
        if done.cancelled():
            return  # the server is closing
        if refused is not None:
            refused()
        retry_ms = getattr(done.exception(), "retry_ms", None)
        session.send(encode(Error(ErrorCode.INTERNAL.value, NOT_STORED, ref, retry_ms)))
        metrics.count_out("error")
        metrics.error[ErrorCode.INTERNAL.value].inc()

    commit.add_done_callback(done_with)
