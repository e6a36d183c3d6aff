"""The behaviour every Store shares; each test runs against every implementation."""

from __future__ import annotations

import pytest

from cfm_common.frames import StoredMsg
from cfm_server.store import ContactRecord, RoomRecord, Store, StoreError, UserRecord


def message(room: str, seq: int, *, sender: str = "alice", client_id: str | None = None,
            kind: str = "text") -> StoredMsg:
    return StoredMsg(room, seq, sender, f"hello {seq}", 1_700_000_000_000 + seq, kind,
                     client_id if client_id is not None else f"c{room}{seq}")


async def fill(store: Store, room: str, count: int) -> list[StoredMsg]:
    messages = [message(room, seq) for seq in range(1, count + 1)]
    for msg in messages:
        store.append(msg)
    await store.flush()
    return messages


def seqs(messages: list[StoredMsg]) -> list[int]:
    return [m.seq for m in messages]


# --- users, rooms, members, contacts, reads ----------------------------------------


async def test_put_user_round_trips_and_replaces(store: Store) -> None:
    alice = UserRecord("alice", "ab" * 32, "Alice", "hi", "busy", False, 1_700_000_000_000)
    bot = UserRecord("echo", "cd" * 32, "Echo", "", "online", True, 1_700_000_000_001)
    await store.put_user(alice)
    await store.put_user(bot)
    assert sorted(store.load_users(), key=lambda u: u.name) == [alice, bot]

    renamed = UserRecord("alice", "ef" * 32, "Alice 2", "", "away", False, 1_700_000_000_000)
    await store.put_user(renamed)
    assert sorted(store.load_users(), key=lambda u: u.name) == [renamed, bot]


async def test_invite_uses_are_counted_one_sign_up_at_a_time(store: Store) -> None:
    assert store.load_invite_uses() == {}
    for _ in range(3):
        await store.count_invite_use("n0nce")
    await store.count_invite_use("other")
    assert store.load_invite_uses() == {"n0nce": 3, "other": 1}


async def test_put_user_keeps_what_was_written(store: Store) -> None:
    alice = UserRecord("alice", "ab" * 32, "Alice", "", "online", False, 1)
    await store.put_user(alice)
    alice.display = "changed after the write"
    assert [u.display for u in store.load_users()] == ["Alice"]


async def test_put_room_seq_follows_the_messages(store: Store) -> None:
    await store.put_room(RoomRecord("#lobby", 0, "e1"))
    # The record's seq is ignored: the latest stored message decides it.
    await store.put_room(RoomRecord("#empty", 99, "e2"))
    await fill(store, "#lobby", 3)
    assert sorted((r.room, r.seq, r.epoch) for r in store.load_rooms()) == [
        ("#empty", 0, "e2"), ("#lobby", 3, "e1"),
    ]


async def test_put_room_replaces_the_epoch(store: Store) -> None:
    await store.put_room(RoomRecord("#lobby", 0, "old"))
    await fill(store, "#lobby", 2)
    await store.put_room(RoomRecord("#lobby", 0, "new"))
    assert [(r.room, r.seq, r.epoch) for r in store.load_rooms()] == [("#lobby", 2, "new")]


async def test_a_room_with_messages_but_no_record_loads_with_an_empty_epoch(
    store: Store
) -> None:
    # The room's own write was lost (its batch failed) but its messages were committed:
    # the room must still load, or its messages could never be read again.
    await store.put_room(RoomRecord("#kept", 0, "e1"))
    await fill(store, "#kept", 2)
    await fill(store, "#lost", 3)
    await fill(store, "dm:alice:bob", 1)
    assert sorted((r.room, r.seq, r.epoch) for r in store.load_rooms()) == [
        ("#kept", 2, "e1"), ("#lost", 3, ""), ("dm:alice:bob", 1, ""),
    ]


async def test_members_add_is_idempotent_and_remove_works(store: Store) -> None:
    await store.add_member("#lobby", "alice")
    await store.add_member("#lobby", "alice")
    await store.add_member("#lobby", "bob")
    await store.add_member("dm:alice:bob", "alice")
    assert sorted(store.load_members()) == [
        ("#lobby", "alice"), ("#lobby", "bob"), ("dm:alice:bob", "alice"),
    ]
    await store.remove_member("#lobby", "alice")
    await store.remove_member("#lobby", "nobody")
    assert sorted(store.load_members()) == [("#lobby", "bob"), ("dm:alice:bob", "alice")]


async def test_put_contact_replaces_and_deletes_without_flags(store: Store) -> None:
    await store.put_contact(ContactRecord("alice", "bob", True, False))
    await store.put_contact(ContactRecord("alice", "carol", False, True))
    await store.put_contact(ContactRecord("bob", "alice", True, False))
    await store.put_contact(ContactRecord("alice", "bob", True, True))
    assert sorted(store.load_contacts(), key=lambda c: (c.owner, c.name)) == [
        ContactRecord("alice", "bob", True, True),
        ContactRecord("alice", "carol", False, True),
        ContactRecord("bob", "alice", True, False),
    ]
    await store.put_contact(ContactRecord("alice", "bob", False, False))
    await store.put_contact(ContactRecord("alice", "never-there", False, False))
    assert sorted((c.owner, c.name) for c in store.load_contacts()) == [
        ("alice", "carol"), ("bob", "alice"),
    ]


async def test_read_marks_round_trip_and_replace(store: Store) -> None:
    await store.set_read("alice", "#lobby", 3)
    await store.set_read("alice", "dm:alice:bob", 1)
    await store.set_read("bob", "#lobby", 2)
    await store.set_read("alice", "#lobby", 7)
    assert sorted(store.load_reads()) == [
        ("alice", "#lobby", 7), ("alice", "dm:alice:bob", 1), ("bob", "#lobby", 2),
    ]


async def test_empty_store_loads_nothing(store: Store) -> None:
    assert list(store.load_users()) == []
    assert list(store.load_rooms()) == []
    assert list(store.load_members()) == []
    assert list(store.load_contacts()) == []
    assert list(store.load_reads()) == []


# --- messages ----------------------------------------------------------------------


async def test_append_then_read_back_every_field(store: Store) -> None:
    nudge = StoredMsg("dm:alice:bob", 1, "alice", "", 1_700_000_000_123, "nudge", None)
    text = StoredMsg("dm:alice:bob", 2, "bob", "héllo ☃\nline", 1_700_000_000_456, "text",
                     "b-1")
    await store.append(nudge)
    await store.append(text)
    assert store.history_after("dm:alice:bob", 0, 10) == [nudge, text]
    assert store.history_before("dm:alice:bob", None, 10) == [nudge, text]


async def test_writes_are_visible_before_their_commit_completes(store: Store) -> None:
    commit = store.append(message("#lobby", 1))
    assert seqs(store.history_before("#lobby", None, 5)) == [1]
    await commit


async def test_find_message_by_sender_and_client_id(store: Store) -> None:
    first = message("#lobby", 1, sender="alice", client_id="x1")
    other = message("#lobby", 2, sender="bob", client_id="x1")
    await store.append(first)
    await store.append(other)
    assert store.find_message("alice", "x1") == first
    assert store.find_message("bob", "x1") == other
    assert store.find_message("alice", "x2") is None
    assert store.find_message("carol", "x1") is None


async def test_messages_without_client_id_are_all_kept(store: Store) -> None:
    await store.append(StoredMsg("dm:a1:b1", 1, "a1", "", 1, "nudge", None))
    await store.append(StoredMsg("dm:a1:b1", 2, "a1", "", 2, "nudge", None))
    assert seqs(store.history_after("dm:a1:b1", 0, 10)) == [1, 2]


async def test_append_rejects_a_gap_or_a_repeated_seq(store: Store) -> None:
    await fill(store, "#lobby", 2)
    with pytest.raises(StoreError):
        await store.append(message("#lobby", 4))
    with pytest.raises(StoreError):
        await store.append(message("#lobby", 2, client_id="again"))
    with pytest.raises(StoreError):
        await store.append(message("#other", 2))
    await store.append(message("#lobby", 3))
    assert seqs(store.history_after("#lobby", 0, 10)) == [1, 2, 3]


async def test_append_rejects_a_repeated_client_id(store: Store) -> None:
    await store.append(message("#lobby", 1, client_id="same"))
    with pytest.raises(StoreError):
        await store.append(message("#lobby", 2, client_id="same"))
    assert seqs(store.history_after("#lobby", 0, 10)) == [1]
    # The failed append left nothing behind: seq 2 is still free.
    await store.append(message("#lobby", 2, client_id="different"))


async def test_rooms_have_separate_sequences(store: Store) -> None:
    await fill(store, "#a", 3)
    await fill(store, "#b", 1)
    assert seqs(store.history_after("#a", 0, 10)) == [1, 2, 3]
    assert seqs(store.history_after("#b", 0, 10)) == [1]


# --- history paging ----------------------------------------------------------------


async def test_history_of_an_empty_or_unknown_room(store: Store) -> None:
    await store.put_room(RoomRecord("#empty", 0, "e"))
    for room in ("#empty", "#unknown"):
        assert store.history_before(room, None, 50) == []
        assert store.history_before(room, 5, 50) == []
        assert store.history_after(room, 0, 50) == []


async def test_history_before_pages_down_to_the_first_message(store: Store) -> None:
    await fill(store, "#lobby", 10)
    assert seqs(store.history_before("#lobby", None, 3)) == [8, 9, 10]
    assert seqs(store.history_before("#lobby", 8, 3)) == [5, 6, 7]
    assert seqs(store.history_before("#lobby", 5, 3)) == [2, 3, 4]
    assert seqs(store.history_before("#lobby", 2, 3)) == [1]
    assert store.history_before("#lobby", 1, 3) == []


async def test_history_before_with_a_limit_larger_than_the_room(store: Store) -> None:
    await fill(store, "#lobby", 4)
    assert seqs(store.history_before("#lobby", None, 200)) == [1, 2, 3, 4]
    assert seqs(store.history_before("#lobby", 99, 200)) == [1, 2, 3, 4]
    assert seqs(store.history_before("#lobby", 4, 200)) == [1, 2, 3]


async def test_history_after_pages_up_to_the_latest(store: Store) -> None:
    await fill(store, "#lobby", 10)
    assert seqs(store.history_after("#lobby", 0, 4)) == [1, 2, 3, 4]
    assert seqs(store.history_after("#lobby", 4, 4)) == [5, 6, 7, 8]
    assert seqs(store.history_after("#lobby", 8, 4)) == [9, 10]
    assert store.history_after("#lobby", 10, 4) == []
    assert store.history_after("#lobby", 50, 4) == []
    assert seqs(store.history_after("#lobby", 0, 200)) == list(range(1, 11))


async def test_history_with_a_zero_limit_is_empty(store: Store) -> None:
    await fill(store, "#lobby", 3)
    assert store.history_before("#lobby", None, 0) == []
    assert store.history_after("#lobby", 0, 0) == []


# --- lifecycle ---------------------------------------------------------------------


async def test_close_is_idempotent_and_later_writes_fail(store: Store) -> None:
    await store.close()
    await store.close()
    with pytest.raises(StoreError):
        await store.set_read("alice", "#lobby", 1)
