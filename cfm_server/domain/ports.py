"""What the domain needs from the world outside it, as interfaces it owns.

``Connection`` is a signed-in (or signing-in) client as the domain sees it:
``cfm_server.session.Session`` satisfies it structurally, and nothing in the domain
imports the session module. The domain never awaits on a connection: it queues bytes
(``send``, ``send_framed``) or hands over an answer to be produced as the reader drains
it (``answer``); back-pressure and closing stay behind this line.

The storage side of the boundary is ``cfm_server.store.Store`` (reads, and the writes
that ``writes.Writes`` funnels), and the delivery side is ``delivery.Delivery``.
"""

from __future__ import annotations

# Defined beside the live state that holds connections (``User.sessions``, ``Room.loud``),
# so that state.py needs nothing of the domain package (no import cycle inside
# cfm_server); this module is where the domain names them.
from cfm_server.state import BucketLimits, Connection

__all__ = ["BucketLimits", "Connection"]
