"""An experiment, not the server: ``cfm serve`` with writes coalesced per loop iteration.

``Session.send`` normally writes every frame to its socket at once: one ``send()``
system call per recipient per message, which the profile in docs/performance.md shows
is most of the server's CPU at high fan-out. Here ``send`` only frames the bytes
(``protocol.send_binary``) and marks the session; one callback per event-loop iteration
then writes each marked session's frames with a single ``transport.write``. The
send-buffer bound (close 1013) is checked at that write.

    python benchmarks/coalesced_serve.py --port 18640 --no-ai --no-rate-limits &
    cfm bench --url ws://127.0.0.1:18640/ws --server-pid $! --scenario fanout

It replaces the method at import time so an A/B run needs no change to cfm_server;
the change proper belongs in ``cfm_server/session.py``.

Superseded: since server commit eef9558 ``cfm_server/session.py`` coalesces its writes
itself (``Outbox``) and frames a fanned-out message once (``send_framed``), so this
experiment only means something against the server before that; on a newer one it
refuses to start rather than measure a mixture.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.protocol import State

from cfm_common.rules import CloseCode
from cfm_server import session as session_module
from cfm_server.cli import app

_dirty: dict[int, Any] = {}  # id(session) → session with frames not yet written
_flush_scheduled = False


def _flush() -> None:
    global _flush_scheduled
    _flush_scheduled = False
    sessions = list(_dirty.values())
    _dirty.clear()
    for session in sessions:
        ws = session.ws
        chunks = ws.protocol.data_to_send()
        if not chunks:
            continue
        try:
            ws.transport.write(b"".join(chunks))
        except Exception:  # a transport that broke under us: the read loop ends it
            continue
        if ws.transport.get_write_buffer_size() > session.send_buffer:
            session.close(CloseCode.TRY_AGAIN_LATER, "too slow a reader")


def coalescing_send(self: Any, data: bytes) -> None:
    global _flush_scheduled
    if self.closing or self.ws.protocol.state is not State.OPEN:
        return
    self.ws.protocol.send_binary(data)
    if id(self) not in _dirty:
        _dirty[id(self)] = self
        if not _flush_scheduled:
            _flush_scheduled = True
            asyncio.get_running_loop().call_soon(_flush)


session_module.Session.send = coalescing_send  # type: ignore[method-assign]

if __name__ == "__main__":
    if hasattr(session_module, "Outbox"):
        raise SystemExit("this server already coalesces its writes (see the docstring)")
    app(prog_name="cfm serve (coalesced writes)")
