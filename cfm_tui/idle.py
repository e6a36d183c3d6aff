"""Auto-away: after N idle minutes the status goes to Away, and back on activity.

Only a status this module set is undone: a user who chose Away (or Busy) by hand keeps it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cfm_common.rules import Status


class IdleTracker:
    def __init__(self, minutes: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s = minutes * 60
        self.clock = clock
        self.last_activity = clock()
        self.auto_away = False
        self._status_before: str | None = None

    @property
    def enabled(self) -> bool:
        return self.limit_s > 0

    def activity(self, status: str) -> str | None:
        """The user did something; the status to go back to, if we set Away ourselves."""
        self.last_activity = self.clock()
        if not self.auto_away:
            return None
        self.auto_away = False
        back, self._status_before = self._status_before, None
        # Someone changed the status by hand while we were away: leave theirs alone.
        return back if status == Status.AWAY else None

    def check(self, status: str) -> str | None:
        """Called now and then: ``"away"`` when it is time to go Away, else None."""
        if not self.enabled or self.auto_away or status != Status.ONLINE:
            return None
        if self.clock() - self.last_activity < self.limit_s:
            return None
        self.auto_away = True
        self._status_before = status
        return Status.AWAY.value

    def status_chosen(self) -> None:
        """The user picked a status by hand: it is theirs, never undone automatically."""
        self.auto_away = False
        self._status_before = None
