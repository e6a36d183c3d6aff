"""The per-room tracker alone: order, duplicates and gaps as pure logic."""

from __future__ import annotations

from cfm_server.cluster.tracker import RoomTracker


def delivered(out) -> list[int]:
    return [d.seq for d in out]


def test_in_order_messages_pass_and_duplicates_do_not():
    t = RoomTracker("#r")
    assert delivered(t.head(0, "e")) == []
    assert delivered(t.offer(1, "o", b"1")) == [1]
    assert delivered(t.offer(1, "o", b"1")) == []  # the published copy of our own append
    assert delivered(t.offer(2, "o", b"2")) == [2]
    assert t.gap() is None


def test_a_jump_is_held_until_the_gap_is_filled_then_all_follow_in_order():
    t = RoomTracker("#r")
    t.head(3, "e")
    assert delivered(t.offer(6, "o", b"6")) == []
    assert delivered(t.offer(7, "o", b"7")) == []
    assert t.gap() == (3, 5)
    assert delivered(t.offer(4, "o", b"4")) == [4]
    assert t.gap() == (4, 5)
    assert delivered(t.offer(5, "o", b"5")) == [5, 6, 7]
    assert t.gap() is None and t.last == 7


def test_before_the_head_is_known_everything_waits_and_the_head_drops_what_it_covers():
    t = RoomTracker("#r")
    assert delivered(t.offer(5, "o", b"5")) == []
    assert delivered(t.offer(6, "o", b"6")) == []
    assert t.gap() is None  # nothing to fill before the head is known
    assert delivered(t.head(5, "e")) == [6]


def test_a_head_read_after_a_reconnect_names_the_gap_to_fill():
    t = RoomTracker("#r")
    t.head(2, "e")
    assert t.head(9, "e") == []
    assert t.gap() == (2, 9)


def test_seqs_gone_from_the_stream_are_skipped_and_the_rest_follows():
    t = RoomTracker("#r")
    t.head(1, "e")
    t.offer(5, "o", b"5")
    assert delivered(t.skip_to(4)) == [5]
    assert t.gap() is None


def test_an_epoch_change_starts_the_sequence_again():
    t = RoomTracker("#r")
    t.head(10, "old")
    t.offer(12, "o", b"12")
    t.restart("new", 0)
    assert t.epoch == "new" and t.held == {}
    assert delivered(t.offer(1, "o", b"1")) == [1]
