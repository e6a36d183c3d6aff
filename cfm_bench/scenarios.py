"""The named scenarios of ``cfm bench --scenario`` and their default shapes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    clients: int
    rooms: int
    publishers: int = 0  # per room
    rate: float | None = None  # total says per second; None: as fast as the server takes
    duration: float = 10.0
    kind: str = "traffic"  # traffic | idle | connect | replay | bigroom


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("fanout", "1 room x 100 members, 4 publishers at max rate", 100, 1, 4),
        Scenario("rooms", "1,000 rooms x 10 members, 1 publisher each at max rate",
                 10_000, 1_000, 1),
        Scenario("latency", "1,000 msg/s into a 100-member room: send-to-receipt latency",
                 100, 1, 10, rate=1000.0),
        Scenario("idle", "10,000 signed-in connections in rooms of 10: RSS per connection",
                 10_000, 1_000, kind="idle"),
        Scenario("connect", "handshakes/s: TCP + WebSocket + hello/welcome + join/joined",
                 2_000, 200, kind="connect"),
        Scenario("replay", "join{since} over 10,000 missed messages: time to receive all",
                 2, 1, kind="replay"),
        Scenario("bigroom", "5,000 members join one room, then presence changes",
                 5_000, 1, kind="bigroom"),
    )
}
