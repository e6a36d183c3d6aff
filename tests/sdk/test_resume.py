"""Gap and duplicate bookkeeping (cfm_common._resume), without a network."""

from __future__ import annotations

import random

from cfm_common._resume import Resume
from cfm_common.frames import Joined, Msg, RoomState


def msg(seq: int, room: str = "#lobby") -> Msg:
    return Msg(room, seq, "bob", f"m{seq}", 1_700_000_000_000 + seq, "text", f"id{seq}")


def seqs(msgs: list[Msg]) -> list[int]:
    return [m.seq for m in msgs]


def test_in_order_messages_pass_straight_through() -> None:
    resume = Resume({"#lobby": (0, "e1")})
    assert seqs(resume.offer(msg(1))) == [1]
    assert seqs(resume.offer(msg(2))) == [2]
    assert resume.delivered("#lobby") == 2


def test_duplicates_are_dropped() -> None:
    resume = Resume({"#lobby": (3, "e1")})
    assert resume.offer(msg(2)) == []
    assert resume.offer(msg(3)) == []
    assert seqs(resume.offer(msg(4))) == [4]
    assert resume.offer(msg(4)) == []


def test_messages_ahead_of_a_gap_wait_until_it_is_filled() -> None:
    resume = Resume({"#lobby": (1, "e1")})
    assert resume.offer(msg(4)) == []
    assert resume.offer(msg(3)) == []
    assert resume.offer(msg(4)) == []  # a duplicate of a buffered one
    assert resume.has_gap("#lobby")
    assert seqs(resume.offer(msg(2))) == [2, 3, 4]
    assert not resume.has_gap("#lobby")


def test_any_interleaving_of_live_and_fetched_yields_each_seq_once_in_order() -> None:
    rng = random.Random(7)
    for _ in range(200):
        # Live messages arrive in order from some point; history pages arrive in order
        # from the start; both overlap, in any interleaving, with repeats.
        n = rng.randint(1, 40)
        live_from = rng.randint(1, n)
        live = [msg(s) for s in range(live_from, n + 1)]
        fetched = [msg(s) for s in range(1, n + 1)]
        resume = Resume({"#lobby": (0, "e1")})
        out: list[int] = []
        while live or fetched:
            source = live if (live and (not fetched or rng.random() < 0.5)) else fetched
            m = source.pop(0)
            out += seqs(resume.offer(m))
            if rng.random() < 0.2:
                out += seqs(resume.offer(m))  # a repeat
        assert out == list(range(1, n + 1))


def test_first_welcome_counts_up_to_the_read_mark_as_seen() -> None:
    resume = Resume()
    to_fetch = resume.on_welcome([RoomState("#lobby", 10, 7, "e1"), RoomState("#a", 5, 5, "e2")])
    assert to_fetch == ["#lobby"]
    assert resume.delivered("#lobby") == 7
    assert resume.delivered("#a") == 5


def test_welcome_fetches_rooms_that_moved_past_what_was_handed_over() -> None:
    resume = Resume({"#lobby": (4, "e1"), "#quiet": (9, "e1")})
    to_fetch = resume.on_welcome([RoomState("#lobby", 6, 0, "e1"), RoomState("#quiet", 9, 0, "e1")])
    assert to_fetch == ["#lobby"]
    assert resume.delivered("#lobby") == 4  # from the saved state, not the read mark


def test_a_new_epoch_resets_the_room_to_zero() -> None:
    resume = Resume({"#lobby": (40, "old")})
    resume.offer(msg(43))  # buffered ahead of a gap in the old sequence
    to_fetch = resume.on_welcome([RoomState("#lobby", 3, 0, "new")])
    assert to_fetch == ["#lobby"]
    assert resume.delivered("#lobby") == 0
    assert not resume.has_gap("#lobby")
    assert resume.epoch("#lobby") == "new"
    assert seqs(resume.offer(msg(1))) == [1]


def test_rooms_missing_from_welcome_are_forgotten() -> None:
    resume = Resume({"#gone": (4, "e1")})
    resume.on_welcome([])
    assert "#gone" not in resume.rooms


def test_join_of_a_known_room_asks_for_what_is_missing() -> None:
    resume = Resume({"#lobby": (4, "e1")})
    assert resume.join_since("#lobby") == (4, "e1")
    assert resume.join_since("#new") == (None, None)


def test_joined_of_a_new_room_starts_at_its_latest_seq() -> None:
    resume = Resume()
    assert resume.on_joined(Joined("#new", 12, "e1", ())) is False
    assert resume.offer(msg(12, "#new")) == []
    assert seqs(resume.offer(msg(13, "#new"))) == [13]


def test_joined_with_reset_starts_from_zero_and_more_asks_for_a_fetch() -> None:
    resume = Resume({"#lobby": (50, "e1")})
    assert resume.on_joined(Joined("#lobby", 300, "e2", (), more=True, reset=True)) is True
    assert resume.delivered("#lobby") == 0


def test_an_unknown_dm_room_is_taken_from_the_start_and_a_group_room_from_here() -> None:
    resume = Resume()
    assert resume.offer(msg(3, "dm:alice:bob")) == []
    assert resume.has_gap("dm:alice:bob")
    assert seqs(resume.offer(msg(8, "#other"))) == [8]


def test_skip_gap_releases_what_waits_behind_an_unfillable_hole() -> None:
    resume = Resume({"#lobby": (1, "e1")})
    resume.offer(msg(4))
    resume.offer(msg(5))
    assert seqs(resume.skip_gap("#lobby")) == [4, 5]
    assert resume.skip_gap("#lobby") == []
