"""The server's own bots (the AI contacts) are not closable by other users' traffic, and
presence flaps of a reconnecting session are damped for watchers (issue 10, item 5)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cfm_common.client import Client
from tests.modes import nodes_of
from tests.wire import WireClient, eventually, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)

LOBBY = "#lobby"


async def _flood_reads(client: WireClient, n: int) -> list[dict[str, Any]]:
    """``n`` read frames at once, then a say as a sync point; the errors they got."""
    for seq in range(1, n + 1):
        await client.send({"t": "read", "room": LOBBY, "seq": seq})
    await client.send({"t": "say", "room": LOBBY, "text": "sync", "id": "sync"})
    await client.recv_until("ack", id="sync")
    return [f for f in client.seen if f["t"] == "error"]


async def test_a_server_bot_has_no_per_kind_buckets_a_person_does(server) -> None:
    provisioned = server.hub.provision_bot("helperbot", "Helper", "", "online")
    await provisioned.commit  # (the token is good once stored)
    token = provisioned.token
    async with signed_in(server.url, "helperbot", token=token) as bot, \
            signed_in(server.url, "alice") as alice:
        for client in (bot, alice):
            await client.send({"t": "join", "room": LOBBY})
            await client.recv_until("joined")
        assert await _flood_reads(bot, 60) == []
        assert {e["code"] for e in await _flood_reads(alice, 60)} == {"rate_limited"}


async def test_the_sdk_sends_a_burst_of_read_marks_as_a_few_frames(server) -> None:
    alice = Client(server.url, "alice", token_file=None)
    await alice.connect()
    try:
        await alice.join(LOBBY)
        async with signed_in(server.url, "bob") as bob:
            await bob.send({"t": "join", "room": LOBBY})
            await bob.recv_until("joined")
            for i in range(60):
                await bob.send({"t": "say", "room": LOBBY, "text": f"m{i}", "id": f"b{i}"})
            await bob.recv_n("ack", 60)
        async with signed_in(server.url, "alice", token=alice.token) as other:
            for seq in range(1, 61):  # one mark per message, as a bot marks them
                await alice.mark_read(LOBBY, seq)
                await asyncio.sleep(0)
            await other.recv_until("read", seq=60)
            reads = [f for f in other.seen if f["t"] == "read"]
            # Without coalescing: 60 frames, and the 41st on got rate_limited.
            assert len(reads) <= 10, reads
    finally:
        await alice.close()


@pytest.mark.single_node("the AI contacts are off in cluster mode (h10)")
async def test_provisioned_ai_contacts_ride_out_a_lobby_flood(server_factory) -> None:
    server = await server_factory(ai_enabled=True)
    personas = list(server.config.ai.handles)
    await eventually(lambda: all(server.hub.users[p].sessions for p in personas), 10)
    first_sessions = {p: list(server.hub.users[p].sessions) for p in personas}
    async with signed_in(server.url, "watcher") as watcher:
        flooders = [await WireClient.open(server.url) for _ in range(3)]
        try:
            for i, flooder in enumerate(flooders):
                await flooder.hello(f"flood{i}")
                await flooder.send({"t": "join", "room": LOBBY})
                await flooder.recv_until("joined")
            for n in range(50):  # within the say burst of each session
                for i, flooder in enumerate(flooders):
                    await flooder.send({"t": "say", "room": LOBBY, "text": f"spam {n}",
                                        "id": f"f{i}-{n}"})
            for flooder in flooders:
                await flooder.recv_n("ack", 50, timeout=20)
            latest = server.hub.rooms[LOBBY].seq
            # Every persona has read the whole flood, on the session it started with.
            await eventually(
                lambda: all(server.hub.users[p].reads.get(LOBBY) == latest for p in personas),
                20)
        finally:
            for flooder in flooders:
                await flooder.close()
        assert {p: list(server.hub.users[p].sessions) for p in personas} == first_sessions
        flaps = [f for f in watcher.seen if f["t"] == "presence" and f["name"] in personas]
        assert flaps == []


async def test_a_quick_reconnect_is_not_shown_to_watchers(server_factory) -> None:
    server = await server_factory(presence_grace=60)
    async with signed_in(server.url, "bob") as bob:
        async with signed_in(server.url, "alice") as alice:
            token = alice.token
            await bob.send({"t": "contact", "op": "add", "name": "alice"})
            echo = await bob.recv_until("contact", op="add")
            if echo["status"] == "offline":
                # On a cluster, bob's node may hear of alice's sign-in on the other node
                # a moment after bob's add (docs/cluster.md): then it tells bob.
                await bob.recv_until("presence", name="alice", status="online")
            heard = len(bob.seen)
        await eventually(lambda: not any(node.hub.users["alice"].sessions
                                         for node in nodes_of(server)))
        async with signed_in(server.url, "alice", token=token):
            pass
        # Back, within the grace, with a new status: that change is all bob hears.
        async with signed_in(server.url, "alice", token=token, status="busy"):
            presence = await bob.recv_until("presence", name="alice")
            assert presence["status"] == "busy"
        await bob.send({"t": "contact", "op": "add", "name": "alice"})  # a sync point
        await bob.recv_until("contact", op="add")
        statuses = [f["status"] for f in bob.seen[heard:] if f["t"] == "presence"]
        assert statuses == ["busy"]


async def test_offline_is_told_once_the_grace_is_over(server_factory) -> None:
    server = await server_factory(presence_grace=0.2)
    async with signed_in(server.url, "bob") as bob:
        async with signed_in(server.url, "alice") as alice:
            await bob.send({"t": "contact", "op": "add", "name": "alice"})
            await bob.recv_until("contact", op="add")
            await alice.send({"t": "presence", "status": "away"})
            await bob.recv_until("presence", status="away")
        assert (await bob.recv_until("presence", name="alice"))["status"] == "offline"
        # Coming back invisible within the grace shows as offline too.
        async with signed_in(server.url, "carol") as carol:
            await bob.send({"t": "contact", "op": "add", "name": "carol"})
            await bob.recv_until("contact", op="add")
            token = carol.token
        async with signed_in(server.url, "carol", token=token, status="invisible"):
            assert (await bob.recv_until("presence", name="carol"))["status"] == "offline"
