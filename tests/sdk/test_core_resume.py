"""Resume and gap filling (cfm_common._resume, cfm_common._gapfill) through the sans-I/O
core: every room's messages once each, in order, whatever the server sends and when."""

from __future__ import annotations

from cfm_common import frames as f
from cfm_common._gapfill import HISTORY_PAGE, OWN_ACK_GRACE, RETRY_AFTER
from tests.sdk.corekit import Wire, msg, stored

LOBBY = "#lobby"


def page_for(w: Wire, room: str, seqs: list[int], *, more: bool = False) -> None:
    """Answer the history request just written for ``room`` with ``seqs``."""
    [request] = [x for x in w.written() if x["t"] == "history"]
    assert request["room"] == room
    w.send(f.History(room=room, msgs=tuple(stored(room, s) for s in seqs), more=more,
                     ref=request["id"]))


def requests(w: Wire) -> list[tuple[str, int | None]]:
    return [(x["room"], x.get("after")) for x in w.written() if x["t"] == "history"]


def test_a_fresh_client_fetches_what_is_unread_since_the_read_mark() -> None:
    w = Wire()
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=5, read=3, epoch="e1"),))
    [request] = w.written()
    assert (request["t"], request["after"], request["limit"]) == ("history", 3, HISTORY_PAGE)
    w.send(f.History(room=LOBBY, msgs=(stored(LOBBY, 4), stored(LOBBY, 5)), more=False,
                     ref=request["id"]))
    assert w.msgs() == [(LOBBY, 4), (LOBBY, 5)]
    assert w.written() == [] and w.wait() is None  # caught up: nothing more to ask


def test_a_saved_cursor_resumes_after_it_and_a_new_epoch_starts_from_zero() -> None:
    w = Wire(handed={LOBBY: (2, "e1"), "#gone": (9, "e1")})
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=4, read=0, epoch="e1"),))
    assert requests(w) == [(LOBBY, 2)]
    assert w.core.handed == {LOBBY: (2, "e1")}  # a room we left is forgotten
    other = Wire(handed={LOBBY: (2, "e1")})
    other.connect(rooms=(f.RoomState(room=LOBBY, seq=4, read=0, epoch="e2"),))
    assert requests(other) == [(LOBBY, 0)]


def test_a_join_asks_for_the_replay_of_what_we_lack_and_pages_on_when_told_more() -> None:
    w = Wire()
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=3, read=3, epoch="e1"),))
    join = w.core.join_frame(LOBBY, None)
    assert (join.since, join.epoch) == (3, "e1")
    entry = w.core.request(join, "join", LOBBY)
    w.written()
    for seq in (4, 5):  # the replay
        w.send(msg(LOBBY, seq))
    w.send(f.Joined(room=LOBBY, seq=9, epoch="e1", members=(), more=True, ref=entry.ident))
    assert requests(w) == [(LOBBY, 5)]


def test_a_hole_in_live_traffic_is_fetched_and_everything_handed_on_once_in_order() -> None:
    w = Wire()
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=1, read=1, epoch="e1"),))
    w.send(msg(LOBBY, 2))
    w.send(msg(LOBBY, 5))  # 3 and 4 lost on the way
    assert w.msgs() == [(LOBBY, 2)]
    assert requests(w) == [(LOBBY, 2)]
    w.send(msg(LOBBY, 3))  # live, while the page is on its way
    w.send(f.History(room=LOBBY, msgs=(stored(LOBBY, 3), stored(LOBBY, 4), stored(LOBBY, 5)),
                     more=False, ref=w.core.outbox.unanswered()[0].ident))
    assert w.msgs() == [(LOBBY, 2), (LOBBY, 3), (LOBBY, 4), (LOBBY, 5)]


def test_after_a_reconnect_what_was_handed_on_is_not_handed_on_again() -> None:
    w = Wire()
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=0, read=0, epoch="e1"),))
    w.send(msg(LOBBY, 1))
    w.send(msg(LOBBY, 2))
    w.drop()
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=3, read=0, epoch="e1"),))
    page_for(w, LOBBY, [2, 3])  # asked after 2: a server that sends 2 again anyway
    w.send(msg(LOBBY, 3))
    assert w.msgs() == [(LOBBY, 1), (LOBBY, 2), (LOBBY, 3)]


def test_pages_follow_each_other_until_the_server_says_no_more() -> None:
    w = Wire()
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=5, read=0, epoch="e1"),))
    page_for(w, LOBBY, [1, 2], more=True)
    page_for(w, LOBBY, [3, 4], more=True)
    page_for(w, LOBBY, [5], more=False)
    assert w.msgs() == [(LOBBY, s) for s in (1, 2, 3, 4, 5)]
    assert requests(w) == []


def test_a_hole_the_store_lacks_is_skipped_rather_than_stall_the_room() -> None:
    w = Wire()
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=1, read=1, epoch="e1"),))
    w.send(msg(LOBBY, 5))
    page_for(w, LOBBY, [3, 4])  # 2 is gone for good
    assert w.msgs() == [(LOBBY, 3), (LOBBY, 4), (LOBBY, 5)]


def test_a_hole_right_behind_our_own_unacked_say_waits_for_its_ack_not_a_page() -> None:
    w = Wire()
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=0, read=0, epoch="e1"),))
    mine = w.say("mine")
    w.written()
    w.send(msg(LOBBY, 2))  # bob's, stored right after ours
    assert requests(w) == [] and w.wait() == OWN_ACK_GRACE
    w.ack(mine, 1)
    assert w.msgs() == [(LOBBY, 1), (LOBBY, 2)]
    assert requests(w) == [] and w.wait() is None  # the ack filled it: nothing to fetch


def test_when_our_ack_is_slow_the_hole_is_fetched_after_the_grace() -> None:
    w = Wire()
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=0, read=0, epoch="e1"),))
    w.say("mine")
    w.written()
    w.send(msg(LOBBY, 2))
    w.now = OWN_ACK_GRACE - 0.1
    assert requests(w) == []
    w.now = OWN_ACK_GRACE
    assert requests(w) == [(LOBBY, 0)]


def test_a_page_request_with_no_answer_is_asked_again() -> None:
    w = Wire(request_timeout=10.0)
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=2, read=0, epoch="e1"),))
    [first] = w.written()
    assert w.wait() == 10.0
    w.now = 10.0
    assert w.written() == [] and w.wait() == RETRY_AFTER
    w.now = 10.0 + RETRY_AFTER
    [again] = w.written()
    assert again["after"] == 0 and again["id"] != first["id"]
    # The first one's answer, late, is nobody's: the second one's is taken.
    w.send(f.History(room=LOBBY, msgs=(stored(LOBBY, 1),), more=False, ref=first["id"]))
    assert w.msgs() == []
    w.send(f.History(room=LOBBY, msgs=(stored(LOBBY, 1), stored(LOBBY, 2)), more=False,
                     ref=again["id"]))
    assert w.msgs() == [(LOBBY, 1), (LOBBY, 2)]


def test_a_fill_asked_for_again_while_running_goes_round_once_more() -> None:
    w = Wire()
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=2, read=0, epoch="e1"),))
    assert requests(w) == [(LOBBY, 0)]
    w.send(msg(LOBBY, 4))  # a new hole while the first page is on its way
    w.send(f.History(room=LOBBY, msgs=(stored(LOBBY, 1), stored(LOBBY, 2)), more=False,
                     ref=w.core.outbox.unanswered()[0].ident))
    assert requests(w) == [(LOBBY, 2)]


def test_a_dropped_connection_withdraws_the_fills_and_the_welcome_starts_them_again() -> None:
    w = Wire()
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=2, read=0, epoch="e1"),))
    assert requests(w) == [(LOBBY, 0)]
    w.drop()
    assert len(w.core.outbox) == 0  # not sent again by the reconnect: the fill asks anew
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=3, read=0, epoch="e1"),))
    assert requests(w) == [(LOBBY, 0)]


def test_a_replay_broken_off_after_its_joined_is_fetched_after_retry_ms() -> None:
    """The server's read budget (or Redis out of reach) ended a join's replay after its
    ``joined``, with an error naming the join: what it lacks is asked with
    ``history{after}`` once ``retry_ms`` has passed, and the error fails nothing."""
    w = Wire()
    w.connect(rooms=(f.RoomState(room=LOBBY, seq=3, read=3, epoch="e1"),))
    entry = w.core.request(w.core.join_frame(LOBBY, None), "join", LOBBY)
    w.written()
    w.send(f.Joined(room=LOBBY, seq=9, epoch="e1", members=(), more=False, ref=entry.ident))
    w.send(msg(LOBBY, 4))  # the replay, broken off after seq 4
    w.send(f.Error(code="rate_limited", msg="too much history read", ref=entry.ident,
                   retry_ms=1500))
    assert entry.reply.done() and entry.reply.error is None
    assert requests(w) == []  # not before retry_ms
    w.now += 1.5
    [request] = [x for x in w.written() if x["t"] == "history"]
    assert (request["room"], request["after"]) == (LOBBY, 4)
    w.send(f.History(room=LOBBY, msgs=tuple(stored(LOBBY, s) for s in range(5, 10)),
                     more=False, ref=request["id"]))
    assert w.msgs() == [(LOBBY, s) for s in range(4, 10)]


def test_a_dm_whose_other_account_is_removed_takes_the_new_holders_room_from_seq_1() -> None:
    """A DM member leave means the other account is gone and its room archived; a new
    account with that handle has a new DM room, seq 1 on: handed on, not taken for
    seqs already seen (protocol.md, "A removed account")."""
    dm = "dm:alice:bob"
    w = Wire()
    w.connect(rooms=(f.RoomState(room=dm, seq=3, read=3, epoch="e1"),))
    w.send(msg(dm, 4))
    assert w.msgs() == [(dm, 4)]
    w.send(f.Member(room=dm, name="alice", op="leave"))  # not us: nothing forgotten
    w.send(msg(dm, 5))
    w.send(f.Member(room=dm, name="bob", op="leave"))
    assert dm not in w.core.handed
    w.send(msg(dm, 1, text="hi from the new bob"))
    w.send(msg(dm, 2))
    assert w.msgs()[-2:] == [(dm, 1), (dm, 2)]
