"""Connection states as a table (cfm_common._states) and the reconnect schedule
(cfm_common._reconnect), without a network or a clock."""

from __future__ import annotations

import random

import pytest

from cfm_common import frames as f
from cfm_common._backoff import Backoff
from cfm_common._connect import retry_after_ms
from cfm_common._reconnect import RESTART_CAP, STABLE_AFTER, Reconnect, round_error
from cfm_common._states import (
    TRANSITIONS,
    Connected,
    ConnectionState,
    InvalidTransition,
    StateChanged,
)
from cfm_common.errors import ConnectCause, ConnectFailed, ConnectionClosed, ServerRefused
from cfm_common.servers import ServerList
from tests.sdk.corekit import Wire

S = ConnectionState


def test_every_state_can_be_reached_and_left_for_closed() -> None:
    reached = {new for targets in TRANSITIONS.values() for new in targets}
    assert reached == set(S)
    assert all(S.CLOSED in targets for targets in TRANSITIONS.values())


def test_a_move_the_table_does_not_allow_is_refused() -> None:
    w = Wire()
    with pytest.raises(InvalidTransition):
        w.core.set_state(S.CONNECTED)  # not without connecting first
    w.connect()
    with pytest.raises(InvalidTransition):
        w.core.set_state(S.CONNECTING)  # connected: it must be lost first
    assert w.core.state is S.CONNECTED


def test_connecting_tells_the_program_each_state_then_connected() -> None:
    w = Wire()
    welcome = w.connect()
    assert w.events == [StateChanged(S.CONNECTING), StateChanged(S.CONNECTED),
                        Connected(welcome)]


def test_the_end_fails_every_entry_and_later_calls_carry_the_close_code() -> None:
    w = Wire()
    w.connect()
    say = w.say("hi")
    ended = ConnectionClosed("closed with code 4003", close_code=4003)
    w.core.end(ended)
    assert say.reply.error is ended
    assert w.core.state is S.CLOSED
    assert w.events[-1] == StateChanged(S.CLOSED, None, str(ended), error=ended)
    with pytest.raises(ConnectionClosed) as later:
        w.say("again")
    assert later.value.close_code == 4003 and later.value.code == "closed"


def test_while_disconnected_everything_waits_and_goes_out_after_the_welcome() -> None:
    w = Wire()
    w.connect()
    w.drop()
    say = w.say("while away")
    w.core.mark_read("#a", 3, w.now)
    assert w.written() == [] and not say.reply.done()
    w.connect(rooms=(f.RoomState(room="#a", seq=3, read=1, epoch="e1"),))
    # The mark (still ahead of the server's 1), the say, then the unread messages.
    assert [x["t"] for x in w.written()] == ["read", "say", "history"]


def schedule(*urls: str) -> Reconnect:
    return Reconnect(ServerList(urls), Backoff(0.5, 30.0, rng=random.Random(1)))


def test_another_url_is_tried_at_once_and_a_whole_round_backs_off() -> None:
    r = schedule("ws://a/ws", "ws://b/ws")
    assert r.lost(1006, lived=1.0, now=0.0)
    assert r.servers.current == "ws://b/ws" and r.delay(0.0) == 0.0
    refused = ConnectFailed(ConnectCause.REFUSED, "ws://b/ws", "cannot reach ws://b/ws")
    assert r.reconnect_failed(refused, 0.0)  # b failed too: the round is over
    assert 0.25 <= r.delay(0.0) <= 0.5


def test_after_a_restart_the_back_off_stays_short_for_a_while() -> None:
    r = schedule("ws://a/ws")
    assert r.lost(1012, lived=1.0, now=0.0)
    short = [r.delay(1.0) for _ in range(10)]
    assert max(short) <= RESTART_CAP
    assert r.lost(1001, lived=1.0, now=100.0)
    normal = [r.delay(100.0) for _ in range(10)]
    assert max(normal) > RESTART_CAP


def test_a_servers_hint_is_waited_for_spread_and_the_back_off_does_not_grow() -> None:
    r = schedule("ws://a/ws")
    r.lost(1006, lived=1.0, now=0.0)
    r.delay(0.0)
    busy = ServerRefused("internal", "cannot sign you in now", 2000, ref="hello")
    for n in range(20):  # twenty refusals in a row: each wait is the hint's, spread
        assert r.reconnect_failed(busy, float(n))
        assert 2.0 <= r.delay(float(n)) <= 3.0
    assert r.backoff.attempt == 1  # only the wait after the drop moved it
    tiny = ServerRefused("internal", "soon", 10)  # never sooner than the back-off's base
    r.reconnect_failed(tiny, 30.0)
    assert 0.5 <= r.delay(30.0) <= 0.75


def test_an_answer_that_says_not_now_keeps_the_back_off_short() -> None:
    unavailable = ConnectFailed(ConnectCause.HTTP_STATUS, "ws://a/ws", "503", status=503)
    dead = ConnectFailed(ConnectCause.REFUSED, "ws://a/ws", "cannot reach ws://a/ws")
    for failure, short in ((unavailable, True), (dead, False)):
        r = schedule("ws://a/ws")
        r.lost(1006, lived=1.0, now=0.0)
        delays = []
        for n in range(12):
            delays.append(r.delay(float(n)))
            r.reconnect_failed(failure, float(n))
        assert (max(delays) <= RESTART_CAP) is short, delays
    r = schedule("ws://a/ws")
    r.lost(1006, lived=1.0, now=0.0)
    r.reconnect_failed(unavailable, 0.0)
    for n in range(12):  # a minute later, still not ready: the back-off grows again
        r.reconnect_failed(unavailable, 61.0 + n)
        r.delay(61.0 + n)
    assert r.delay(80.0) > RESTART_CAP
    r = schedule("ws://a/ws")
    r.lost(1013, lived=1.0, now=0.0)  # try again later: as after a restart
    assert max(r.delay(1.0) for _ in range(10)) <= RESTART_CAP


def test_retry_after_is_a_hint_in_seconds_on_a_503_or_429_only() -> None:
    assert retry_after_ms(503, {"Retry-After": "2"}) == 2000
    assert retry_after_ms(429, {"Retry-After": " 7 "}) == 7000
    assert retry_after_ms(503, {"Retry-After": "Fri, 31 Dec 1999 23:59:59 GMT"}) is None
    assert retry_after_ms(502, {"Retry-After": "2"}) is None
    assert retry_after_ms(503, {}) is None


def test_a_stable_connection_starts_the_back_off_over_and_an_identity_close_is_final() -> None:
    r = schedule("ws://a/ws")
    r.lost(1006, lived=1.0, now=0.0)
    for _ in range(6):
        r.delay(0.0)
    assert r.backoff.attempt == 6
    r.lost(1006, lived=STABLE_AFTER, now=50.0)
    assert r.backoff.attempt == 0
    assert not r.lost(4003, lived=1.0, now=60.0)  # bad token: no reconnect mends it


def test_a_round_of_failed_connects_is_one_error_that_names_each_url() -> None:
    r = schedule("ws://a/ws", "ws://b/ws")
    refused = ConnectFailed(ConnectCause.REFUSED, "ws://a/ws", "cannot reach ws://a/ws")
    assert r.connect_failed("ws://a/ws", refused, 0.0) is None  # b is next, at once
    dns = ConnectFailed(ConnectCause.DNS, "ws://b/ws", "cannot reach ws://b/ws")
    result = r.connect_failed("ws://b/ws", dns, 0.0)
    assert result is not None
    error, again = result
    assert isinstance(error, ConnectFailed) and error.cause is ConnectCause.SEVERAL
    assert set(error.by_url) == {"ws://a/ws", "ws://b/ws"} and again
    taken = {u: ServerRefused("name_taken", "taken") for u in ("ws://a/ws", "ws://b/ws")}
    both = round_error(dict(taken))
    assert isinstance(both, ServerRefused) and both.code == "name_taken"
