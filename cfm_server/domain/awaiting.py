"""A frame handler that must read before it decides (a change's target, a reply's
message): at once where the read is (a single node's store), else on the read's future
(a cluster node reads Redis), with the handler's refusals sent as they would have been.

The domain never awaits (ports.py): ``then_with(session, ref, read, go)`` runs ``go`` on
the value now, or later on the loop. A ``ProtocolError`` or ``RateLimited`` that ``go``
raises later becomes the same ``error`` frame ``Session`` would have sent; a read that
fails is ``error{internal, retry_ms}``, as a failed answer is. A ``ChargeLater`` (a
cluster's shared limit) runs ``go`` again once Redis decided, as ``Session`` does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from cfm_common.codec import encode
from cfm_common.errors import ProtocolError
from cfm_common.frames import Error
from cfm_common.rules import ErrorCode
from cfm_server.admission import ChargeLater, RateLimited
from cfm_server.domain.ports import Connection

log = logging.getLogger(__name__)

T = TypeVar("T")


def then_with(session: Connection, ref: str, read: T | asyncio.Future[T],
              go: Callable[[T], None]) -> None:
    if not isinstance(read, asyncio.Future):
        go(read)  # its errors go up to the session, as for any handler
        return

    def settle(done: asyncio.Future[T]) -> None:
        if done.cancelled():
            return  # the node is closing
        exc = done.exception()
        if exc is not None:
            log.warning("a read for %r failed: %s", ref, exc)
        _run(session, ref, lambda: go(done.result()), exc)

    read.add_done_callback(settle)


def _run(session: Connection, ref: str, go: Callable[[], None],
         exc: BaseException | None = None) -> None:
    """``go()``, its refusals sent as error frames."""
    try:
        if exc is not None:
            raise _Failed(getattr(exc, "retry_ms", None))
        go()
    except ChargeLater as later:
        later.verdict.add_done_callback(lambda _, charge=later: _charged(session, ref, go,
                                                                         charge))
    except ProtocolError as e:
        _send(session, Error(e.code.value, e.msg, e.ref or ref))
    except RateLimited as e:  # the refused request is the frame ``ref`` names
        _send(session, Error(ErrorCode.RATE_LIMITED.value, e.why or "too many frames",
                             ref, e.retry_ms))
    except _Failed as e:
        _send(session, Error(ErrorCode.INTERNAL.value,
                             "the server could not read that now; try again", ref,
                             e.retry_ms))
    except Exception:
        log.exception("handling %r after a read failed", ref)
        _send(session, Error(ErrorCode.INTERNAL.value,
                             "the server failed to handle this frame", ref))


def _charged(session: Connection, ref: str, go: Callable[[], None],
             charge: ChargeLater) -> None:
    with charge.settled():
        _run(session, ref, go)


class _Failed(Exception):
    def __init__(self, retry_ms: int | None) -> None:
        super().__init__(retry_ms)
        self.retry_ms = retry_ms


def _send(session: Connection, error: Error) -> None:
    session.send(encode(error))
