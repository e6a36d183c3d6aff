"""Retention in every store: the cut by age and by size, and deleting below it; a room's
latest message always stays (it carries the room's seq)."""

from __future__ import annotations

from cfm_common.frames import StoredMsg
from cfm_server.store import Store

ROOM = "#lobby"


async def fill(store: Store, n: int) -> None:
    for seq in range(1, n + 1):  # ts = seq; text of 10 bytes each
        store.append(StoredMsg(ROOM, seq, "alice", f"message{seq:03d}"[:10], seq, "text",
                               f"c{seq}"))
    await store.flush()


async def test_the_cut_by_age_and_by_size(store: Store) -> None:
    await fill(store, 10)
    assert store.retention_cut(ROOM, None, None) is None
    assert store.retention_cut(ROOM, 6, None) == (1, 6)  # ts >= 6 stays
    assert store.retention_cut(ROOM, 100, None) == (1, 10)  # the latest always stays
    assert store.retention_cut(ROOM, None, 35) == (1, 8)  # 3 messages fit in 35 bytes
    assert store.retention_cut(ROOM, 3, 35) == (1, 8)  # the stricter of the two
    assert store.retention_cut(ROOM, None, 1000) is None
    assert store.retention_cut("#empty", 100, 1) is None


async def test_deleting_below_the_cut_keeps_the_rest_and_the_sequence(store: Store) -> None:
    await fill(store, 10)
    await store.delete_before(ROOM, 6)
    assert [m.seq for m in store.history_after(ROOM, 0, 100)] == [6, 7, 8, 9, 10]
    assert [m.seq for m in store.history_after(ROOM, 2, 2)] == [6, 7]
    assert [m.seq for m in store.history_before(ROOM, None, 100)] == [6, 7, 8, 9, 10]
    assert [m.seq for m in store.history_before(ROOM, 8, 100)] == [6, 7]
    assert store.retention_cut(ROOM, 8, None) == (6, 8)
    await store.append(StoredMsg(ROOM, 11, "alice", "next", 11, "text", "c11"))
    assert [(r.room, r.seq) for r in store.load_rooms() if r.room == ROOM] == [(ROOM, 11)]
