"""The event loop's exception handler of `cfm serve` (descriptors.ExhaustionLog): an
accept retry that asyncio runs after the listening socket closed is not a traceback."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from cfm_server.descriptors import ExhaustionLog


async def test_an_accept_retry_after_the_socket_closed_is_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(ExhaustionLog())
    try:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.close()
        # What asyncio does after an accept() failure: it retries a second later (a timer
        # it keeps). Here the socket closed first (cfm serve shutting down), as it once
        # did in the descriptor-flood test of test_signals.
        loop.call_soon(loop._start_serving, asyncio.Protocol, sock)  # type: ignore[attr-defined]
        with caplog.at_level(logging.DEBUG):
            await asyncio.sleep(0.05)
        assert "Traceback" not in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert "accept retry after the listening socket closed" in caplog.text
    finally:
        loop.set_exception_handler(None)


async def test_other_errors_still_reach_the_default_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(ExhaustionLog())
    try:
        def boom() -> None:
            raise ValueError("a real bug")

        with caplog.at_level(logging.ERROR):
            loop.call_soon(boom)
            await asyncio.sleep(0.05)
        assert "a real bug" in caplog.text
    finally:
        loop.set_exception_handler(None)
