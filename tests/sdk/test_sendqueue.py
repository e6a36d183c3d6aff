"""The pacing core without I/O: which frame the server's limits let out next."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack

from cfm_common import codec
from cfm_common import frames as f
from cfm_common._pacing import Pacer, reserve_of
from cfm_common._sendqueue import Outgoing, SendQueue

LIMITS = {"rates": {"say": {"per_s": 10.0, "burst": 3}, "join": {"per_s": 1.0, "burst": 1},
                    "history": {"per_s": 2.0, "burst": 2}, "typing": {"per_s": 1.0, "burst": 1},
                    "presence": {"per_s": 1.0, "burst": 2}}}


def queue(now: float = 0.0) -> SendQueue:
    q = SendQueue(codec.encode)
    q.reset(Pacer(LIMITS, now))
    return q


def entry(loop: asyncio.AbstractEventLoop, slot: int, frame: Any, kind: str) -> Outgoing:
    return Outgoing(frame, kind, None, loop.create_future(), slot)


def drain(q: SendQueue, now: float) -> list[dict[str, Any]]:
    """Every frame the queue lets out at ``now``, as the maps on the wire."""
    out = []
    while True:
        data, _ = q.next_frame(now, held=False, generation=1, read_marks=MARKS,
                               presence=lambda: f.SetPresence(status="busy"))
        if data is None:
            return out
        out.append(msgpack.unpackb(data))


MARKS: dict[str, int] = {}


def test_the_copy_keeps_a_reserve_below_the_servers_burst() -> None:
    assert [reserve_of(b) for b in (1, 2, 3, 40, 60)] == [0, 1, 1, 4, 6]
    pacer = Pacer(LIMITS, 0.0)
    assert pacer.wait("say", 0.0) == 0 and pacer.wait("unknown", 0.0) == 0
    pacer.take("say", 0.0)
    pacer.take("say", 0.0)
    assert pacer.wait("say", 0.0) > 0  # burst 3, one kept in reserve
    pacer.penalize("say", 500, 1.0)  # the server said: not before 1.5
    assert 0.49 < pacer.wait("say", 1.0) <= 0.53
    assert Pacer({}, 0.0).wait("say", 0.0) == 0  # no rates advertised: nothing waits


async def test_a_bucket_holds_back_its_own_kind_only_and_joins_are_barriers() -> None:
    loop = asyncio.get_running_loop()
    q = queue()
    says = [entry(loop, i, f.Say(text=f"s{i}", id=f"s{i}", room="#a"), "say") for i in range(4)]
    hist = entry(loop, 10, f.GetHistory(room="#a"), "history")
    join = entry(loop, 11, f.Join(room="#b"), "join")
    late = entry(loop, 12, f.GetHistory(room="#b"), "history")
    for e in (*says, hist, join, late):
        assert q.add(e)
    sent = drain(q, 0.0)
    # Two says (the third waits for a token), the history request passes the waiting
    # say; the join does not (something before it waits), nor does what follows it.
    assert [x.get("text", x["t"]) for x in sent] == ["s0", "s1", "history"]
    later = drain(q, 0.5)
    assert [x.get("text", x["t"]) for x in later] == ["s2", "s3", "join", "history"]


async def test_read_marks_coalesce_and_typing_is_dropped_over_its_budget() -> None:
    q = queue()
    MARKS.update({"#a": 7, "#b": 3})
    q.mark("#a", -1.0)
    q.mark("#a", -1.0)  # marked again before it went: one frame, the newest seq
    q.mark("#b", -1.0)
    assert q.add_typing(f.SendTyping(room="#a"), 0.0)
    assert not q.add_typing(f.SendTyping(room="#a"), 0.0)  # no token left: dropped
    q.presence = True
    sent = drain(q, 0.0)
    assert [x["t"] for x in sent] == ["typing", "presence", "read"]
    assert (sent[2]["room"], sent[2]["seq"]) == ("#a", 7)
    assert q.backlog() == 1  # #b's mark waits for the history budget (burst 2, reserve 1)
    assert [(x["room"], x["seq"]) for x in drain(q, 1.0)] == [("#b", 3)]
    q.read_refused(1000, 1.0)  # the server refused a read: the recent ones go again
    assert set(q.marks) == {"#a", "#b"}


async def test_the_inbound_byte_budget_holds_every_frame_back() -> None:
    loop = asyncio.get_running_loop()
    q = SendQueue(codec.encode)
    q.reset(Pacer({"rates": {"say": {"per_s": 1000.0, "burst": 1000}},
                   "recv": {"per_s": 10000.0, "burst": 11000}}, 0.0))
    for i in range(5):  # 4 KB each: two fit the 9,900-byte copy of the budget
        q.add(entry(loop, i, f.Say(text="x" * 4000, id=f"s{i}", room="#a"), "say"))
    assert len(drain(q, 0.0)) == 2
    data, wait = q.next_frame(0.0, held=False, generation=1, read_marks=MARKS,
                              presence=lambda: f.SetPresence())
    assert data is None and wait is not None and 0 < wait < 1  # the third say waits
    q.mark("#a", -1.0)
    MARKS["#a"] = 1
    assert [x["t"] for x in drain(q, 0.0)] == ["read"]  # a small mark still fits
    # As the budget refills: the rest of the says, two a second.
    assert [x["t"] for x in drain(q, 1.0) + drain(q, 2.0)] == ["say", "say", "say"]


async def test_a_read_mark_made_before_a_leave_goes_before_it() -> None:
    loop = asyncio.get_running_loop()
    q = queue()
    MARKS["#a"] = 4
    q.mark("#a", 0.0)  # would linger for later marks, but a leave waits to go out
    q.add(entry(loop, 1, f.Leave(room="#a"), "leave"))
    assert [x["t"] for x in drain(q, 0.0)] == ["read", "leave"]


def test_read_marks_linger_so_that_a_burst_goes_as_one() -> None:
    q = queue()
    MARKS["#c"] = 9
    q.mark("#c", 0.0)
    data, wait = q.next_frame(0.1, held=False, generation=1, read_marks=MARKS,
                              presence=lambda: f.SetPresence())
    assert data is None and wait is not None and 0.14 < wait <= 0.15
    assert [(x["room"], x["seq"]) for x in drain(q, 0.25)] == [("#c", 9)]
