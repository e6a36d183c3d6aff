"""Connections cut mid-frame by a proxy: the SDK resumes without loss or duplicates."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from cfm_common.client import Client
from tests.faults.ledger import Ledger, check_room, fetch_history, history_view, view_of
from tests.faults.proxy import CuttingProxy
from tests.sdk.conftest import Recorder

LOBBY = "#lobby"
CUTS = 25
WINDOW = 5


async def stream(client: Client, ledger: Ledger, stop: asyncio.Event, dm_to: str) -> int:
    n = 0
    while not stop.is_set():
        says = []
        for i in range(n, n + WINDOW):
            ident = f"{client.name}-{i}"
            if i % 4 == 0:
                says.append(client.say(f"dm {i}", to=dm_to, id=ident))
            else:
                says.append(client.say(f"lobby {i}", room=LOBBY, id=ident))
        for ack in await asyncio.gather(*says):
            ledger.add(client.name, ack)
        n += WINDOW
    return n


async def test_connections_cut_mid_frame_resume_without_loss(server_factory: Any,
                                                             sdk: Any) -> None:
    server = await server_factory(rate_limits=False)
    proxy = CuttingProxy("127.0.0.1", server.port, random.Random(1863))
    await proxy.start()
    try:
        # alice and bob go through the cutting proxy; carol is connected directly.
        alice, bob = sdk(proxy.url(), "alice"), sdk(proxy.url(), "bob")
        carol = sdk(server.url, "carol")
        proxy.cutting = False
        for client in (alice, bob, carol):
            await client.connect()
            await client.join(LOBBY)
        recorders = [Recorder(c) for c in (alice, bob, carol)]
        proxy.cutting = True
        ledger, stop = Ledger(), asyncio.Event()
        senders = asyncio.gather(stream(alice, ledger, stop, "bob"),
                                 stream(bob, ledger, stop, "alice"),
                                 stream(carol, ledger, stop, "alice"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 40
        while proxy.cuts < CUTS and loop.time() < deadline and not senders.done():
            await asyncio.sleep(0.05)
        assert proxy.cuts >= CUTS, f"only {proxy.cuts} cuts"
        proxy.cutting = False
        stop.set()
        await asyncio.wait_for(senders, 60)

        checked = 0
        for room in sorted(ledger.rooms()):
            history = await fetch_history(carol if room == LOBBY else alice, room)
            checked += check_room(room, history, ledger)
            for client, recorder in zip((alice, bob, carol), recorders, strict=True):
                if room != LOBBY and client.name not in room:
                    continue
                n = len(history)
                await recorder.wait(lambda r, room=room, n=n: len(r.msgs(room)) >= n, timeout=30)
                assert view_of(recorder.msgs(), room) == history_view(history), client.name
        assert checked == len(ledger.acks)
    finally:
        await proxy.close()
    print(f"\nfaults: proxy cuts={proxy.cuts} connections={proxy.connections} "
          f"acked={len(ledger.acks)} checked={checked} lost=0 doubled=0")
