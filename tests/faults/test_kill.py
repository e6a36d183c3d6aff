"""Kill the server under traffic: SIGKILL at random moments, SIGTERM mid-stream.

Several SDK clients stream acknowledged says (pipelined, in a group room and a DM room)
while the server process is killed and restarted on the same data dir and port. Then:
every acked message exists exactly once, the seqs are gapless, and every client's view
of every room equals the server's history, paged with ``history{after}``.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from cfm_common.client import Client, ConnectionState
from tests.faults.ledger import Ledger, check_room, fetch_history, history_view, view_of
from tests.faults.procs import ServerProcess
from tests.sdk.conftest import Recorder
from tests.wire import WireClient

LOBBY = "#lobby"
NAMES = ("alice", "bob", "carol")
KILLS = 4
WINDOW = 6  # says in flight per client at once


async def stream(client: Client, ledger: Ledger, stop: asyncio.Event, *,
                 dm_to: str | None = None, at_least: int = WINDOW) -> None:
    """Send says ``WINDOW`` at a time until ``stop`` (and ``at_least`` of them); every
    third one as a DM if ``dm_to``."""
    start = 0
    while not stop.is_set() or start < at_least:
        says = []
        for i in range(start, start + WINDOW):
            text = f"{client.name} {i}"
            if dm_to is not None and i % 3 == 0:
                says.append(client.say(text, to=dm_to, id=f"{client.name}-{i}"))
            else:
                says.append(client.say(text, room=LOBBY, id=f"{client.name}-{i}"))
        for ack in await asyncio.gather(*says):
            ledger.add(client.name, ack)
        start += WINDOW


async def start_clients(sdk: Any, url: str) -> tuple[list[Client], list[Recorder]]:
    clients = [sdk(url, name) for name in NAMES]
    for client in clients:
        await client.connect()
        await client.join(LOBBY)
    return clients, [Recorder(client) for client in clients]


async def converge(clients: list[Client], recorders: list[Recorder], ledger: Ledger) -> int:
    """Wait for every view to catch up, then compare it with the server's history."""
    checked = 0
    for room in sorted(ledger.rooms()):
        history = await fetch_history(clients[0], room)
        checked += check_room(room, history, ledger)
        expected = history_view(history)
        for client, recorder in zip(clients, recorders, strict=True):
            if room != LOBBY and client.name not in room:
                continue
            n = len(history)
            await recorder.wait(lambda r, room=room, n=n: len(r.msgs(room)) >= n,
                                timeout=30)
            assert view_of(recorder.msgs(), room) == expected, f"{client.name}'s view of {room}"
    return checked


@pytest.mark.parametrize("seed", [7, 2026])
async def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    server_proc: Any, sdk: Any, seed: int
) -> None:
    rng = random.Random(seed)
    server: ServerProcess = await server_proc("--no-rate-limits")
    clients, recorders = await start_clients(sdk, server.url)
    ledger, stop = Ledger(), asyncio.Event()
    senders = asyncio.gather(
        stream(clients[0], ledger, stop, dm_to="bob"),
        stream(clients[1], ledger, stop, dm_to="alice"),
        stream(clients[2], ledger, stop),
    )
    for _ in range(KILLS):
        # A random moment of the stream: mid-commit, mid-ack, mid-resume.
        await asyncio.sleep(rng.uniform(0.02, 0.5))
        assert not senders.done()
        server.kill()
        await server.wait()
        await asyncio.sleep(rng.uniform(0.0, 0.2))  # clients find it down and retry
        await server.start()
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(senders, 60)

    checked = await converge(clients, recorders, ledger)
    assert checked == len(ledger.acks)
    print(f"\nfaults: SIGKILL seed={seed} kills={KILLS} acked={len(ledger.acks)} "
          f"checked={checked} lost=0 doubled=0")


async def test_sigterm_under_traffic_closes_1012_and_everyone_resumes(
    server_proc: Any, sdk: Any
) -> None:
    server: ServerProcess = await server_proc("--no-rate-limits")
    clients, recorders = await start_clients(sdk, server.url)
    ledger = Ledger()
    watcher = await WireClient.open(server.url)
    assert (await watcher.hello("watcher"))["t"] == "welcome"

    stop = asyncio.Event()
    senders = asyncio.gather(*(stream(c, ledger, stop) for c in clients))
    await asyncio.sleep(0.3)
    server.terminate()
    assert await watcher.wait_closed(timeout=10) == 1012
    assert await server.wait() == 0
    await server.start()
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(senders, 60)

    for recorder in recorders:
        reasons = [s.reason or "" for s in recorder.states()
                   if s.state is ConnectionState.RECONNECTING]
        # Closed with 1012 (or, when it fell right between two writes, simply dropped).
        # Only the first is the disconnect: any later one is a try that found the server
        # still down ("cannot reach ...") while it restarted.
        assert reasons, "the client never noticed the restart"
        assert "1012" in reasons[0] or "1006" in reasons[0], reasons
    checked = await converge(clients, recorders, ledger)
    assert checked == len(ledger.acks)
    print(f"\nfaults: SIGTERM acked={len(ledger.acks)} checked={checked} lost=0 doubled=0")


async def test_sigterm_the_moment_it_listens_is_a_clean_shutdown(tmp_path: Any) -> None:
    """A supervisor may stop the server as soon as it reads "listening"."""
    server = ServerProcess(tmp_path / "data")
    for _ in range(3):
        await server.start()
        server.terminate()
        assert await server.wait() == 0
