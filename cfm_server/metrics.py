"""Prometheus metrics on the server's own registry (several servers share one process).

The hot path counts frames and stored messages in plain ints (``count_in``,
``count_out``, ``count_stored``): a prometheus counter's ``inc`` takes a lock, and a
``say`` counts four or five things. ``render`` adds what accumulated since the last
scrape to the prometheus counters, so ``/metrics`` shows the same totals.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cfm_common.frames import CLIENT_FRAMES, SERVER_FRAMES
from cfm_common.rules import ErrorCode

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge("cfm_connections", "Open WebSocket connections", registry=r)
        self.sessions = Gauge("cfm_sessions", "Signed-in sessions", registry=r)
        self.users_online = Gauge("cfm_users_online", "Users with at least one session", registry=r)
        self.rooms = Gauge("cfm_rooms", "Rooms (group and DM)", registry=r)
        self.messages_stored = Counter(
            "cfm_messages_stored", "Messages stored (say and nudge)", registry=r
        )
        self.frames_in = Counter("cfm_frames_in", "Frames received by type", ["type"], registry=r)
        self.frames_out = Counter("cfm_frames_out", "Frames sent by type", ["type"], registry=r)
        self.errors = Counter("cfm_errors", "Error frames sent by code", ["code"], registry=r)
        self.closes = Counter(
            "cfm_closes", "Connections closed by the server", ["code"], registry=r
        )
        self.commit_seconds = Histogram(
            "cfm_commit_seconds",
            "Time from a message's append to its durable commit",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        # Pre-bound children: a dict lookup on the hot path instead of a labels() call.
        self.frame_in: dict[str, Counter] = {
            # "over_budget": dropped unread, over the session's inbound byte budget;
            # "over_wire_budget": times a connection stopped being read (cfm_server/wsconn.py).
            t: self.frames_in.labels(t)
            for t in [*CLIENT_FRAMES, "invalid", "over_budget", "over_wire_budget"]
        }
        self.frame_out: dict[str, Counter] = {t: self.frames_out.labels(t) for t in SERVER_FRAMES}
        self.error: dict[str, Counter] = {c.value: self.errors.labels(c.value) for c in ErrorCode}
        # Counts not yet added to the prometheus counters above (see the module docstring).
        self._in: dict[str, int] = dict.fromkeys(self.frame_in, 0)
        self._out: dict[str, int] = dict.fromkeys(self.frame_out, 0)
        self._stored = 0

    def count_in(self, t: str) -> None:
        counts = self._in
        if t in counts:
            counts[t] += 1
        else:
            counts["invalid"] += 1

    def count_out(self, t: str, n: int = 1) -> None:
        self._out[t] += n

    def count_stored(self) -> None:
        self._stored += 1

    def _sync(self) -> None:
        """Add the plain counts gathered since the last call to the prometheus counters."""
        for counts, counters in ((self._in, self.frame_in), (self._out, self.frame_out)):
            for t, n in counts.items():
                if n:
                    counters[t].inc(n)
                    counts[t] = 0
        if self._stored:
            self.messages_stored.inc(self._stored)
            self._stored = 0

    def set_gauge_sources(
        self, *, rooms: Callable[[], int], users_online: Callable[[], int]
    ) -> None:
        self.rooms.set_function(rooms)
        self.users_online.set_function(users_online)

    def render(self) -> bytes:
        self._sync()
        return generate_latest(self.registry)
