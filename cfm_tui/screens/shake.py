"""The nudge's shake: the window moves by a few cells and back, as MSN's did."""

from __future__ import annotations

from collections.abc import Callable

from textual.widget import Widget

# Window offsets (x, y) in cells, one step per SHAKE_STEP_S.
SHAKE_OFFSETS = ((2, 0), (-2, 0), (2, 1), (-2, 0), (1, 0), (-1, 0), (0, 0))
SHAKE_STEP_S = 0.05


def shake_window(host: Widget, move: Callable[[int, int], object]) -> None:
    """Shake by calling ``move(x, y)`` for each offset, stepping on ``host``'s timer;
    the last offset is (0, 0), where it was."""
    steps = list(SHAKE_OFFSETS)
    move(*steps.pop(0))

    def step() -> None:
        if steps:
            move(*steps.pop(0))
        if not steps:
            timer.stop()

    # One interval for the other steps: a 0 s timer makes Textual's Timer divide by 0.
    timer = host.set_interval(SHAKE_STEP_S, step)
