"""A watcher shown a contact offline while the contact was within its presence grace
(its last session ended a moment ago) is told when the contact comes back within it:
rosters show such a user offline meanwhile (docs/protocol.md), and the return is no news
to the watchers who saw it online all along, so nothing else would tell the newcomer. It
saw the contact offline until the contact's next change (found in an operator's rolling
restart behind a proxy: each client that moved node was listed offline to whoever signed
in during its move, and stayed so)."""

from __future__ import annotations

from tests.modes import nodes_of
from tests.wire import WireClient, eventually, signed_in


async def add(watcher: WireClient, name: str, status: str) -> None:
    await watcher.send({"t": "contact", "op": "add", "name": name})
    echo = await watcher.recv_until("contact", op="add")
    if echo["status"] != status:  # a cluster node may hear of the sign-in a moment later
        await watcher.recv_until("presence", name=name, status=status)


async def test_a_watcher_shown_a_contact_offline_within_its_grace_is_told_of_its_return(
        server_factory) -> None:
    server = await server_factory(presence_grace=60)
    nodes = nodes_of(server)
    first, last = nodes[0].url, nodes[-1].url  # one node twice on a single server
    async with signed_in(last, "carol") as carol:  # watches alice all along
        async with signed_in(first, "alice", status="busy", psm="moving") as alice:
            alice_token = alice.token
            async with signed_in(last, "bob") as bob:
                bob_token = bob.token
                await add(bob, "alice", "busy")
            await add(carol, "alice", "busy")
        # Alice's last session ended and every node has heard: she is within her grace.
        await eventually(lambda: not any(node.hub.users["alice"].online for node in nodes))
        async with signed_in(last, "bob", token=bob_token) as bob:
            listed = {entry["name"]: entry["status"] for entry in bob.welcome["contacts"]}
            assert listed["alice"] == "offline"
            async with signed_in(first, "alice", token=alice_token, status="busy",
                                 psm="moving"):
                told = await bob.recv_until("presence", name="alice")
                assert (told["status"], told["psm"]) == ("busy", "moving"), told
                await carol.expect_silence("presence")  # she saw no change
