"""What the controller hands back for every intent: the update to render now, and the
requests still to make (each a job whose own outcome is rendered when it is done).

Jobs are plain async callables, so that a test can run them in order and look at what
each one changed, and the app can run them as Textual workers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cfm_tui.state import Update

Job = Callable[[], Awaitable["Outcome"]]


@dataclass
class Outcome:
    update: Update = field(default_factory=Update)
    jobs: list[Job] = field(default_factory=list)
    # False when a draft should stay in the composer (refused, or not a command).
    ok: bool = True

    def then(self, other: Outcome) -> Outcome:
        """This outcome and ``other`` as one (``ok`` only if both are)."""
        self.update.merge(other.update)
        self.jobs.extend(other.jobs)
        self.ok = self.ok and other.ok
        return self


async def run_all(outcome: Outcome) -> Outcome:
    """Run ``outcome``'s jobs, and theirs, to the end; everything they changed, merged.

    For tests and scripts: the app runs each job as a worker of its own instead.
    """
    merged = Outcome(outcome.update, [], outcome.ok)
    queue = list(outcome.jobs)
    while queue:
        done = await queue.pop(0)()
        merged.update.merge(done.update)
        queue.extend(done.jobs)
    return merged
