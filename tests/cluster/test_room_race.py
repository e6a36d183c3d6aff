"""New group rooms joined through two nodes at the same moment: one room, one epoch.

Each node makes a room it does not know yet; the epoch that reached Redis first must be
the one every member is told, so that nobody sees a history reset at their next resume."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.wire import signed_in

ROOMS = [f"#race{n}" for n in range(24)]
ROOMY = {"join_burst": 100, "user_room_burst": 30}  # every room at once


async def test_rooms_joined_on_both_nodes_at_once_have_one_epoch_each(
        nodes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="cfm_server.cluster.node")
    a, b = await nodes(**ROOMY), await nodes(**ROOMY)
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        for room in ROOMS:  # both nodes get every join in the same moment
            await asyncio.gather(alice.send({"t": "join", "room": room}),
                                 bob.send({"t": "join", "room": room}))
        told: dict[str, set[str]] = {room: set() for room in ROOMS}
        for client in (alice, bob):
            for _ in ROOMS:
                joined = await client.recv_until("joined")
                told[joined["room"]].add(joined["epoch"])
        assert all(len(epochs) == 1 for epochs in told.values()), told
        # A resume from what each was told resets nothing.
        for client in (alice, bob):
            for room in ROOMS:
                await client.send({"t": "join", "room": room, "since": 0,
                                   "epoch": next(iter(told[room]))})
                again = await client.recv_until("joined", room=room)
                assert not again.get("reset"), (room, again, told[room])
        # Routine (a bench's joins make hundreds): not a warning for the operator.
        settled = [r for r in caplog.records if "in Redis: taking Redis's" in r.getMessage()]
        assert all(r.levelno < logging.WARNING for r in settled), [
            (r.levelname, r.getMessage()) for r in settled]
