"""A single node whose store refuses a write (a full disk, an I/O error) confirms no
change it did not store: a ``contact``, ``presence``, ``read``, ``leave``, ``join``,
``moderators`` change or a sign-in's status whose write failed is answered
``error{internal, ref}``, the live state keeps nothing of it (a restart would not have
it either), nobody is told; the same frame sent once the store writes again does it.
(On a cluster the same rule holds when Redis is out of reach:
tests/cluster/test_outage_writes.py.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.wire import WireClient, signed_in

DM = "dm:alice:bob"


def refusing(server: Any, refuse: bool) -> None:
    """The store's own connection refuses every write (as a failing disk does)."""
    server.store._conn.execute(f"PRAGMA query_only = {int(refuse)}")


async def joined(client: WireClient, room: str) -> None:
    await client.send({"t": "join", "room": room, "id": "j"})
    await client.recv_until("joined", ref="j")


async def nothing(alice: WireClient, bob: WireClient) -> None:
    pass


async def bob_wrote(alice: WireClient, bob: WireClient) -> None:
    await bob.send({"t": "say", "to": "alice", "text": "hi", "id": "b1"})
    await bob.recv_until("ack", id="b1")
    await alice.recv_until("msg", text="hi")


async def both_in_team(alice: WireClient, bob: WireClient) -> None:
    await joined(bob, "#team")
    await joined(alice, "#team")
    await bob.recv_until("member", name="alice", op="join")


async def bob_in_team(alice: WireClient, bob: WireClient) -> None:
    await joined(bob, "#team")


async def alice_made_team(alice: WireClient, bob: WireClient) -> None:
    await joined(alice, "#team")  # its creator
    await joined(bob, "#team")
    await alice.recv_until("member", name="bob", op="join")


def alice(server: Any) -> Any:
    return server.hub.users["alice"]


# name: (set-up, the frame, its ref, what must hold while it is refused, the frame
# that answers it once stored (t, keys), what bob is told of it)
CASES: dict[str, tuple[Any, dict[str, Any], str, Callable[[Any], bool],
                       tuple[str, dict[str, Any]], str]] = {
    "block": (bob_wrote, {"t": "contact", "op": "block", "name": "bob", "id": "c"}, "c",
              lambda s: not alice(s).contacts, ("contact", {"ref": "c", "blocked": True}),
              ""),
    "add": (nothing, {"t": "contact", "op": "add", "name": "bob", "id": "c"}, "c",
            lambda s: not alice(s).contacts and "bob" not in s.hub.world.listed_by,
            ("contact", {"ref": "c", "name": "bob"}), "contact"),
    "psm": (nothing, {"t": "presence", "psm": "exams"}, "presence",
            lambda s: alice(s).record.psm == "", ("presence", {"psm": "exams"}), ""),
    "read": (bob_wrote, {"t": "read", "room": DM, "seq": 1}, "read",
             lambda s: alice(s).reads.get(DM, 0) == 0, ("", {}), "read"),
    "leave": (both_in_team, {"t": "leave", "room": "#team", "id": "l"}, "l",
              lambda s: "alice" in s.hub.rooms["#team"].members, ("left", {"ref": "l"}),
              "member"),
    "join": (bob_in_team, {"t": "join", "room": "#team", "id": "j2"}, "j2",
             lambda s: "alice" not in s.hub.rooms["#team"].members,
             ("joined", {"ref": "j2"}), "member"),
    "moderator": (alice_made_team, {"t": "moderators", "room": "#team", "add": "bob",
                                    "id": "m"}, "m",
                  lambda s: s.hub.changes.moderators["#team"] == {"alice"},
                  ("moderators", {"ref": "m", "names": ["alice", "bob"]}), "moderators"),
    "new-room": (nothing, {"t": "join", "room": "#fresh", "id": "j2"}, "j2",
                 lambda s: "#fresh" not in s.hub.rooms and "#fresh" not in s.hub.changes.creators,
                 ("joined", {"ref": "j2"}), ""),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_change_the_store_refused_is_answered_internal_and_not_kept(
        server_factory: Any, case: str) -> None:
    set_up, frame, ref, unchanged, (t, keys), told = CASES[case]
    server = await server_factory(rate_limits=False)
    async with signed_in(server.url, "alice") as me, signed_in(server.url, "bob") as bob:
        await set_up(me, bob)
        refusing(server, True)
        await me.send(frame)
        error = await me.recv_until("error", ref=ref)
        assert error["code"] == "internal", error
        assert unchanged(server)
        if told:
            await bob.expect_silence(told)
        # Same as a restart would find: a new sign-in is shown the stored state.
        async with signed_in(server.url, "alice", token=me.token) as again:
            assert again.welcome["contacts"] == [] and again.welcome["psm"] == ""
            assert [r["read"] for r in again.welcome["rooms"] if r["room"] == DM] in ([], [0])
        refusing(server, False)
        await me.send(frame)
        if t:
            await me.recv_until(t, **keys)
        if told:
            await bob.recv_until(told)
        assert not unchanged(server)


async def test_a_block_and_an_unblock_both_refused_leave_the_contact_as_it_was(
        server_factory: Any) -> None:
    server = await server_factory(rate_limits=False)
    async with signed_in(server.url, "alice") as me, signed_in(server.url, "bob"):
        await me.send({"t": "contact", "op": "add", "name": "bob", "id": "a"})
        await me.recv_until("contact", ref="a")
        refusing(server, True)
        await me.send({"t": "contact", "op": "block", "name": "bob", "id": "b"})
        await me.send({"t": "contact", "op": "unblock", "name": "bob", "id": "u"})
        await me.recv_until("error", ref="b")
        await me.recv_until("error", ref="u")
        entry = alice(server).contacts["bob"]
        assert (entry.in_list, entry.blocked) == (True, False)
        refusing(server, False)
        await me.send({"t": "contact", "op": "block", "name": "bob", "id": "b"})
        assert (await me.recv_until("contact", ref="b"))["blocked"] is True
        assert alice(server).contacts["bob"].blocked


@pytest.mark.parametrize("first", [True, False], ids=["first-session", "second-session"])
async def test_a_sign_in_whose_status_the_store_refused_is_refused_retryably(
        server_factory: Any, first: bool) -> None:
    """A hello that sets a status is the user's change of their record: refused with
    ``internal`` (ref ``hello``) and closed 1013 before any ``welcome``, the record as
    stored, nobody told; once the store writes again the same hello signs in with it.
    (Signing in with the stored status instead would show an ``invisible`` user.)"""
    from tests.wire import WireClient

    server = await server_factory(rate_limits=False)
    async with signed_in(server.url, "alice") as first_session, \
            signed_in(server.url, "bob") as bob:
        await bob.send({"t": "contact", "op": "add", "name": "alice", "id": "c"})
        await bob.recv_until("contact", ref="c")
        token = first_session.token
        if first:
            await first_session.close()
            await bob.recv_until("presence", name="alice", status="offline")
        refusing(server, True)
        async with WireClient.connect(server.url) as me:
            error = await me.hello("alice", token=token, status="busy", psm="exams")
            assert error["t"] == "error" and error["code"] == "internal", error
            assert error["ref"] == "hello"
            assert await me.wait_closed() == 1013
        record = alice(server).record
        assert (record.status, record.psm) == ("online", "")
        await bob.expect_silence("presence")
        if not first:
            await first_session.expect_silence("presence")
        refusing(server, False)
        async with signed_in(server.url, "alice", token=token, status="busy",
                             psm="exams") as me:
            assert (me.welcome["status"], me.welcome["psm"]) == ("busy", "exams")
        await bob.recv_until("presence", name="alice", status="busy")
