"""What only the SQLite store has: a file that outlives the process, group commit, and
clear errors when the file or its directory is unusable. Real files in ``tmp_path``."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cfm_common.frames import StoredMsg
from cfm_server.store import ContactRecord, RoomRecord, SqliteStore, StoreError, UserRecord

REPO_ROOT = Path(__file__).resolve().parents[2]


def message(room: str, seq: int, text: str = "hi", *, sender: str = "alice") -> StoredMsg:
    return StoredMsg(room, seq, sender, text, 1_700_000_000_000 + seq, "text", f"{room}-{seq}")


def user(name: str) -> UserRecord:
    return UserRecord(name, "ab" * 32, name.title(), "", "online", False, 1_700_000_000_000)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    # A directory that does not exist yet: open() creates it.
    return tmp_path / "data" / "cfm.sqlite3"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(db_path)
    await opened.open()
    yield opened
    await opened.close()


def trace_statements(store: SqliteStore) -> list[str]:
    """Every SQL statement the store's connection runs from now on."""
    statements: list[str] = []
    assert store._conn is not None  # the store's one connection, watched, not replaced
    store._conn.set_trace_callback(statements.append)
    return statements


async def reopened(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    await store.open()
    return store


# --- persistence -------------------------------------------------------------------


async def test_a_reopened_store_sees_everything_committed(db_path: Path) -> None:
    first = SqliteStore(db_path)
    await first.open()
    await first.put_user(user("alice"))
    await first.put_room(RoomRecord("#lobby", 0, "epoch-1"))
    await first.add_member("#lobby", "alice")
    await first.put_contact(ContactRecord("alice", "bob", True, False))
    await first.set_read("alice", "#lobby", 2)
    for seq in (1, 2, 3):
        await first.append(message("#lobby", seq))
    await first.close()

    second = await reopened(db_path)
    try:
        assert list(second.load_users()) == [user("alice")]
        assert [(r.room, r.seq, r.epoch) for r in second.load_rooms()] == [
            ("#lobby", 3, "epoch-1")]
        assert list(second.load_members()) == [("#lobby", "alice")]
        assert list(second.load_contacts()) == [ContactRecord("alice", "bob", True, False)]
        assert list(second.load_reads()) == [("alice", "#lobby", 2)]
        assert second.history_after("#lobby", 0, 10) == [message("#lobby", s) for s in (1, 2, 3)]
        assert second.find_message("alice", "#lobby-2") == message("#lobby", 2)
        # Appending carries on from the stored sequence.
        await second.append(message("#lobby", 4))
    finally:
        await second.close()


async def test_close_commits_what_is_pending(db_path: Path) -> None:
    store = SqliteStore(db_path, commit_interval_ms=60_000)
    await store.open()
    commit = store.append(message("#lobby", 1))
    assert not commit.done()
    await store.close()
    assert commit.done() and commit.exception() is None
    again = await reopened(db_path)
    try:
        assert again.history_after("#lobby", 0, 10) == [message("#lobby", 1)]
    finally:
        await again.close()


async def test_a_cancelled_waiter_does_not_cancel_the_write(store: SqliteStore) -> None:
    store.append(message("#lobby", 1)).cancel()
    await store.flush()
    assert store.history_after("#lobby", 0, 10) == [message("#lobby", 1)]


CHILD_WRITES_THEN_HANGS = """
import asyncio, sys
from pathlib import Path
from cfm_common.frames import StoredMsg
from cfm_server.store import SqliteStore

async def main():
    store = SqliteStore(Path(sys.argv[1]))
    await store.open()
    commits = [store.append(StoredMsg("#lobby", seq, "alice", f"m{seq}", seq, "text", f"c{seq}"))
               for seq in range(1, 21)]
    await asyncio.gather(*commits)
    print("acked", flush=True)
    await asyncio.Event().wait()  # never closes the store: the test kills this process

asyncio.run(main())
"""

CHILD_HOLDS_THE_LOCK = """
import asyncio, sys
from pathlib import Path
from cfm_server.store import SqliteStore

async def main():
    store = SqliteStore(Path(sys.argv[1]))
    await store.open()
    print("open", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await store.close()

asyncio.run(main())
"""


async def start_child(code: str, db_path: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, str(db_path), cwd=REPO_ROOT, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)


async def wait_for_line(proc: asyncio.subprocess.Process, expected: str) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
    assert line.decode().strip() == expected, f"child said {line!r}"


async def test_an_acked_message_survives_sigkill(db_path: Path) -> None:
    child = await start_child(CHILD_WRITES_THEN_HANGS, db_path)
    try:
        await wait_for_line(child, "acked")
    finally:
        child.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(child.wait(), timeout=30) == -signal.SIGKILL
    # The data sits in the WAL, never checkpointed by a clean close.
    assert db_path.with_name(db_path.name + "-wal").stat().st_size > 0

    store = await reopened(db_path)
    try:
        assert [m.text for m in store.history_after("#lobby", 0, 100)] == [
            f"m{seq}" for seq in range(1, 21)]
        # No put_room was made: the room is found through its messages.
        assert [(r.room, r.seq, r.epoch) for r in store.load_rooms()] == [("#lobby", 20, "")]
        assert store.find_message("alice", "c20") is not None
    finally:
        await store.close()


# --- group commit ------------------------------------------------------------------


async def test_writes_of_one_loop_iteration_share_one_commit(store: SqliteStore) -> None:
    statements = trace_statements(store)
    completed: list[int] = []
    commits = []
    for seq in range(1, 201):
        commit = store.append(message("#lobby", seq))
        commit.add_done_callback(lambda _, seq=seq: completed.append(seq))
        commits.append(commit)
    commits.append(store.put_user(user("alice")))
    commits.append(store.set_read("alice", "#lobby", 200))
    assert not any(c.done() for c in commits)  # nothing is committed per write

    await asyncio.gather(*commits)
    assert statements.count("COMMIT") == 1
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert completed == list(range(1, 201))  # futures complete in write order


async def test_writes_of_the_next_iteration_get_the_next_commit(store: SqliteStore) -> None:
    statements = trace_statements(store)
    first = store.append(message("#lobby", 1))
    await first
    second = [store.append(message("#lobby", seq)) for seq in (2, 3)]
    await asyncio.gather(*second)
    assert statements.count("COMMIT") == 2


async def test_a_commit_interval_keeps_the_batch_open_across_iterations(db_path: Path) -> None:
    store = SqliteStore(db_path, commit_interval_ms=60_000)
    await store.open()
    try:
        statements = trace_statements(store)
        commits = []
        for seq in range(1, 6):
            commits.append(store.append(message("#lobby", seq)))
            await asyncio.sleep(0)
        assert not any(c.done() for c in commits)
        await store.flush()
        assert all(c.done() and c.exception() is None for c in commits)
        assert statements.count("COMMIT") == 1
    finally:
        await store.close()


async def test_after_commit_runs_once_per_commit_before_the_commit_callbacks(
    db_path: Path,
) -> None:
    # The server's outbox flush rides on this: scheduled from the hook, it runs in the
    # same loop turn as the acks and fan-outs the commit callbacks queue, right after them.
    loop = asyncio.get_running_loop()
    order: list[str] = []
    pending: list[asyncio.Future[None]] = []

    def after_commit() -> None:
        order.append(f"commit: {sum(f.done() for f in pending)}/{len(pending)} done")
        loop.call_soon(order.append, "flush")

    store = SqliteStore(db_path, after_commit=after_commit)
    await store.open()
    try:
        pending.extend(store.append(message("#lobby", n)) for n in (1, 2))
        for n, commit in zip((1, 2), pending, strict=True):
            commit.add_done_callback(lambda _, n=n: order.append(f"ack {n}"))
        await asyncio.wait_for(asyncio.gather(*pending), 5)
        await asyncio.sleep(0)
        assert order == ["commit: 2/2 done", "ack 1", "ack 2", "flush"]
        await store.flush()  # nothing pending: no commit, no call
        assert order.count("flush") == 1
    finally:
        await store.close()


async def test_flush_with_nothing_pending_commits_nothing(store: SqliteStore) -> None:
    statements = trace_statements(store)
    await store.flush()
    assert statements == []


# --- failures while running --------------------------------------------------------


async def test_a_failing_write_fails_its_whole_batch_and_the_store_recovers(
        store: SqliteStore) -> None:
    assert store._conn is not None
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    # A database that may not grow: the disk is "full".
    store._conn.execute(f"PRAGMA max_page_count = {pages + 1}")
    small = store.put_user(user("alice"))
    big = store.append(message("#lobby", 1, "x" * 200_000))
    after = store.put_user(user("bob"))  # the next write opens a new batch
    for commit in (small, big):
        with pytest.raises(StoreError, match="full"):
            await commit
    # The batch was rolled back: its first write is gone too.
    assert list(store.load_users()) == [user("bob")]
    assert store.history_after("#lobby", 0, 10) == []
    await after

    store._conn.execute("PRAGMA max_page_count = 1073741823")  # the disk has room again
    await store.append(message("#lobby", 1, "x" * 200_000))
    assert [m.seq for m in store.history_after("#lobby", 0, 10)] == [1]


async def test_an_invite_use_rolled_back_with_its_batch_leaves_the_others_counted(
        store: SqliteStore) -> None:
    """Each sign-up counts one use in its identity's batch; a batch that fails (a full
    disk) takes its use back and nothing else: a later sign-up's use makes the count
    1, not the total it saw (2) while the failed one was still counted live."""
    assert store._conn is not None
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages + 1}")
    failed = store.count_invite_use("n0nce")
    big = store.append(message("#lobby", 1, "x" * 200_000))
    for commit in (failed, big):
        with pytest.raises(StoreError, match="full"):
            await commit
    store._conn.execute("PRAGMA max_page_count = 1073741823")
    await store.count_invite_use("n0nce")
    assert store.load_invite_uses() == {"n0nce": 1}
    await store.count_invite_use("n0nce")
    assert store.load_invite_uses() == {"n0nce": 2}


async def test_a_failing_commit_fails_its_futures_and_the_store_recovers(
        store: SqliteStore, db_path: Path) -> None:
    await store.append(message("#lobby", 1))
    wal = db_path.with_name(db_path.name + "-wal")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # No file of this process may grow much: the WAL write at COMMIT fails with EFBIG.
    resource.setrlimit(resource.RLIMIT_FSIZE, (wal.stat().st_size + 65_536, hard))
    try:
        user_commit = store.put_user(user("alice"))
        big = store.append(message("#lobby", 2, "x" * 500_000))
        assert not big.done()  # the write itself succeeded; the COMMIT is what fails
        for commit in (user_commit, big):
            with pytest.raises(StoreError, match="commit failed"):
                await commit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert list(store.load_users()) == []
    assert [m.seq for m in store.history_after("#lobby", 0, 10)] == [1]

    await store.append(message("#lobby", 2, "x" * 500_000))
    await store.close()
    again = await reopened(db_path)
    try:
        assert [m.seq for m in again.history_after("#lobby", 0, 10)] == [1, 2]
    finally:
        await again.close()


async def test_writes_to_a_closed_store_fail(store: SqliteStore) -> None:
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.append(message("#lobby", 1))
    with pytest.raises(StoreError, match="not open"):
        store.history_after("#lobby", 0, 10)


# --- open() errors -----------------------------------------------------------------


async def test_open_fails_when_the_data_dir_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file")
    store = SqliteStore(blocker / "data" / "cfm.sqlite3")
    with pytest.raises(StoreError, match=r"cannot create the data directory.*not a directory"):
        await store.open()
    assert blocker.read_text() == "a regular file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
async def test_open_fails_when_the_data_dir_is_not_writable(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="not writable"):
            await SqliteStore(data_dir / "cfm.sqlite3").open()
    finally:
        data_dir.chmod(0o700)


async def test_open_refuses_a_corrupt_file_and_leaves_it_untouched(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    garbage = bytes(range(256)) * 40
    db_path.write_bytes(garbage)
    for _ in range(2):  # the second try must see the same problem, not a stale lock
        with pytest.raises(StoreError, match=r"not an SQLite database.*left untouched"):
            await SqliteStore(db_path).open()
    assert db_path.read_bytes() == garbage


async def test_open_refuses_a_foreign_sqlite_database(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as other:
        other.execute("CREATE TABLE notes (body TEXT)")
    before = db_path.read_bytes()
    with pytest.raises(StoreError, match="not a cfm one"):
        await SqliteStore(db_path).open()
    assert db_path.read_bytes() == before


async def test_open_refuses_a_newer_schema(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as other:
        other.execute("PRAGMA user_version = 999")
    before = db_path.read_bytes()
    with pytest.raises(StoreError, match="newer cfm"):
        await SqliteStore(db_path).open()
    assert db_path.read_bytes() == before


async def test_a_second_server_on_the_same_data_dir_fails_fast(db_path: Path) -> None:
    first = await reopened(db_path)
    await first.append(message("#lobby", 1))
    await first.close()

    child = await start_child(CHILD_HOLDS_THE_LOCK, db_path)
    try:
        await wait_for_line(child, "open")
        before = db_path.read_bytes()  # as the server holding it left it
        with pytest.raises(StoreError, match=f"in use by another cfm server \\(pid {child.pid}\\)"):
            await SqliteStore(db_path).open()
        assert db_path.read_bytes() == before
    finally:
        assert child.stdin is not None
        child.stdin.close()
        assert await asyncio.wait_for(child.wait(), timeout=30) == 0
    # The lock went with the other server.
    store = await reopened(db_path)
    await store.close()


async def test_open_fails_while_another_program_locks_the_file(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("CREATE TABLE t (x)")  # rollback-journal mode: a lock excludes all
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match="locked by another process"):
            await SqliteStore(db_path, busy_timeout_ms=50).open()
    finally:
        holder.close()


async def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(Path("x.sqlite3"), synchronous="off")
    with pytest.raises(ValueError, match="commit_interval_ms"):
        SqliteStore(Path("x.sqlite3"), commit_interval_ms=-1)


async def test_synchronous_full_is_applied(db_path: Path) -> None:
    store = SqliteStore(db_path, synchronous="full")
    await store.open()
    try:
        assert store._conn is not None
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        await store.append(message("#lobby", 1))
    finally:
        await store.close()
