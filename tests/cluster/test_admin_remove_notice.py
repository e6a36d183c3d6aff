"""What other users see when the operator removes an account on a running cluster
(``cfm admin remove-user --redis``): two real nodes over one real redis-server, clients
on both. The removed user goes offline for its watchers, leaves its group rooms'
member lists and everyone's contact list — each session told once, whichever node it
is on (each node applies the removal from the shared records' log and tells its own
sessions; none relays it)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cfm_server.cluster import admin
from tests.cluster.redis_proc import RedisProcess
from tests.wire import WireClient, eventually

GOING = {("presence", "offline"), ("member", "leave"), ("contact", "unblock"),
         ("contact", "remove")}


def about_alice(client: WireClient) -> list[tuple[str, str]]:
    """What ``client`` was told of alice going: (frame type, status or op), in order
    (an echo of what came before, relayed late from the other node, is not counted)."""
    out = []
    for frame in client.seen:
        if frame.get("name") == "alice":
            told = (frame.get("t"), frame.get("status") if frame.get("t") == "presence"
                    else frame.get("op"))
            if told in GOING:
                out.append(told)
    return out


async def signed_in(url: str, name: str, token: str | None = None) -> WireClient:
    client = await WireClient.open(url)
    assert (await client.hello(name, token))["t"] == "welcome"
    return client


async def request(client: WireClient, frame: dict[str, Any], answer: str) -> None:
    await client.send(frame)
    await client.recv_until(answer)


async def remove_alice_when(redis: RedisProcess, nodes: Any, clients: Any,
                            ready: Any) -> None:
    """Once ``ready(world)`` holds on every node (everyone where the removal will find
    them), the operator removes alice (clients[0]), whose session closes; what each
    client saw before is forgotten."""
    for node in nodes:
        await eventually(lambda w=node.hub.world: ready(w))
    for client in clients:
        client.seen.clear()
    await admin.remove_user(redis.url, "alice", int(time.time() * 1000))
    assert await clients[0].wait_closed() == 4003


async def test_watchers_and_room_members_on_both_nodes_see_the_removed_user_go_once(
        redis: RedisProcess, nodes) -> None:
    a, b = await nodes(), await nodes()
    alice = await signed_in(a.url, "alice")
    bob_a = await signed_in(a.url, "bob")  # lists alice; a session on each node
    bob_b = await signed_in(b.url, "bob", bob_a.token)
    dave = await signed_in(b.url, "dave")  # shares #tea with alice, does not list her
    erin = await signed_in(b.url, "erin")  # blocked alice, shares nothing with her
    carol = await signed_in(a.url, "carol")  # the markers' sender
    clients = (alice, bob_a, bob_b, dave, erin, carol)
    try:
        await request(bob_a, {"t": "contact", "op": "add", "name": "alice"}, "contact")
        await bob_b.recv_until("contact", op="add", name="alice")
        await request(erin, {"t": "contact", "op": "block", "name": "alice"}, "contact")
        for client in (alice, bob_a, dave, carol):
            await request(client, {"t": "join", "room": "#tea"}, "joined")
        # Everyone is where the removal will find them: alice online and a member of
        # #tea on both nodes, bob's and erin's entries for her applied on both.
        await remove_alice_when(redis, (a, b), clients, lambda w: w.users["alice"].online
                                and {"alice", "bob", "dave", "carol"} <= w.rooms["#tea"].members
                                and "alice" in w.users["bob"].contacts
                                and "alice" in w.users["erin"].contacts)
        for bob in (bob_a, bob_b):
            await bob.recv_until("presence", name="alice", status="offline")
            await bob.recv_until("member", room="#tea", name="alice", op="leave")
            await bob.recv_until("contact", op="remove", name="alice", status="offline")
        await dave.recv_until("presence", name="alice", status="offline")
        await dave.recv_until("member", room="#tea", name="alice", op="leave")
        await erin.recv_until("contact", op="unblock", name="alice", blocked=False)
        await erin.recv_until("contact", op="remove", name="alice")

        # Exactly once per session: once both nodes applied the removal, carol (on the
        # node alice was on) sends a frame down each way a node could have relayed
        # the removal's frames to the other (presence, the room's events, a user's
        # channel); what came before them is all there is.
        for node in (a, b):
            await eventually(lambda w=node.hub.world: "alice" not in w.users)
        await carol.send({"t": "typing", "room": "#tea"})  # (a presence is told once stored)
        await carol.send({"t": "presence", "psm": "marker"})
        for name in ("bob", "dave", "erin"):
            await request(carol, {"t": "contact", "op": "add", "name": name}, "contact")
        for client in (bob_a, bob_b, dave):
            await client.recv_until("typing", room="#tea", **{"from": "carol"})
            await client.recv_until("presence", name="carol", psm="marker")
        for client in (bob_a, bob_b, dave, erin):
            await client.recv_until("contact", op="added_you", name="carol")
        for bob in (bob_a, bob_b):
            assert about_alice(bob) == [("presence", "offline"), ("member", "leave"),
                                        ("contact", "remove")]
        assert about_alice(dave) == [("presence", "offline"), ("member", "leave")]
        assert about_alice(erin) == [("contact", "unblock"), ("contact", "remove")]
        assert about_alice(carol) == [("presence", "offline"), ("member", "leave")]
    finally:
        for client in clients:
            await client.close()


async def test_the_dm_partner_and_a_pending_request_hear_of_the_removal_once(
        redis: RedisProcess, nodes) -> None:
    """bob wrote with alice (a DM on each node's sessions of his); alice had added carol,
    who has not answered. bob hears alice leave the DM (a DM room has no other leave)
    and carol the request withdrawn (the echo of a removal that changes nothing on her
    list); then what they would do next answers a clear error."""
    a, b = await nodes(), await nodes()
    alice = await signed_in(a.url, "alice")
    bob_a = await signed_in(a.url, "bob")
    bob_b = await signed_in(b.url, "bob", bob_a.token)
    carol = await signed_in(b.url, "carol")
    dave = await signed_in(a.url, "dave")  # the markers' sender
    clients = (alice, bob_a, bob_b, carol, dave)
    try:
        await request(alice, {"t": "say", "to": "bob", "text": "hi", "id": "a1"}, "ack")
        for bob in (bob_a, bob_b):
            await bob.recv_until("msg", room="dm:alice:bob")
        await request(alice, {"t": "contact", "op": "add", "name": "carol"}, "contact")
        await carol.recv_until("contact", op="added_you", name="alice")
        await remove_alice_when(redis, (a, b), clients,
                                lambda w: "dm:alice:bob" in w.users["bob"].rooms
                                and "carol" in w.users["alice"].contacts)
        for bob in (bob_a, bob_b):
            await bob.recv_until("member", room="dm:alice:bob", name="alice", op="leave")
        await carol.recv_until("contact", op="remove", name="alice", status="offline")
        for node in (a, b):
            await eventually(lambda w=node.hub.world: "alice" not in w.users)
        for name in ("bob", "carol"):  # markers through each user's channel and rooms
            await request(dave, {"t": "contact", "op": "add", "name": name}, "contact")
        for client in (bob_a, bob_b, carol):
            await client.recv_until("contact", op="added_you", name="dave")
        for bob in (bob_a, bob_b):
            assert about_alice(bob) == [("member", "leave")]
        assert about_alice(carol) == [("contact", "remove")]

        # Writing into the DM, or to alice, answers no_such_user; so does accepting.
        for i, frame in enumerate(({"t": "say", "room": "dm:alice:bob", "text": "?"},
                                   {"t": "say", "to": "alice", "text": "?"},
                                   {"t": "nudge", "to": "alice"})):
            await bob_b.send({**frame, "id": f"b{i}"})
            refused = await bob_b.recv_until("error", ref=f"b{i}")
            assert refused["code"] == "no_such_user", refused
        await carol.send({"t": "contact", "op": "add", "name": "alice", "id": "c"})
        assert (await carol.recv_until("error", ref="c"))["code"] == "no_such_user"
    finally:
        for client in clients:
            await client.close()


async def test_an_invisible_user_removed_shows_no_presence_but_leaves_its_rooms(
        redis: RedisProcess, nodes) -> None:
    """An invisible user looked offline already: no presence, but the room's member
    list and the contact lists lose it all the same."""
    a, b = await nodes(), await nodes()
    alice = await WireClient.open(a.url)
    assert (await alice.hello("alice", status="invisible"))["t"] == "welcome"
    bob = await signed_in(b.url, "bob")
    carol = await signed_in(a.url, "carol")
    try:
        await request(bob, {"t": "contact", "op": "add", "name": "alice"}, "contact")
        for client in (alice, bob):
            await request(client, {"t": "join", "room": "#tea"}, "joined")
        await eventually(lambda: "alice" in b.hub.world.rooms["#tea"].members
                         and "alice" in b.hub.world.users["bob"].contacts)
        bob.seen.clear()
        await admin.remove_user(redis.url, "alice", int(time.time() * 1000))
        assert await alice.wait_closed() == 4003
        await bob.recv_until("contact", op="remove", name="alice")
        # A marker through bob's channel from the node that applied it: nothing else came.
        await eventually(lambda: "alice" not in a.hub.world.users)
        await request(carol, {"t": "contact", "op": "add", "name": "bob"}, "contact")
        await bob.recv_until("contact", op="added_you", name="carol")
        assert about_alice(bob) == [("member", "leave"), ("contact", "remove")]
    finally:
        for client in (alice, bob, carol):
            await client.close()


async def test_cfm_chat_on_the_other_node_shows_the_removed_contact_gone(
        redis: RedisProcess, nodes) -> None:
    """What a person sees: ``cfm chat``'s state (fed by the SDK's events, as the app
    feeds it) loses alice from the contact list and #tea's members, shows her offline,
    and notes in #tea that she left."""
    from cfm_common.client import Client
    from cfm_common.frames import Contact
    from cfm_tui.state import ChatState

    a, b = await nodes(), await nodes()
    alice = await signed_in(a.url, "alice")
    try:
        await request(alice, {"t": "join", "room": "#tea"}, "joined")
        async with Client(b.url, "bob", token_file=False) as bob:
            assert bob.welcome is not None
            state = ChatState("bob")
            state.on_welcome(bob.welcome)
            state.apply(await bob.contact("add", "alice"))
            state.apply(await bob.join("#tea"))
            assert "alice" in state.contacts and state.people["alice"].online
            assert state.conversation("#tea").members == {"alice", "bob"}

            await admin.remove_user(redis.url, "alice", int(time.time() * 1000))

            async def until_removed() -> None:
                async for event in bob:
                    state.apply(event)
                    if isinstance(event, Contact) and event.op == "remove":
                        return
                raise AssertionError("bob's client closed before the removal was told")

            await asyncio.wait_for(until_removed(), 10)  # only so that a lost frame fails
            assert "alice" not in state.contacts
            assert not state.people["alice"].online
            tea = state.conversation("#tea")
            assert tea.members == {"bob"}
            assert any("has left the conversation" in line.text for line in tea.lines()), \
                [line.text for line in tea.lines()]
    finally:
        await alice.close()
