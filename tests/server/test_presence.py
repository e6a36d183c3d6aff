"""Presence to watchers, invisibility, contacts (add/remove/block/unblock, added_you)."""

from __future__ import annotations

import pytest

from tests.wire import WireClient, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)


async def add(client: WireClient, name: str) -> dict:
    await client.send({"t": "contact", "op": "add", "name": name})
    return await client.recv_until("contact", op="add")


async def test_contact_add_echoes_to_every_session_and_tells_the_target(server) -> None:
    async with signed_in(server.url, "bob", display="Bobby", psm="busy day") as bob:
        async with signed_in(server.url, "alice") as alice, WireClient.connect(server.url) as a2:
            await a2.hello("alice", token=alice.token)
            echo = await add(alice, "BOB")
            assert echo == {"t": "contact", "op": "add", "name": "bob", "display": "Bobby",
                            "status": "online", "psm": "busy day", "bot": False,
                            "blocked": False}
            assert (await a2.recv_until("contact"))["op"] == "add"
            notice = await bob.recv_until("contact")
            assert notice["op"] == "added_you" and notice["name"] == "alice"
            assert notice["status"] == "online"
            # Adding again changes nothing for the target.
            await add(alice, "bob")
            await bob.expect_silence("contact")
            await alice.send({"t": "contact", "op": "add", "name": "ghost"})
            assert (await alice.recv_until("error"))["code"] == "no_such_user"
            await alice.send({"t": "contact", "op": "add", "name": "alice"})
            assert (await alice.recv_until("error"))["code"] == "bad_frame"
        token = alice.token
    async with WireClient.connect(server.url) as alice:
        welcome = await alice.hello("alice", token=token)
        # Someone who looks offline shows no personal message.
        assert welcome["contacts"] == [{"name": "bob", "display": "Bobby", "status": "offline",
                                        "psm": "", "bot": False, "blocked": False}]
        await alice.send({"t": "contact", "op": "remove", "name": "bob"})
        await alice.recv_until("contact", op="remove")
    async with WireClient.connect(server.url) as alice:
        assert (await alice.hello("alice", token=token))["contacts"] == []


async def test_contact_owners_see_sign_in_status_changes_and_sign_out(server) -> None:
    async with signed_in(server.url, "bob") as bob:
        bob_token = bob.token
    async with signed_in(server.url, "alice") as alice:
        await add(alice, "bob")
        async with WireClient.connect(server.url) as bob:
            await bob.hello("bob", token=bob_token, psm="back")
            presence = await alice.recv_until("presence")
            assert presence == {"t": "presence", "name": "bob", "display": "bob",
                                "status": "online", "psm": "back", "bot": False}
            # A second session is no news to watchers.
            async with WireClient.connect(server.url) as bob2:
                await bob2.hello("bob", token=bob_token)
                await bob.send({"t": "presence", "status": "away"})
                # The user's own sessions get it too.
                assert (await bob.recv_until("presence"))["status"] == "away"
                assert (await bob2.recv_until("presence"))["status"] == "away"
                assert (await alice.recv_until("presence"))["status"] == "away"
            await alice.expect_silence("presence")
        assert (await alice.recv_until("presence"))["status"] == "offline"


async def test_invisible_users_look_offline_to_others_but_not_to_themselves(
    server_factory,
) -> None:
    # No grace: bob's first sign-out is told at once (else coming back invisible within
    # the grace would tell his watchers "offline" then; see test_server_bots.py).
    server = await server_factory(presence_grace=0)
    async with signed_in(server.url, "bob") as bob:
        bob_token = bob.token
    async with signed_in(server.url, "alice") as alice:
        await add(alice, "bob")
        async with WireClient.connect(server.url) as bob:
            await bob.hello("bob", token=bob_token, status="invisible")
            await alice.expect_silence("presence")  # signing in invisibly says nothing
            await alice.send({"t": "contact", "op": "add", "name": "bob"})
            assert (await alice.recv_until("contact"))["status"] == "offline"
            await bob.send({"t": "presence", "status": "online"})
            assert (await bob.recv_until("presence"))["status"] == "online"
            assert (await alice.recv_until("presence"))["status"] == "online"
            await bob.send({"t": "presence", "status": "invisible"})
            assert (await bob.recv_until("presence"))["status"] == "invisible"
            assert (await alice.recv_until("presence"))["status"] == "offline"
            await bob.send({"t": "presence", "psm": "shh"})
            assert (await bob.recv_until("presence"))["psm"] == "shh"
            await alice.expect_silence("presence")
            # Nor does the contact list give the new psm away.
            await alice.send({"t": "contact", "op": "add", "name": "bob"})
            echo = await alice.recv_until("contact")
            assert echo["status"] == "offline" and echo["psm"] == ""
        await alice.expect_silence("presence")  # nor does signing out invisibly


async def test_room_members_watch_each_other(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await alice.send({"t": "join", "room": "#tea"})
        await alice.recv_until("joined")
        await bob.send({"t": "join", "room": "#tea"})
        await bob.recv_until("joined")
        # A new member is introduced to the others with its presence.
        assert (await alice.recv_until("presence"))["name"] == "bob"
        await bob.send({"t": "presence", "psm": "tea time"})
        assert (await alice.recv_until("presence"))["psm"] == "tea time"


async def test_a_blocked_user_sees_the_blocker_offline_everywhere(server) -> None:
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await add(bob, "alice")
        await alice.send({"t": "contact", "op": "block", "name": "bob"})
        await alice.recv_until("contact", op="block")
        hidden = await bob.recv_until("presence", name="alice")
        assert hidden["status"] == "offline" and hidden["psm"] == ""
        await alice.send({"t": "presence", "status": "busy", "psm": "working"})
        await alice.recv_until("presence")
        await bob.expect_silence("presence")
        await bob.send({"t": "join", "room": "#lobby"})
        await bob.recv_until("joined")
        await alice.send({"t": "join", "room": "#lobby"})
        joined = await alice.recv_until("joined")
        assert {m["name"]: m["status"] for m in joined["members"]}["bob"] == "online"
        await bob.send({"t": "join", "room": "#lobby"})
        joined = await bob.recv_until("joined")
        assert {m["name"]: m["status"] for m in joined["members"]}["alice"] == "offline"
        await bob.send({"t": "contact", "op": "add", "name": "alice"})
        echo = await bob.recv_until("contact")
        assert echo["status"] == "offline" and echo["psm"] == ""
        await alice.send({"t": "contact", "op": "unblock", "name": "bob"})
        await alice.recv_until("contact", op="unblock")
        assert (await bob.recv_until("presence", name="alice"))["status"] == "busy"


async def test_default_contacts_land_in_every_new_users_list(server_factory) -> None:
    server = await server_factory(default_contacts=["Eliza"])
    async with signed_in(server.url, "alice") as alice:
        assert alice.welcome["contacts"] == [{"name": "eliza", "display": "eliza",
                                              "status": "offline", "psm": "", "bot": False,
                                              "blocked": False}]
        async with signed_in(server.url, "eliza", bot=True, display="Eliza"):
            presence = await alice.recv_until("presence")
            assert presence["name"] == "eliza" and presence["bot"] is True
