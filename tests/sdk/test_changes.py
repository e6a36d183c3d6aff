"""Client.edit/delete/react/unreact, say(reply=) and moderators() against a real server:
each change is acked, reaches the other members as a change entry (``is_change``), and
equals the own entry the SDK makes from its ack; a repeated id stores nothing twice;
refusals raise with the server's code."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from cfm_common.client import ClientError
from cfm_common.frames import Moderators, Msg
from tests.faults.conftest import quick_backoff
from tests.faults.proxy import CuttingProxy
from tests.sdk.conftest import Recorder

ROOM = "#kitchen"


def comparable(msg: Msg) -> tuple[Any, ...]:
    # What both sides know; mentions are the server's to work out (none here).
    return (msg.room, msg.seq, msg.sender, msg.text, msg.ts, msg.kind, msg.id, msg.reply,
            msg.change, msg.target, msg.emoji)


async def test_changes_round_trip_and_match_the_senders_own_entries(
    server: Any, clients: Any
) -> None:
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    await alice.join(ROOM)
    await bob.join(ROOM)
    mine, theirs = Recorder(alice), Recorder(bob)

    hello = await alice.say("helo", room=ROOM)
    answer = await bob.say("hi!", room=ROOM, reply=hello.seq)
    edited = await alice.edit(ROOM, hello.seq, "hello")
    liked = await bob.react(ROOM, hello.seq, "👍")
    laughed = await alice.react(ROOM, answer.seq, "😂")
    unliked = await bob.unreact(ROOM, hello.seq, "👍")
    gone = await bob.delete(ROOM, answer.seq)
    seqs = [hello.seq, answer.seq, edited.seq, liked.seq, laughed.seq, unliked.seq, gone.seq]
    assert seqs == list(range(seqs[0], seqs[0] + 7))

    await mine.wait(lambda r: len(r.msgs(ROOM)) == 7)
    await theirs.wait(lambda r: len(r.msgs(ROOM)) == 7)
    assert [comparable(m) for m in mine.msgs(ROOM)] == [comparable(m) for m in theirs.msgs(ROOM)]
    entries = theirs.msgs(ROOM)
    assert [m.is_change for m in entries] == [False, False, True, True, True, True, True]
    assert entries[1].reply == hello.seq
    assert [(m.sender, m.change, m.target, m.emoji) for m in entries[2:]] == [
        ("alice", "edit", hello.seq, None), ("bob", "react", hello.seq, "👍"),
        ("alice", "react", answer.seq, "😂"), ("bob", "unreact", hello.seq, "👍"),
        ("bob", "delete", answer.seq, None)]

    # One message as it is now; None for one the room does not have.
    now = await bob.get_message(ROOM, hello.seq)
    assert now is not None and (now.text, now.edited is not None) == ("hello", True)
    assert await bob.get_message(ROOM, gone.seq + 5) is None

    # History shows the messages in their current state.
    page = await alice.history(ROOM, after=0, limit=10)
    first, second = page.msgs[0], page.msgs[1]
    assert (first.text, first.edited is not None, first.reactions) == ("hello", True, None)
    assert (second.text, second.deleted, second.reactions) == ("", True, None)


async def test_a_repeated_change_id_is_stored_once_and_a_second_reaction_is_refused(
    server: Any, clients: Any
) -> None:
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    await alice.join(ROOM)
    await bob.join(ROOM)
    said = await alice.say("pizza?", room=ROOM)

    # The same id again, as a resend after a lost ack: the first ack, nothing stored.
    first = await bob.react(ROOM, said.seq, "👍", id="like-1")
    again = await bob.react(ROOM, said.seq, "👍", id="like-1")
    assert (again.seq, again.ts) == (first.seq, first.ts)
    # A new id for a reaction already there: refused, nothing stored either.
    with pytest.raises(ClientError) as twice:
        await bob.react(ROOM, said.seq, "👍")
    assert twice.value.code == "forbidden"

    page = await alice.history(ROOM, after=0, limit=10)
    assert [m.seq for m in page.msgs] == [said.seq, first.seq]
    reactions = page.msgs[0].reactions
    assert reactions is not None
    assert [(r.emoji, r.names) for r in reactions] == [("👍", ("bob",))]


async def test_refusals_raise_with_the_servers_code_and_empty_edits_locally(
    server: Any, clients: Any
) -> None:
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    await alice.join(ROOM)
    await bob.join(ROOM)
    said = await alice.say("mine", room=ROOM)
    with pytest.raises(ClientError) as not_author:
        await bob.edit(ROOM, said.seq, "yours now")
    assert not_author.value.code == "forbidden"
    with pytest.raises(ClientError) as past_end:
        await bob.react(ROOM, said.seq + 5, "👍")
    assert past_end.value.code == "bad_frame"
    with pytest.raises(ClientError) as empty:
        await alice.edit(ROOM, said.seq, "")
    assert empty.value.code == "bad_frame" and bob.pending == alice.pending == 0


async def test_moderators_answer_the_asker_and_tell_the_named_user(
    server: Any, clients: Any
) -> None:
    alice, bob = clients(server.url, "alice"), clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    await alice.join("#games")  # alice makes the room: its creator
    await bob.join("#games")
    told = Recorder(bob)

    named = await alice.moderators("#games", add="Bob")
    assert (named.names, named.creator) == (("alice", "bob"), "alice")
    asked = await bob.moderators("#games")
    assert asked.names == ("alice", "bob")
    await told.wait(lambda r: any(isinstance(e, Moderators) and e.ref is None for e in r.events))
    with pytest.raises(ClientError) as not_creator:
        await bob.moderators("#games", remove="alice")
    assert not_creator.value.code == "forbidden"

    # A moderator deletes another's message in the group room.
    said = await alice.say("spoiler!", room="#games")
    await bob.delete("#games", said.seq)
    page = await alice.history("#games", after=0, limit=5)
    assert page.msgs[0].deleted is True


async def test_changes_whose_acks_were_lost_are_sent_again_and_stored_once(
    server: Any, clients: Any
) -> None:
    # The server stores bob's reaction and edit, their acks never reach him (held at a
    # proxy, then the connection is cut): the SDK sends both again with the same ids
    # after it reconnects, and gets the first acks back; nothing is stored twice.
    proxy = CuttingProxy("127.0.0.1", server.port, random.Random(0))
    await proxy.start()
    proxy.cutting = False
    try:
        alice = clients(server.url, "alice")
        bob = clients(proxy.url(), "bob", backoff=quick_backoff(1))
        await alice.connect()
        await bob.connect()
        await alice.join(ROOM)
        await bob.join(ROOM)
        theirs = Recorder(alice)
        said = await bob.say("typo hree", room=ROOM)

        proxy.holding = True
        react = asyncio.create_task(bob.react(ROOM, said.seq, "👍"))
        edit = asyncio.create_task(bob.edit(ROOM, said.seq, "typo here"))
        await theirs.wait(lambda r: [m.change for m in r.msgs(ROOM)] == [None, "react", "edit"])
        assert not react.done() and not edit.done()  # stored, but not acked to bob
        proxy.drop_all()
        proxy.holding = False
        acks = await asyncio.wait_for(asyncio.gather(react, edit), 10)
        stored = theirs.msgs(ROOM)
        assert [(a.seq, a.id) for a in acks] == [(m.seq, m.id) for m in stored[1:]]

        page = await alice.history(ROOM, after=0, limit=10)
        assert [m.seq for m in page.msgs] == [m.seq for m in stored]
        first = page.msgs[0]
        assert first.text == "typo here" and first.reactions is not None
        assert [(r.emoji, r.names) for r in first.reactions] == [("👍", ("bob",))]
    finally:
        await proxy.close()
