"""What to run: a scenario by name, with any of its figures changed.

Its own module so that ``phases.py`` can name it without importing the runner, which
imports ``phases.py`` (no import cycle inside a package: a layer contract).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cfm_bench.scenarios import SCENARIOS, Scenario


@dataclass
class BenchOptions:
    scenario: str = "fanout"
    clients: int | None = None
    rooms: int | None = None
    publishers: int | None = None  # per room
    rate: float | None = None  # total says/s; 0: max; None: the scenario's
    duration: float | None = None
    warmup: float = 1.0
    size: int = 32
    procs: int | None = None
    window: int | None = None  # says in flight per publisher; None: share IN_FLIGHT
    messages: int = 10_000  # replay
    presence: int = 100  # bigroom: presence changes
    room: str = "#lobby"  # bigroom
    quiet: bool = False  # bigroom: the clients opt in to the big-room extension
    sources: int | None = None
    kernel_receipt: bool = False  # receipts also stamped with the kernel's receive time

    def shape(self) -> Scenario:
        base = SCENARIOS[self.scenario]
        rate = base.rate if self.rate is None else (self.rate or None)
        return replace(
            base,
            clients=self.clients or base.clients,
            rooms=self.rooms or base.rooms,
            publishers=base.publishers if self.publishers is None else self.publishers,
            rate=rate,
            duration=self.duration or base.duration,
        )
