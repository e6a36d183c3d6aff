"""A single node's ``cfm admin remove-user`` tells those the removed account concerns,
as a cluster does (docs/protocol.md, "A removed account"): the target of its pending
request gets ``contact{op: remove}`` (the request withdrawn) and its DM partner the DM's
``member{op: leave}`` — at once when the server runs and they are online (the control
socket), else right after their next ``welcome`` (schema v5's ``notices``), once.
A real server on a real SQLite file; the CLI as the operator runs it."""

from __future__ import annotations

import asyncio
from typing import Any

from typer.testing import CliRunner

from cfm_cli.main import app
from tests.server.test_admin import _isolated  # noqa: F401  (autouse: no CFM_* of the machine)
from tests.wire import WireClient

DM = "dm:alice:bob"


def remove(server: Any, name: str) -> Any:
    return CliRunner().invoke(app, ["admin", "remove-user", name, "--data-dir",
                                    str(server.config.data_dir), "--yes"])


async def signed_in(url: str, name: str, token: str | None = None) -> WireClient:
    client = await WireClient.open(url)
    assert (await client.hello(name, token))["t"] == "welcome"
    return client


async def after_welcome(client: WireClient) -> list[dict[str, Any]]:
    """The frames that came between the welcome and the answer to a request sent now."""
    start = len(client.seen)
    await client.send({"t": "members", "room": "#lobby", "id": "sync"})
    while (await client.recv()).get("ref") != "sync":  # an answer or an error, in order
        pass
    return [f for f in client.seen[start:-1] if f["t"] in ("contact", "member")]


async def setup(url: str) -> dict[str, WireClient]:
    """alice has a DM with bob, and asked carol and dave to be her contacts (dave was
    offline: he has not seen it yet); erin had her request answered (added alice back)."""
    clients = {name: await signed_in(url, name) for name in ("alice", "bob", "carol", "dave",
                                                              "erin")}
    alice = clients["alice"]
    await alice.send({"t": "say", "to": "bob", "text": "hi", "id": "a1"})
    await alice.recv_until("ack")
    await clients["bob"].recv_until("msg", room=DM)
    await clients["dave"].close()
    for name in ("carol", "dave", "erin"):
        await alice.send({"t": "contact", "op": "add", "name": name, "id": name})
        await alice.recv_until("contact", ref=name)
    await clients["carol"].recv_until("contact", op="added_you", name="alice")
    await clients["erin"].send({"t": "contact", "op": "add", "name": "alice", "id": "e"})
    await clients["erin"].recv_until("contact", ref="e")
    return clients


async def removed_while_stopped(server_factory: Any) -> tuple[Any, dict[str, str]]:
    """``setup``, everyone signed out, alice removed while the server is stopped; the
    server started again, and everyone's token."""
    server = await server_factory()
    clients = await setup(server.url)
    tokens = {name: c.seen[0]["token"] for name, c in clients.items()}
    for client in clients.values():
        await client.close()
    await server.stop(close_code=1001)
    result = remove(server, "alice")
    assert result.exit_code == 0, result.output
    return await server_factory(data_dir=server.config.data_dir), tokens


async def test_removed_while_stopped_the_next_welcome_tells_once(
        server_factory: Any) -> None:
    server, tokens = await removed_while_stopped(server_factory)
    carol = await signed_in(server.url, "carol", tokens["carol"])
    told = await after_welcome(carol)
    assert [(f["t"], f["op"], f["name"], f["status"]) for f in told] == [
        ("contact", "remove", "alice", "offline")], told
    dave = await signed_in(server.url, "dave", tokens["dave"])
    assert [(f["op"], f["name"]) for f in await after_welcome(dave)] == [("remove", "alice")]
    bob = await signed_in(server.url, "bob", tokens["bob"])
    told = await after_welcome(bob)
    assert [(f["t"], f["room"], f["name"], f["op"]) for f in told] == [
        ("member", DM, "alice", "leave")], told
    erin = await signed_in(server.url, "erin", tokens["erin"])
    assert await after_welcome(erin) == []  # her list lost alice: the welcome says it
    # Told once, also across a restart.
    for client in (bob, carol, dave, erin):
        await client.close()
    await server.stop(close_code=1001)
    server = await server_factory(data_dir=server.config.data_dir)
    for name in ("bob", "carol"):
        again = await signed_in(server.url, name, tokens[name])
        assert await after_welcome(again) == []
        await again.close()


async def test_once_the_handle_is_claimed_again_the_withdrawal_is_still_told(
        server_factory: Any) -> None:
    """A client may still show the old alice's request (from before the restart): its
    "accept" would add the new alice, so the withdrawal is told all the same. The DM's
    leave is not told to bob once he has a DM with the new alice: it would seem to end
    it (his welcome has it, with a new epoch)."""
    server, tokens = await removed_while_stopped(server_factory)
    new = await signed_in(server.url, "alice")
    assert new.seen[0]["contacts"] == [] and new.seen[0]["rooms"] == []
    await new.send({"t": "say", "to": "bob", "text": "I am the new alice", "id": "n1"})
    assert (await new.recv_until("ack", id="n1"))["seq"] == 1
    bob = await signed_in(server.url, "bob", tokens["bob"])
    assert DM in {r["room"] for r in bob.seen[0]["rooms"]}
    assert await after_welcome(bob) == []
    carol = await signed_in(server.url, "carol", tokens["carol"])
    assert [(f["op"], f["name"]) for f in await after_welcome(carol)] == [("remove", "alice")]
    assert "alice" not in {c["name"] for c in carol.seen[0]["contacts"]}
    for client in (new, bob, carol):
        await client.close()


async def test_removed_while_running_online_users_are_told_at_once(
        server_factory: Any) -> None:
    server = await server_factory()
    clients = await setup(server.url)
    alice, bob, carol = clients["alice"], clients["bob"], clients["carol"]
    dave_token = clients["dave"].seen[0]["token"]
    # On a thread: this test's loop is the server's, which answers the control socket.
    result = await asyncio.to_thread(remove, server, "alice")
    assert result.exit_code == 0, result.output
    assert "Removed alice; the handle is free (1 open session closed)." in result.output
    assert await alice.wait_closed() == 4003
    await bob.recv_until("member", room=DM, name="alice", op="leave")
    await carol.recv_until("contact", op="remove", name="alice", status="offline")
    # dave was away: his next welcome tells him; bob and carol were told already.
    dave = await signed_in(server.url, "dave", dave_token)
    assert [(f["op"], f["name"]) for f in await after_welcome(dave)] == [("remove", "alice")]
    # Accepting the withdrawn request is refused; the new holder owns nothing of it.
    await carol.send({"t": "contact", "op": "add", "name": "alice", "id": "accept"})
    assert (await carol.recv_until("error", ref="accept"))["code"] == "no_such_user"
    new = await signed_in(server.url, "alice")
    assert new.seen[0]["contacts"] == []
    assert DM not in {r["room"] for r in new.seen[0]["rooms"]}
    await new.send({"t": "say", "to": "bob", "text": "new here", "id": "n1"})
    assert (await new.recv_until("ack", id="n1"))["seq"] == 1
    for name in ("bob", "carol"):
        again = await signed_in(server.url, name, clients[name].seen[0]["token"])
        assert await after_welcome(again) == []
        await again.close()
    # And the database holds what the server does: a restart shows the same.
    for client in (bob, carol, dave, new, clients["erin"]):
        await client.close()
    await server.stop(close_code=1001)
    server = await server_factory(data_dir=server.config.data_dir)
    carol = await signed_in(server.url, "carol", clients["carol"].seen[0]["token"])
    assert "alice" not in {c["name"] for c in carol.seen[0]["contacts"]}
    await carol.close()


async def test_after_a_removal_while_running_the_new_dm_is_searched_not_the_old(
        server_factory: Any) -> None:
    """The old DM's messages left the room (archived): the search index forgets them,
    and indexes the new DM of the same name from its first seq."""
    server = await server_factory()
    alice, bob = await signed_in(server.url, "alice"), await signed_in(server.url, "bob")
    await alice.send({"t": "say", "to": "bob", "text": "old secret", "id": "a1"})
    await alice.recv_until("ack", id="a1")

    async def search(text: str, ref: str) -> list[tuple[str, int, str]]:
        await bob.send({"t": "search", "text": text, "id": ref})
        found = await bob.recv_until("search", ref=ref)
        return [(m["room"], m["seq"], m["text"]) for m in found["msgs"]]

    assert await search("secret", "s1") == [(DM, 1, "old secret")]
    result = await asyncio.to_thread(remove, server, "alice")
    assert result.exit_code == 0, result.output
    await bob.recv_until("member", room=DM, name="alice", op="leave")
    assert await search("secret", "s2") == []
    new = await signed_in(server.url, "alice")
    await new.send({"t": "say", "to": "bob", "text": "new zebra", "id": "n1"})
    assert (await new.recv_until("ack", id="n1"))["seq"] == 1
    await bob.recv_until("msg", room=DM, seq=1)
    assert await search("zebra", "s3") == [(DM, 1, "new zebra")]  # waits for the index
    for client in (new, bob):
        await client.close()
