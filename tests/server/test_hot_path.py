"""The hot path's shortcuts give the same answers as the slow ways they replace.

The direct ``msg``/``ack`` encoders, the regex text check, the SQLite store's client-id
filter and its adaptive group commit, and the server's garbage-collector setting.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode

from cfm_common import rules
from cfm_common.codec import _fields as codec_fields
from cfm_common.codec import encode, encode_ack, encode_msg, to_map
from cfm_common.errors import ProtocolError
from cfm_common.eventloop import run_event_loop
from cfm_common.frames import Ack, History, Joined, Msg, RosterEntry, StoredMsg, check_text
from cfm_server.server import GC_YOUNG_THRESHOLD
from cfm_server.store import SqliteStore, StoreError, checkpoint, idfilter
from cfm_server.wsframe import frame_binary

stored_msgs = st.builds(
    StoredMsg,
    room=st.sampled_from(["#lobby", "#a-b_c", "dm:alice:bob"]),
    seq=st.integers(1, 2**63 - 1),
    sender=st.sampled_from(["alice", "b.o-b_2"]),
    text=st.text(max_size=300),
    ts=st.integers(0, 2**63 - 1),
    kind=st.sampled_from(["text", "nudge"]),
    id=st.none() | st.text(min_size=1, max_size=64),
)
# These check bytes, not speed: no per-example deadline (Hypothesis's default of 200 ms
# is a flaky failure on a loaded machine, where a GC pause or a preemption can outlast it).
NO_DEADLINE = settings(deadline=None)


@NO_DEADLINE
@given(stored_msgs)
def test_msg_and_ack_encoders_write_the_generic_encoders_bytes(stored: StoredMsg) -> None:
    msg = Msg.from_stored(stored)
    ack = Ack(stored.room, stored.seq, stored.ts, stored.id)
    generic_msg = msgpack.packb(to_map(msg), use_bin_type=True)
    generic_ack = msgpack.packb(to_map(ack), use_bin_type=True)
    assert encode_msg(stored) == encode_msg(msg) == encode(msg) == generic_msg
    assert encode_ack(stored) == encode_ack(ack) == encode(ack) == generic_ack


def test_the_text_check_refuses_exactly_what_the_rules_refuse() -> None:
    refused = []
    for code in range(0x110000):
        ch = chr(code)
        try:
            check_text(f"a{ch}b")
        except ProtocolError:
            refused.append(code)
    expected = [c for c in range(0x110000) if rules.has_forbidden_text_chars(chr(c))]
    assert refused == expected
    assert 0x09 not in refused and 0x0A not in refused and 0x202E in refused


def test_the_control_char_check_refuses_exactly_category_cc_and_the_bidi_controls() -> None:
    from cfm_common.rules import _is_control

    refused = [c for c in range(0x110000) if rules.has_control_chars(f"a{chr(c)}b")]
    assert refused == [c for c in range(0x110000) if _is_control(chr(c))]
    assert 0x09 in refused and 0x9F in refused and 0x202E in refused and 0xA0 not in refused


def message(room: str, seq: int, client_id: str | None) -> StoredMsg:
    return StoredMsg(room, seq, "alice", f"m{seq}", 1000 + seq, "text", client_id)


async def test_every_stored_client_id_is_found_across_growth_and_reopen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tiny filter, so that 400 ids make it grow (rebuild from the table) several times.
    monkeypatch.setattr(idfilter.ClientIdFilter, "MIN_BITS", 64)
    path = tmp_path / "cfm.sqlite3"
    store = SqliteStore(path)
    await store.open()
    commits = [store.append(message("#lobby", n, f"id{n}")) for n in range(1, 401)]
    commits.append(store.append(message("#lobby", 401, None)))  # a nudge without id
    await asyncio.gather(*commits)
    for n in range(1, 401):
        found = store.find_message("alice", f"id{n}")
        assert found is not None and found.seq == n
    assert store.find_message("alice", "never-sent") is None
    assert store.find_message("bob", "id1") is None
    await store.close()
    store = SqliteStore(path)  # a restart: the filter is rebuilt from the table
    await store.open()
    try:
        assert all(store.find_message("alice", f"id{n}") is not None for n in range(1, 401))
        assert store.find_message("alice", "id401") is None
    finally:
        await store.close()


async def test_a_lone_write_commits_on_the_next_iteration_and_a_busy_batch_later(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "cfm.sqlite3")
    await store.open()
    try:
        lone = store.append(message("#lobby", 1, "a"))
        await asyncio.sleep(0)  # one loop iteration: the idle store commits at once
        await asyncio.sleep(0)
        assert lone.done() and lone.exception() is None
        busy = [store.append(message("#lobby", n, f"b{n}")) for n in range(2, 2 + 20)]
        await asyncio.wait_for(asyncio.gather(*busy), 5)
        # After a busy batch the next one waits a little to gather more; it still commits,
        # and every write of it completes, in order.
        order: list[int] = []
        more = [store.append(message("#lobby", n, f"c{n}")) for n in range(22, 25)]
        for n, commit in zip(range(22, 25), more, strict=True):
            commit.add_done_callback(lambda _, n=n: order.append(n))
        await asyncio.wait_for(asyncio.gather(*more), 5)
        await asyncio.sleep(0)
        assert order == [22, 23, 24]
        assert [m.seq for m in store.history_after("#lobby", 0, 100)] == list(range(1, 25))
    finally:
        await store.close()


async def test_a_running_server_collects_garbage_less_often(server) -> None:
    assert gc.get_threshold()[0] >= GC_YOUNG_THRESHOLD


async def test_the_wal_is_checkpointed_on_a_thread_and_nothing_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "CHECKPOINT_WAL_BYTES", 64 * 1024)
    monkeypatch.setattr(checkpoint, "CHECKPOINT_POLL_S", 0.0)
    path = tmp_path / "cfm.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:
        size_before = path.stat().st_size
        text = "x" * 1000
        for batch in range(10):  # ~100 KB per batch: each COMMIT may start a checkpoint
            commits = [
                store.append(StoredMsg("#lobby", n, "alice", text, n, "text", f"k{n}"))
                for n in range(batch * 100 + 1, batch * 100 + 101)
            ]
            await asyncio.gather(*commits)
        assert store._checkpointer.started > 0, "no checkpoint was started"
        running = store._checkpointer._running
        if running is not None:
            await asyncio.wrap_future(running)
        assert path.stat().st_size > size_before + 500_000  # the pages reached the file
        assert len(store.history_after("#lobby", 0, 2000)) == 1000
    finally:
        await store.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert [m.seq for m in store.history_after("#lobby", 990, 100)] == list(range(991, 1001))
    finally:
        await store.close()


async def test_a_checkpoint_starts_on_the_unchecked_wal_not_on_the_wal_file_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite reuses the WAL file from its top after a full checkpoint and keeps its size:
    # judged by that size, every later poll started a checkpoint (and the loop paid for
    # each one's tail). Judged by the frames not yet copied, small writes start none.
    monkeypatch.setattr(checkpoint, "CHECKPOINT_WAL_BYTES", 64 * 1024)
    monkeypatch.setattr(checkpoint, "CHECKPOINT_POLL_S", 0.0)
    path = tmp_path / "cfm.sqlite3"
    store = SqliteStore(path)
    await store.open()
    checkpointer = store._checkpointer
    try:
        text = "x" * 1000
        await asyncio.gather(*[
            store.append(StoredMsg("#lobby", n, "alice", text, n, "text", f"k{n}"))
            for n in range(1, 201)
        ])
        assert checkpointer.started == 1
        assert checkpointer._running is not None
        await asyncio.wrap_future(checkpointer._running)
        seq = 200
        for _ in range(3):  # the first COMMIT finishes the checkpoint, the WAL restarts
            seq += 1
            await store.append(StoredMsg("#lobby", seq, "alice", "hi", seq, "text", None))
        wal_file = path.with_name(path.name + "-wal").stat().st_size
        unchecked = checkpointer.unchecked_wal_bytes()
        assert 0 < unchecked < wal_file // 8  # the file kept its size; its top is reused
        # A threshold the file's size is past but a few small COMMITs are not.
        monkeypatch.setattr(checkpoint, "CHECKPOINT_WAL_BYTES", wal_file // 2)
        for _ in range(3):
            seq += 1
            await store.append(StoredMsg("#lobby", seq, "alice", "hi", seq, "text", None))
        assert checkpointer.started == 1, "a checkpoint started on a WAL that was copied"
    finally:
        await store.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert len(store.history_after("#lobby", 0, 1000)) == seq
    finally:
        await store.close()


def test_run_event_loop_runs_a_coroutine_on_uvloop_when_installed() -> None:
    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    module = run_event_loop(main())
    try:
        import uvloop  # noqa: F401
    except ImportError:
        assert module.startswith("asyncio")
    else:
        assert module.startswith("uvloop")


roster_entries = st.builds(
    RosterEntry,
    name=st.sampled_from(["alice", "bob"]),
    display=st.text(max_size=64),
    status=st.sampled_from(["online", "offline", "busy"]),
    psm=st.text(max_size=128),
    bot=st.booleans(),
    blocked=st.none() | st.booleans(),
)


@NO_DEADLINE
@given(st.lists(roster_entries, max_size=5), st.lists(stored_msgs, max_size=5))
def test_joined_and_history_lists_encode_as_the_field_walk_does(
    members: list[RosterEntry], msgs: list[StoredMsg]
) -> None:
    def walked(obj: object) -> dict:
        # The generic rule: every set field under its wire key, in field order.
        return {f.key: getattr(obj, f.attr) for f in codec_fields(type(obj))
                if getattr(obj, f.attr) is not None}

    joined = Joined("#lobby", 3, "e1", tuple(members), None, True)
    history = History("#lobby", tuple(msgs), False)
    assert encode(joined) == msgpack.packb(
        {"t": "joined", "room": "#lobby", "seq": 3, "epoch": "e1",
         "members": [walked(m) for m in members], "reset": True})
    assert encode(history) == msgpack.packb(
        {"t": "history", "room": "#lobby", "msgs": [walked(m) for m in msgs], "more": False})


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_frame_binary_writes_what_websockets_would(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = WsFrame(Opcode.BINARY, data, True).serialize(mask=False, extensions=[])
    assert frame_binary(data) == expected


async def test_the_next_seq_is_known_across_a_reopen_and_a_gap_is_still_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cfm.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await asyncio.gather(*(store.append(message("#lobby", n, None)) for n in (1, 2, 3)))
    await store.close()
    store = SqliteStore(path)
    await store.open()
    try:
        for seq in (3, 5):  # repeated, gap: refused before any SQL runs
            with pytest.raises(StoreError, match="next seq"):
                await store.append(message("#lobby", seq, None))
        await store.append(message("#lobby", 4, None))
        await store.append(message("#new", 1, None))
        assert [m.seq for m in store.history_after("#lobby", 0, 10)] == [1, 2, 3, 4]
    finally:
        await store.close()
