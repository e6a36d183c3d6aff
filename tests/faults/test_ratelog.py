"""The rate limit on log lines outsiders can trigger (cfm_server/ratelog.py)."""

from __future__ import annotations

import logging

from cfm_server.ratelog import RateLimitFilter


def record(msg: str, name: str = "asyncio", exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise OSError(24, "Too many open files")
        except OSError as error:
            exc_info = (type(error), error, error.__traceback__)
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, exc_info)


def test_a_burst_per_kind_and_interval_then_a_count_of_what_was_dropped() -> None:
    now = [0.0]
    rate = RateLimitFilter(burst=3, interval=60.0, clock=lambda: now[0])
    passed = [rate.filter(record("socket.send() raised exception.")) for _ in range(1000)]
    assert passed.count(True) == 3 and passed[:3] == [True] * 3
    # Another kind has a budget of its own.
    assert rate.filter(record("socket.accept() out of system resource\nsocket: <fd=10>"))
    now[0] = 61.0
    line = record("socket.send() raised exception.")
    assert rate.filter(line)
    assert "997 more like this" in line.getMessage()


def test_only_the_first_line_of_a_kind_keeps_its_traceback() -> None:
    rate = RateLimitFilter(burst=5, interval=60.0, clock=lambda: 0.0)
    first, second = record("accept failed", exc=True), record("accept failed", exc=True)
    assert rate.filter(first) and rate.filter(second)
    assert first.exc_info is not None and second.exc_info is None


def test_the_kinds_it_remembers_are_bounded() -> None:
    now = [0.0]
    rate = RateLimitFilter(burst=1, interval=1.0, clock=lambda: now[0], max_kinds=10)
    for i in range(100):
        now[0] = i * 2.0
        rate.filter(record(f"line {i}"))
    assert len(rate.kinds) <= 10
