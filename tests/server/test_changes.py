"""Message changes (issue 16, docs/protocol.md "Message changes") against a real server.

Edit, delete, reactions and replies are entries of the room's sequence: acked once
durable, fanned out as `msg{change, target}`, replayed by `join{since}` and paged by
`history`, idempotent by (sender, id). The changed message itself is stored in its
current state, which every later page shows. Each test runs on both stores.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from tests.wire import WireClient, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)

ROOM = "#changes"


@pytest.fixture(params=["sqlite", "memory"])
async def any_server(request: pytest.FixtureRequest, server_factory: Any) -> Any:
    return await server_factory(store=request.param)


async def _join(client: WireClient, room: str = ROOM) -> dict[str, Any]:
    await client.send({"t": "join", "room": room})
    return await client.recv_until("joined", room=room)


async def _say(client: WireClient, text: str, cid: str, room: str = ROOM,
               **keys: Any) -> int:
    await client.send({"t": "say", "room": room, "text": text, "id": cid, **keys})
    ack = await client.recv_until("ack", id=cid)
    return ack["seq"]


async def _change(client: WireClient, t: str, cid: str, target: int, room: str = ROOM,
                  **keys: Any) -> dict[str, Any]:
    """Send a change; the ack, or the error refusing it."""
    await client.send({"t": t, "room": room, "target": target, "id": cid, **keys})
    while True:
        frame = await client.recv()
        if frame["t"] == "ack" and frame.get("id") == cid:
            return frame
        if frame["t"] == "error" and frame.get("ref") == cid:
            return frame


async def _history(client: WireClient, room: str = ROOM) -> list[dict[str, Any]]:
    await client.send({"t": "history", "room": room, "after": 0, "id": "h"})
    return (await client.recv_until("history", ref="h"))["msgs"]


# --- a client's view: messages with the changes applied in seq order ------------------


def apply(state: dict[int, dict[str, Any]], m: dict[str, Any]) -> None:
    """What a client does with a `msg`: a message comes in its current state; a change
    entry changes its target (an edit or reaction on a tombstone does nothing)."""
    change = m.get("change")
    if change is None:
        state[m["seq"]] = {
            "from": m["from"], "text": m["text"], "edited": m.get("edited"),
            "deleted": m.get("deleted", False), "reply": m.get("reply"),
            "reactions": {r["emoji"]: list(r["names"]) for r in m.get("reactions", [])},
        }
        return
    target = state.get(m["target"])
    if target is None or target["deleted"]:
        return
    if change == "edit":
        target.update(text=m["text"], edited=m["ts"])
    elif change == "delete":
        target.update(text="", deleted=True, edited=None, reactions={})
    elif change == "react":
        names = target["reactions"].setdefault(m["emoji"], [])
        if m["from"] not in names:
            names.append(m["from"])
    elif change == "unreact":
        names = target["reactions"].get(m["emoji"], [])
        if m["from"] in names:
            names.remove(m["from"])
        if not names:
            target["reactions"].pop(m["emoji"], None)


def state_of(msgs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    state: dict[int, dict[str, Any]] = {}
    for m in sorted(msgs, key=lambda m: m["seq"]):
        apply(state, m)
    return state


# --- edit ---------------------------------------------------------------------------


async def test_an_edit_reaches_the_room_and_history_shows_the_edited_text(any_server) -> None:
    async with (signed_in(any_server.url, "alice") as alice,
                signed_in(any_server.url, "bob") as bob):
        await _join(alice)
        await _join(bob)
        seq = await _say(alice, "helo", "a1")
        await bob.recv_until("msg", seq=seq)
        ack = await _change(alice, "edit", "a2", seq, text="hello")
        assert ack["t"] == "ack" and ack["seq"] == seq + 1
        live = await bob.recv_until("msg", seq=seq + 1)
        # An old client sees a text message holding the corrected text.
        assert live == {"t": "msg", "room": ROOM, "seq": seq + 1, "from": "alice",
                        "text": "hello", "ts": ack["ts"], "kind": "text", "id": "a2",
                        "change": "edit", "target": seq}
        page = await _history(bob)
        assert page[0]["text"] == "hello" and page[0]["edited"] == ack["ts"]
        assert page[1]["change"] == "edit"


async def test_an_edit_by_anyone_but_the_author_is_refused(any_server) -> None:
    async with (signed_in(any_server.url, "alice") as alice,
                signed_in(any_server.url, "bob") as bob):
        await _join(alice)
        await _join(bob)
        seq = await _say(alice, "mine", "a1")
        error = await _change(bob, "edit", "b1", seq, text="yours now")
        assert error["t"] == "error" and error["code"] == "forbidden", error
        # Nothing was stored: the room's next message takes the next seq.
        assert await _say(alice, "still mine", "a2") == seq + 1
        assert [m["text"] for m in await _history(alice)] == ["mine", "still mine"]
        # A seq the room does not have yet.
        assert (await _change(alice, "edit", "a3", seq + 2, text="x"))["code"] == "bad_frame"


async def test_changes_need_the_room(any_server) -> None:
    async with (signed_in(any_server.url, "alice") as alice,
                signed_in(any_server.url, "eve") as eve):
        await _join(alice)
        seq = await _say(alice, "members only", "a1")
        error = await _change(eve, "react", "e1", seq, emoji="x")
        assert error["code"] == "not_member"
        error = await _change(eve, "delete", "e2", 1, room="dm:alice:bob")
        assert error["code"] == "forbidden"


# --- delete -------------------------------------------------------------------------


@pytest.mark.single_node("reads the SQLite file")
async def test_a_delete_removes_the_text_from_the_sqlite_file(server_factory, tmp_path) -> None:
    data = tmp_path / "data"
    secret, fixed = "my PIN is 4711-secret", "my PIN is 4711-corrected"
    server = await server_factory(data_dir=data)
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await _join(alice)
        await _join(bob)
        seq = await _say(alice, secret, "a1")
        assert (await _change(alice, "edit", "a2", seq, text=fixed))["t"] == "ack"
        assert (await _change(bob, "react", "b1", seq, emoji="\U0001f62e"))["t"] == "ack"
        alice_token, bob_token = alice.token, bob.token
    # Stopped, the edited text is in the database file itself (its WAL copied in at close).
    await server.stop()
    db = data / "cfm.sqlite3"
    assert b"4711-corrected" in db.read_bytes()

    server = await server_factory(data_dir=data)
    async with (signed_in(server.url, "alice", token=alice_token) as alice,
                signed_in(server.url, "bob", token=bob_token) as bob):
        ack = await _change(alice, "delete", "a3", seq)
        assert ack["t"] == "ack" and ack["seq"] == seq + 3
        delete = await bob.recv_until("msg", seq=seq + 3)
        assert delete["change"] == "delete" and delete["target"] == seq
        assert delete["text"] == ""
        page = await _history(bob)
        assert page[0] == {"room": ROOM, "seq": seq, "from": "alice", "text": "",
                           "ts": page[0]["ts"], "kind": "text", "id": "a1", "deleted": True}
        assert page[1]["change"] == "edit" and page[1]["text"] == ""  # the edit's text too
    await server.stop()
    conn = sqlite3.connect(db)
    try:
        texts = [row[0] for row in conn.execute("SELECT text FROM messages")]
        reactions = conn.execute("SELECT count(*) FROM reactions").fetchone()[0]
    finally:
        conn.close()
    assert texts and not any("4711" in text for text in texts), texts
    assert reactions == 0
    # Nor left in the file's free space (secure_delete), nor in a WAL beside it.
    assert b"4711" not in db.read_bytes()
    assert not (data / "cfm.sqlite3-wal").exists()


async def test_a_delete_is_for_the_author_or_a_moderator(any_server) -> None:
    async with (signed_in(any_server.url, "alice") as alice,
                signed_in(any_server.url, "bob") as bob,
                signed_in(any_server.url, "carol") as carol):
        await _join(alice, "#mods")  # alice creates the room: its moderator
        await _join(bob, "#mods")
        await _join(carol, "#mods")
        spam = await _say(bob, "buy now", "b1", room="#mods")
        error = await _change(carol, "delete", "c1", spam, room="#mods")
        assert error["code"] == "forbidden"

        # Only the creator names moderators; anyone in the room may ask who they are.
        await carol.send({"t": "moderators", "room": "#mods", "add": "carol", "id": "m1"})
        assert (await carol.recv_until("error", ref="m1"))["code"] == "forbidden"
        await alice.send({"t": "moderators", "room": "#mods", "add": "Carol", "id": "m2"})
        answer = await alice.recv_until("moderators", ref="m2")
        assert answer == {"t": "moderators", "room": "#mods", "names": ["alice", "carol"],
                          "creator": "alice", "ref": "m2"}
        told = await carol.recv_until("moderators")
        assert told["names"] == ["alice", "carol"] and "ref" not in told

        ack = await _change(carol, "delete", "c2", spam, room="#mods")
        assert ack["t"] == "ack"
        assert (await bob.recv_until("msg", seq=ack["seq"]))["from"] == "carol"
        # A tombstone stays one: deleting, editing or reacting to it is refused.
        assert (await _change(alice, "delete", "a1", spam, room="#mods"))["code"] == "forbidden"
        assert (await _change(bob, "react", "b2", spam, room="#mods",
                              emoji="x"))["code"] == "forbidden"

        await alice.send({"t": "moderators", "room": "#mods", "remove": "carol"})
        assert (await alice.recv_until("moderators"))["names"] == ["alice"]
        mine = await _say(alice, "rules: be nice", "a2", room="#mods")
        error = await _change(carol, "delete", "c3", mine, room="#mods")
        assert error["code"] == "forbidden"
        await bob.send({"t": "moderators", "room": "#mods", "id": "q"})
        assert (await bob.recv_until("moderators", ref="q"))["names"] == ["alice"]


async def test_in_a_dm_only_the_author_deletes(any_server) -> None:
    room = "dm:alice:bob"
    async with (signed_in(any_server.url, "alice") as alice,
                signed_in(any_server.url, "bob") as bob):
        await alice.send({"t": "say", "to": "bob", "text": "oops", "id": "a1"})
        seq = (await alice.recv_until("ack"))["seq"]
        await bob.recv_until("msg", seq=seq)
        assert (await _change(bob, "delete", "b1", seq, room=room))["code"] == "forbidden"
        assert (await _change(alice, "delete", "a2", seq, room=room))["t"] == "ack"
        assert (await bob.recv_until("msg", seq=seq + 1))["change"] == "delete"


# --- reactions ----------------------------------------------------------------------


async def test_a_retried_reaction_is_stored_once(any_server) -> None:
    thumbs = "\U0001f44d"
    async with (signed_in(any_server.url, "alice") as alice,
                signed_in(any_server.url, "bob") as bob):
        await _join(alice)
        await _join(bob)
        seq = await _say(alice, "lunch?", "a1")
        first = await _change(bob, "react", "r1", seq, emoji=thumbs)
        again = await _change(bob, "react", "r1", seq, emoji=thumbs)
        assert again == first
        # From another connection (a retry after a reconnect), the same.
        async with signed_in(any_server.url, "bob", token=bob.token) as bob2:
            assert await _change(bob2, "react", "r1", seq, emoji=thumbs) == first
            # A new id for the same emoji is no second reaction.
            error = await _change(bob2, "react", "r2", seq, emoji=thumbs)
            assert error["code"] == "forbidden"
        assert (await _change(alice, "react", "a2", seq, emoji=thumbs))["t"] == "ack"
        assert (await _change(alice, "react", "a3", seq, emoji="\U0001f355"))["t"] == "ack"
        page = await _history(alice)
        assert page[0]["reactions"] == [{"emoji": thumbs, "names": ["bob", "alice"]},
                                        {"emoji": "\U0001f355", "names": ["alice"]}]
        assert [m["seq"] for m in page] == [seq, seq + 1, seq + 2, seq + 3]  # no doubles

        assert (await _change(bob, "unreact", "r3", seq, emoji=thumbs))["t"] == "ack"
        assert (await _change(bob, "unreact", "r4", seq, emoji=thumbs))["code"] == "forbidden"
        page = await _history(alice)
        assert page[0]["reactions"] == [{"emoji": thumbs, "names": ["alice"]},
                                        {"emoji": "\U0001f355", "names": ["alice"]}]


# --- the same state for everyone: live, resumed, paged ------------------------------


async def test_a_client_offline_during_the_changes_resumes_to_the_same_state(
    any_server,
) -> None:
    url = any_server.url
    async with (signed_in(url, "alice") as alice, signed_in(url, "bob") as bob,
                signed_in(url, "dave") as dave):
        for client in (alice, bob, dave):
            await _join(client)
        async with signed_in(url, "carol") as carol:
            await _join(carol)
            carol_token = carol.token
            s1 = await _say(alice, "first draft", "a1")
            s2 = await _say(bob, "regrettable", "b1")
            s3 = await _say(bob, "nice one", "b2", reply=s1)
            await carol.recv_until("msg", seq=s3)
            carol_seen = [f for f in carol.seen if f["t"] == "msg"]
        # Carol is gone; the others change the room.
        assert (await _change(alice, "edit", "a2", s1, text="final draft"))["t"] == "ack"
        assert (await _change(bob, "delete", "b3", s2))["t"] == "ack"
        assert (await _change(alice, "react", "a3", s3, emoji="\U0001f44d"))["t"] == "ack"
        assert (await _change(bob, "react", "b4", s1, emoji="\U0001f44d"))["t"] == "ack"
        assert (await _change(bob, "unreact", "b5", s1, emoji="\U0001f44d"))["t"] == "ack"
        assert (await _change(alice, "edit", "a4", s1, text="final draft v2"))["t"] == "ack"
        last = await _say(alice, "done", "a5")
        online = [f for f in (await dave.recv_n("msg", last)) if f["t"] == "msg"]
        online_state = state_of(online)

        async with WireClient.connect(url) as carol:
            await carol.hello("carol", token=carol_token)
            await carol.send({"t": "join", "room": ROOM, "since": s3})
            await carol.recv_until("joined")
            replay = await carol.recv_n("msg", last - s3)
            resumed_state = state_of(carol_seen + replay)
            # The other way to resume: history{after}.
            await carol.send({"t": "history", "room": ROOM, "after": s3, "id": "gap"})
            gap = (await carol.recv_until("history", ref="gap"))["msgs"]
            paged_gap_state = state_of(carol_seen + gap)
        paged_state = state_of(await _history(dave))

    assert resumed_state == online_state == paged_state == paged_gap_state
    assert online_state[s1]["text"] == "final draft v2" and online_state[s1]["edited"]
    assert online_state[s1]["reactions"] == {}
    assert online_state[s2]["deleted"] and online_state[s2]["text"] == ""
    assert online_state[s3] == {"from": "bob", "text": "nice one", "edited": None,
                                "deleted": False, "reply": s1,
                                "reactions": {"\U0001f44d": ["alice"]}}


# --- replies and mentions -----------------------------------------------------------


async def test_a_reply_names_the_message_it_answers(any_server) -> None:
    async with (signed_in(any_server.url, "alice") as alice,
                signed_in(any_server.url, "bob") as bob):
        await _join(alice)
        await _join(bob)
        seq = await _say(alice, "who's in?", "a1")
        # Bob answers what he was shown (on a cluster his node may learn of it later
        # than alice's ack: a reply to a seq it has not delivered yet is bad_frame there).
        await bob.recv_until("msg", id="a1")
        await _say(bob, "me", "b1", reply=seq)
        assert (await alice.recv_until("msg", id="b1"))["reply"] == seq
        await bob.send({"t": "say", "room": ROOM, "text": "?", "id": "b2", "reply": 99})
        assert (await bob.recv_until("error", ref="b2"))["code"] == "bad_frame"
        change = seq + 1
        await alice.send({"t": "say", "room": ROOM, "text": "?", "id": "a2",
                          "reply": change + 5})
        assert (await alice.recv_until("error", ref="a2"))["code"] == "bad_frame"


async def test_mentions_are_marked_and_counted_in_welcome(any_server) -> None:
    url = any_server.url
    async with signed_in(url, "bob") as bob:
        await _join(bob)
        bob_token = bob.token
    async with signed_in(url, "alice") as alice:
        await _join(alice)
        await _say(alice, "@bob look at this", "a1")
        await _say(alice, "hi all", "a2")
        await _say(alice, "ping @Bob.", "a3")
        await _say(alice, "mail me@bob or @nobody or @alice", "a4")
        mentioned = await _say(alice, "@bob again", "a5")
        assert (await _change(alice, "delete", "a6", mentioned))["t"] == "ack"
        await alice.send({"t": "history", "room": ROOM, "after": 0, "id": "h"})
        page = (await alice.recv_until("history", ref="h"))["msgs"]
        assert [m.get("mentions") for m in page[:4]] == [["bob"], None, ["bob"], None]
    async with WireClient.connect(url) as bob:
        welcome = await bob.hello("bob", token=bob_token)
        (entry,) = [r for r in welcome["rooms"] if r["room"] == ROOM]
        # Four messages from others (the deleted one and the delete entry not counted),
        # two of them mention bob.
        assert (entry["unread"], entry["mentions"]) == (4, 2), entry
        await bob.send({"t": "read", "room": ROOM, "seq": entry["seq"]})
        await bob.send({"t": "history", "room": ROOM, "after": 0, "id": "sync"})
        await bob.recv_until("history", ref="sync")  # the read mark is in
    async with WireClient.connect(url) as bob:
        welcome = await bob.hello("bob", token=bob_token)
        (entry,) = [r for r in welcome["rooms"] if r["room"] == ROOM]
        assert "unread" not in entry and "mentions" not in entry


async def test_across_a_block_the_blocker_gets_nothing_a_change_carries(any_server) -> None:
    room = "dm:alice:bob"
    async with (signed_in(any_server.url, "alice") as alice,
                signed_in(any_server.url, "bob") as bob):
        await bob.send({"t": "say", "to": "alice", "text": "hi alice", "id": "b1"})
        seq = (await bob.recv_until("ack"))["seq"]
        await alice.send({"t": "say", "to": "bob", "text": "hi bob", "id": "a1"})
        mine = (await alice.recv_until("ack"))["seq"]
        await alice.send({"t": "contact", "op": "block", "name": "bob"})
        await alice.recv_until("contact", op="block")
        # Acked as usual: the block stays private.
        edit = await _change(bob, "edit", "b2", seq, room=room, text="you will regret")
        react = await _change(bob, "react", "b3", mine, room=room, emoji="\U0001f595")
        assert edit["t"] == react["t"] == "ack"
        for entry in (edit, react):
            live = await alice.recv_until("msg", seq=entry["seq"])
            assert live["hidden"] is True and live["text"] == "" and "change" not in live
        page = await _history(alice, room)
        assert page[0]["text"] == "hi alice" and "edited" not in page[0]
        assert "reactions" not in page[1]
        assert all(m.get("hidden") and "change" not in m for m in page[2:])
        # Bob's own view holds his changes: the entries, applied as usual.
        bobs = state_of(await _history(bob, room))
        assert bobs[seq]["text"] == "you will regret"
        assert bobs[mine]["reactions"] == {"\U0001f595": ["bob"]}
        # A delete still erases, for both.
        assert (await _change(bob, "delete", "b4", seq, room=room))["t"] == "ack"
        page = await _history(alice, room)
        assert page[0]["deleted"] is True and page[0]["text"] == ""


async def test_a_change_of_a_message_hidden_by_a_block_stays_hidden_after_unblock(
    any_server,
) -> None:
    room = "dm:alice:bob"
    async with (signed_in(any_server.url, "alice") as alice,
                signed_in(any_server.url, "bob") as bob):
        await alice.send({"t": "contact", "op": "block", "name": "bob"})
        await alice.recv_until("contact", op="block")
        await bob.send({"t": "say", "to": "alice", "text": "while blocked", "id": "b1"})
        seq = (await bob.recv_until("ack"))["seq"]
        await alice.send({"t": "contact", "op": "unblock", "name": "bob"})
        await alice.recv_until("contact", op="unblock")
        ack = await _change(bob, "edit", "b2", seq, room=room, text="still hidden")
        live = await alice.recv_until("msg", seq=ack["seq"])
        assert live["hidden"] is True and live["text"] == "" and "change" not in live
        assert all("still" not in str(m) for m in await _history(alice, room))
        assert state_of(await _history(bob, room))[seq]["text"] == "still hidden"


async def test_moderators_and_changed_messages_outlive_a_restart(server_factory, tmp_path) -> None:
    data = tmp_path / "data"
    server = await server_factory(data_dir=data)
    async with (signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob,
                signed_in(server.url, "carol") as carol):
        for client in (alice, bob, carol):
            await _join(client, "#kept")
        await alice.send({"t": "moderators", "room": "#kept", "add": "carol", "id": "m"})
        await alice.recv_until("moderators", ref="m")
        seq = await _say(bob, "typo", "b1", room="#kept")
        assert (await _change(bob, "edit", "b2", seq, room="#kept", text="fixed"))["t"] == "ack"
        tokens = {c: c.token for c in (alice, bob, carol)}
    await server.stop()
    server = await server_factory(data_dir=data)
    async with signed_in(server.url, "carol", token=tokens[carol]) as carol:
        await carol.send({"t": "moderators", "room": "#kept", "id": "q"})
        answer = await carol.recv_until("moderators", ref="q")
        assert (answer["names"], answer["creator"]) == (["alice", "carol"], "alice")
        assert (await _history(carol, "#kept"))[0]["text"] == "fixed"
        assert (await _change(carol, "delete", "c1", seq, room="#kept"))["t"] == "ack"
