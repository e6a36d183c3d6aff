"""Reply matching in the sans-I/O core (cfm_common._outbox): by ids, and by nothing else."""

from __future__ import annotations

import pytest

from cfm_common import frames as f
from cfm_common._outbox import Outgoing
from cfm_common.errors import ServerRefused
from tests.sdk.corekit import Wire


def history(w: Wire, room: str) -> Outgoing:
    return w.core.request(f.GetHistory(room=room, after=0), "history", room)


def test_each_request_gets_a_request_id_that_its_answer_names() -> None:
    w = Wire()
    w.connect()
    first, second = history(w, "#a"), history(w, "#a")
    sent = w.written()
    assert [x["id"] for x in sent] == [first.ident, second.ident]
    assert first.ident != second.ident
    # Two pages of one room in flight: the later answer, by its ref, is the later one's.
    page = f.History(room="#a", msgs=(), more=False, ref=second.ident)
    w.send(page)
    assert second.reply.value == page
    assert not first.reply.done()


def test_a_refusal_fails_the_request_it_names_not_the_oldest_of_its_kind() -> None:
    w = Wire()
    w.connect()
    older = w.core.request(f.Join(room="#a"), "join", "#a")
    newer = w.core.request(f.Join(room="#b"), "join", "#b")
    w.written()
    w.events.clear()
    w.send(f.Error(code="no_such_room", msg="no", ref=newer.ident))
    assert isinstance(newer.reply.error, ServerRefused)
    assert newer.reply.error.code == "no_such_room" and newer.reply.error.ref == newer.ident
    assert not older.reply.done()
    assert w.events == []  # the program hears of it from its call, not as an event too


def test_an_answer_with_no_ref_or_anothers_is_an_event_not_an_answer() -> None:
    w = Wire()
    w.connect()
    join = w.core.request(f.Join(room="#a"), "join", "#a")
    w.written()
    w.events.clear()
    # Another session of ours joined #a (no ref), then one named a request of theirs.
    theirs = f.Joined(room="#a", seq=0, epoch="e1", members=())
    w.send(theirs)
    w.send(f.Joined(room="#a", seq=0, epoch="e1", members=(), ref="~q99"))
    assert not join.reply.done()
    assert [type(e) for e in w.events] == [f.Joined, f.Joined]
    mine = f.Joined(room="#a", seq=0, epoch="e1", members=(), ref=join.ident)
    w.send(mine)
    assert join.reply.value == mine


def test_an_answer_of_another_kind_settles_nothing() -> None:
    w = Wire()
    w.connect()
    join = w.core.request(f.Join(room="#a"), "join", "#a")
    w.send(f.History(room="#a", msgs=(), more=False, ref=join.ident))
    assert not join.reply.done()


def test_an_error_naming_nothing_of_ours_is_an_event() -> None:
    w = Wire()
    w.connect()
    w.events.clear()
    error = f.Error(code="bad_frame", msg="what", ref="~q42")
    w.send(error)
    assert w.events == [error]


def test_an_ack_settles_its_say_by_id_and_hands_on_our_own_message() -> None:
    w = Wire()
    w.connect()
    first, second = w.say("one"), w.say("two")
    w.written()
    w.ack(first, 1)
    assert isinstance(first.reply.value, f.Ack) and first.reply.value.seq == 1
    assert not second.reply.done()
    [own] = [e for e in w.events if isinstance(e, f.Msg)]
    assert (own.room, own.seq, own.sender, own.text, own.id) == ("#lobby", 1, "alice", "one",
                                                               "id-one")
    w.ack(second, 2)
    w.ack(second, 2)  # a second ack for it (a re-send answered twice) changes nothing
    assert w.msgs() == [("#lobby", 1), ("#lobby", 2)]
    assert len(w.core.outbox) == 0


def test_a_say_made_twice_with_one_id_is_one_entry() -> None:
    w = Wire()
    w.connect()
    assert w.say("hi", id="x") is w.say("hi", id="x")
    assert [x["id"] for x in w.written()] == ["x"]


def test_request_ids_step_around_ids_our_says_use() -> None:
    w = Wire()
    say = w.say("sneaky", id="~q1")
    request = history(w, "#a")
    assert say.ident == "~q1" and request.ident == "~q2"


@pytest.mark.parametrize("kind", ["leave", "members", "contact"])
def test_every_request_kind_is_matched_by_its_ref(kind: str) -> None:
    w = Wire()
    w.connect()
    frame, answer = {
        "leave": (f.Leave(room="#a"), lambda ref: f.Left(room="#a", ref=ref)),
        "members": (f.GetMembers(room="#a"),
                    lambda ref: f.MembersPage(room="#a", members=(), more=False, ref=ref)),
        "contact": (f.ContactRequest(op="add", name="bob"),
                    lambda ref: f.Contact(op="add", name="bob", ref=ref)),
    }[kind]
    decoy = w.core.request(frame, kind, None)
    entry = w.core.request(frame, kind, None)
    w.send(answer(entry.ident))
    assert entry.reply.done() and entry.reply.error is None
    assert not decoy.reply.done()
