"""Message changes and moderators in the sans-I/O core (cfm_common._core): a change is a
message (acked by id, sent again with the same id, held behind a say the server could
not store, our own entry made from its ack) and a ``moderators`` answer is matched by
its request id. The server is played by hand (tests/sdk/corekit.py)."""

from __future__ import annotations

from cfm_common import frames as f
from cfm_common._outbox import Outgoing
from tests.sdk.corekit import Wire


def change(w: Wire, frame: f.Edit | f.Delete | f.React | f.Unreact) -> Outgoing:
    return w.core.message(frame, frame.T)


def ack(w: Wire, entry: Outgoing, seq: int) -> None:
    w.send(f.Ack(room="#lobby", seq=seq, ts=2000 + seq, id=entry.ident))


def test_each_change_is_acked_by_its_id_and_becomes_our_own_entry_as_others_see_it() -> None:
    w = Wire()
    w.connect(rooms=(f.RoomState(room="#lobby", seq=0, read=0, epoch="e1"),))
    said = w.core.message(f.Say(text="hi", id="s1", room="#lobby", reply=None), "say")
    answer = w.core.message(f.Say(text="re", id="s2", room="#lobby", reply=1), "say")
    entries = [
        change(w, f.Edit(room="#lobby", target=1, text="hello", id="e1")),
        change(w, f.React(room="#lobby", target=1, emoji="👍", id="r1")),
        change(w, f.Unreact(room="#lobby", target=1, emoji="👍", id="u1")),
        change(w, f.Delete(room="#lobby", target=2, id="d1")),
    ]
    assert [x["t"] for x in w.written()] == ["say", "say", "edit", "react", "unreact", "delete"]
    for seq, entry in enumerate([said, answer, *entries], start=1):
        ack(w, entry, seq)
        assert entry.reply.done() and entry.reply.value.seq == seq
    own = [e for e in w.events if isinstance(e, f.Msg)]
    assert [(m.seq, m.sender, m.id) for m in own] == [
        (1, "alice", "s1"), (2, "alice", "s2"), (3, "alice", "e1"), (4, "alice", "r1"),
        (5, "alice", "u1"), (6, "alice", "d1")]
    assert [m.reply for m in own[:2]] == [None, 1]
    assert [(m.change, m.target, m.text, m.emoji) for m in own[2:]] == [
        ("edit", 1, "hello", None), ("react", 1, "👍", "👍"), ("unreact", 1, "", "👍"),
        ("delete", 2, "", None)]
    assert [m.is_change for m in own] == [False, False, True, True, True, True]
    assert len(w.core.outbox) == 0


def test_the_same_id_twice_is_one_pending_change() -> None:
    w = Wire()
    w.connect()
    first = change(w, f.React(room="#lobby", target=1, emoji="👍", id="r1"))
    again = change(w, f.React(room="#lobby", target=1, emoji="👍", id="r1"))
    assert again is first
    assert [x["id"] for x in w.written()] == ["r1"]


def test_a_reconnect_sends_unacked_changes_again_in_order_with_the_same_ids() -> None:
    w = Wire()
    w.connect()
    react = change(w, f.React(room="#lobby", target=1, emoji="👍", id="r1"))
    edit = change(w, f.Edit(room="#lobby", target=1, text="fixed", id="e1"))
    assert [x["id"] for x in w.written()] == ["r1", "e1"]
    w.drop()
    w.connect()
    again = w.written()
    assert [(x["t"], x["id"]) for x in again] == [("react", "r1"), ("edit", "e1")]
    assert not react.reply.done() and not edit.reply.done()


def test_a_change_waits_behind_a_say_the_server_could_not_store() -> None:
    # The server applies changes in seq order: an edit made while a refused say waits
    # to go again must not overtake it (it may be about that very say).
    w = Wire()
    w.connect()
    say = w.say("one")
    assert [x["t"] for x in w.written()] == ["say"]
    w.send(f.Error(code="internal", msg="disk", ref=say.ident))
    change(w, f.Edit(room="#lobby", target=1, text="fixed", id="e1"))
    assert w.written() == []
    w.now += 10
    assert [(x["t"], x["id"]) for x in w.written()] == [("say", say.ident), ("edit", "e1")]


def test_a_change_refused_for_good_fails_its_call_with_the_servers_code() -> None:
    w = Wire()
    w.connect()
    edit = change(w, f.Edit(room="#lobby", target=1, text="not mine", id="e1"))
    w.written()
    w.send(f.Error(code="forbidden", msg="not your message", ref="e1"))
    assert edit.reply.done() and getattr(edit.reply.error, "code", None) == "forbidden"
    assert not [e for e in w.events if isinstance(e, f.Error)]


def test_a_moderators_answer_goes_to_its_request_and_one_without_ref_is_an_event() -> None:
    w = Wire()
    w.connect()
    asked = w.core.request(f.SetModerators(room="#games", add="bob"), "moderators", "#games")
    (sent,) = w.written()
    assert sent["t"] == "moderators" and sent["add"] == "bob"
    answer = f.Moderators(room="#games", names=("alice", "bob"), creator="alice",
                          ref=asked.ident)
    w.send(answer)
    assert asked.reply.value == answer
    elsewhere = f.Moderators(room="#games", names=("alice",), creator="alice")
    w.send(elsewhere)
    assert [e for e in w.events if isinstance(e, f.Moderators)] == [elsewhere]
