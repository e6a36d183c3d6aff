"""The retry policies (cfm_common._retry), driven through the sans-I/O core: which frames
go out again, when, and when a call gives up. Time is a number the test moves."""

from __future__ import annotations

from cfm_common import frames as f
from cfm_common._outbox import Outgoing
from cfm_common._retry import INTERNAL_RETRIES, answer_deadline
from cfm_common.errors import ServerRefused
from tests.sdk.corekit import Wire

SAY_LIMITS = {"rates": {"say": {"per_s": 100.0, "burst": 100}}}


def texts(sent: list[dict]) -> list[str]:
    return [x.get("text", x["t"]) for x in sent]


def test_a_frame_refused_for_its_rate_goes_again_once_the_server_says_it_may() -> None:
    w = Wire()
    w.connect(limits=SAY_LIMITS)
    say = w.say("hi")
    assert texts(w.written()) == ["hi"]
    w.send(f.Error(code="rate_limited", msg="slow", ref=say.ident, retry_ms=500))
    assert not say.reply.done()  # not failed: it is the SDK's to send again
    assert w.written() == []
    assert 0.49 < (w.wait() or 0) <= 0.5
    w.now = 0.5
    assert [x["id"] for x in w.written()] == [say.ident]
    assert say.writes == 2


def test_a_nudge_refused_for_the_pair_interval_fails_its_call() -> None:
    w = Wire()
    w.connect()
    nudge = w.core.message(f.Nudge(to="bob", id="n1"), "nudge")
    w.written()
    w.send(f.Error(code="rate_limited", msg="one nudge at a time", ref="n1", retry_ms=900))
    assert isinstance(nudge.reply.error, ServerRefused)
    assert nudge.reply.error.retry_ms == 900


def test_frames_dropped_unread_go_again_says_and_safe_requests_but_not_contact() -> None:
    w = Wire()
    w.connect()
    say = w.say("one")
    join = w.core.request(f.Join(room="#a"), "join", "#a")
    contact = w.core.request(f.ContactRequest(op="add", name="bob"), "contact", None)
    answered = w.core.request(f.Leave(room="#b"), "leave", "#b")
    assert len(w.written()) == 4
    w.send(f.Left(room="#b", ref=answered.ident))
    w.events.clear()
    drop = f.Error(code="rate_limited", msg="over the byte budget", retry_ms=1000)
    w.send(drop)
    assert w.events == [drop]  # something was lost: the program hears of it
    w.now = 0.9
    assert w.written() == []  # everything pauses
    w.now = 1.0
    assert [x["id"] for x in w.written()] == [say.ident, join.ident]
    assert not contact.reply.done() and contact.writes == 1  # read twice: told twice


def test_a_say_the_server_could_not_store_holds_later_says_and_goes_again_first() -> None:
    w = Wire()
    w.connect()
    first = w.say("first")
    assert texts(w.written()) == ["first"]
    w.send(f.Error(code="internal", msg="disk full", ref=first.ident))
    w.say("second")
    join = w.core.request(f.Join(room="#a"), "join", "#a")
    # Requests still go; says wait, so that "second" is not stored before "first".
    assert texts(w.written()) == ["join"]
    assert 0.49 < (w.wait() or 0) <= 0.5
    w.now = 0.5
    assert texts(w.written()) == ["first", "second"]
    assert not first.reply.done() and not join.reply.done()


def test_a_say_refused_internal_too_often_fails_after_growing_waits() -> None:
    w = Wire()
    w.connect()
    say = w.say("doomed")
    w.written()
    waits = []
    for _ in range(INTERNAL_RETRIES):
        w.send(f.Error(code="internal", msg="disk full", ref=say.ident))
        assert not say.reply.done()
        waits.append(w.wait())
        w.now += waits[-1] or 0
        assert texts(w.written()) == ["doomed"]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    w.send(f.Error(code="internal", msg="disk full", ref=say.ident))
    assert isinstance(say.reply.error, ServerRefused) and say.reply.error.code == "internal"


def test_a_reconnect_sends_the_outbox_again_in_order_with_the_same_ids() -> None:
    w = Wire()
    w.connect()
    one, join, two = w.say("one"), w.core.request(f.Join(room="#a"), "join", "#a"), w.say("two")
    acked = w.say("acked")
    first = [x["id"] for x in w.written()]
    w.ack(acked, 1)
    w.drop()
    w.core.request(f.Leave(room="#a"), "leave", "#a")  # made while disconnected: last
    assert w.written() == []
    w.connect()
    again = w.written()
    assert [x["id"] for x in again[:3]] == first[:3] == [one.ident, join.ident, two.ident]
    assert [x["t"] for x in again] == ["say", "join", "say", "leave"]


def test_a_refused_read_mark_goes_again_and_a_refused_typing_is_dropped() -> None:
    w = Wire()
    w.connect()
    w.core.mark_read("#a", 7, w.now)
    w.core.typing(f.SendTyping(room="#a"), w.now)
    w.now = 1.0  # past the mark's linger
    assert [x["t"] for x in w.written()] == ["typing", "read"]
    w.send(f.Error(code="rate_limited", msg="slow", ref="read", retry_ms=500))
    w.send(f.Error(code="rate_limited", msg="slow", ref="typing", retry_ms=500))
    assert w.written() == []
    w.now = 1.5
    assert [(x["t"], x.get("seq")) for x in w.written()] == [("read", 7)]


def entry_written_at(at: float, *, unsent: bool = False) -> Outgoing:
    entry = Outgoing(f.Join(room="#a", id="~q1"), "join", "#a", slot=1)
    entry.writes, entry.written_at, entry.unsent = (0, 0.0, True) if unsent else (1, at, False)
    return entry


def test_time_spent_waiting_for_the_rate_budget_does_not_count_toward_a_timeout() -> None:
    queued = entry_written_at(0.0, unsent=True)
    assert answer_deadline(queued, 10.0, connected=True, timeout=10.0) == 20.0
    late = entry_written_at(7.0)  # written 7 s after it was made
    assert answer_deadline(late, 10.0, connected=True, timeout=10.0) == 17.0
    assert answer_deadline(late, 17.0, connected=True, timeout=10.0) is None
    assert answer_deadline(queued, 10.0, connected=False, timeout=10.0) is None


def test_a_read_mark_and_a_presence_the_server_could_not_store_go_again() -> None:
    w = Wire()
    w.connect()
    w.core.mark_read("#a", 7, w.now)
    w.core.set_presence(None, None, "exams")
    w.now = 1.0  # past the mark's linger
    assert sorted(x["t"] for x in w.written()) == ["presence", "read"]
    w.events.clear()
    for ref in ("read", "presence"):
        w.send(f.Error(code="internal", msg="not stored", ref=ref, retry_ms=500))
    assert w.events == []  # the SDK's to send again, not the program's
    assert w.written() == []
    w.now = 1.5
    again = {x["t"]: x for x in w.written()}
    assert again["read"]["seq"] == 7 and again["presence"]["psm"] == "exams"
