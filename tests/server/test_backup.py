"""Backups that restore (issue 15 item 2): ``cfm admin backup`` while the server writes,
``cfm admin restore`` into a new directory, and a server that refuses half a data dir."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cfm_cli.main import app
from cfm_server.backup import backup, restore
from cfm_server.invites import make_code
from cfm_server.store.sqlite import SqliteStore
from tests.faults.procs import run_to_exit
from tests.wire import WireClient, signed_in

DB = "cfm.sqlite3"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    for key in list(os.environ):
        if key.startswith("CFM_"):
            monkeypatch.delenv(key)


def admin(*args: str) -> Any:
    return CliRunner().invoke(app, ["admin", *args])


def count(db: Path, sql: str = "SELECT count(*) FROM messages") -> int:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


async def test_an_online_backup_during_writes_restores_to_a_working_server(
    server_factory: Any, tmp_path: Path
) -> None:
    server = await server_factory(data_dir=tmp_path / "live", registration="invite")
    key = server.hub.invites.key
    code_for_later = make_code(key, uses=1)  # given out, not used before the backup
    acked: list[int] = []
    async with signed_in(server.url, "alice", invite=make_code(key)) as alice:
        token = alice.token
        await alice.send({"t": "join", "room": "#lobby"})
        await alice.recv_until("joined")

        async def write(n: int) -> None:
            for i in range(n):
                await alice.send({"t": "say", "room": "#lobby", "text": f"m{i}", "id": f"{i}"})
                acked.append((await alice.recv_until("ack"))["seq"])

        writer = asyncio.create_task(write(60))
        while len(acked) < 10:  # bounded by the writer's own timeouts
            await asyncio.sleep(0.01)
        acked_before = len(acked)
        # The backup runs on a thread: the server's loop goes on committing meanwhile.
        summary = await asyncio.to_thread(backup, server.data_dir, tmp_path / "bk")
        await writer
    assert summary.messages >= 10 and summary.invite_key and summary.users == 1
    bk = tmp_path / "bk"
    assert stat.S_IMODE(bk.stat().st_mode) == 0o700
    for path in bk.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert not (bk / f"{DB}-wal").exists()  # one self-contained file
    # A consistent moment: a gapless prefix of the room, at least what was acked before.
    seqs = count(bk / DB, "SELECT count(*) FROM messages WHERE room = '#lobby'")
    assert count(bk / DB, "SELECT max(seq) FROM messages WHERE room = '#lobby'") == seqs
    assert seqs >= 10 and seqs == summary.messages
    await server.stop()

    restored = await asyncio.to_thread(restore, bk, tmp_path / "new")
    assert restored.messages == summary.messages and restored.invite_key
    second = await server_factory(data_dir=tmp_path / "new", registration="invite")
    async with signed_in(second.url, "alice", token=token) as alice:
        await alice.send({"t": "history", "room": "#lobby", "limit": 200})
        page = await alice.recv_until("history")
        assert [m["seq"] for m in page["msgs"]] == list(range(1, seqs + 1))
        assert seqs >= acked_before  # everything acked before the backup began is in it
    # The invite key came along: a code made before the backup still lets someone in.
    async with signed_in(second.url, "bob", invite=code_for_later) as bob:
        assert bob.token


async def test_backup_and_restore_from_the_command_line_with_relative_paths(
    server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await server_factory(data_dir=tmp_path / "live")
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#lobby"})
        await alice.recv_until("joined")
        await alice.send({"t": "say", "room": "#lobby", "text": "hello", "id": "1"})
        await alice.recv_until("ack")
    monkeypatch.chdir(tmp_path)
    result = await asyncio.to_thread(admin, "backup", "bk", "--data-dir", "live")
    assert result.exit_code == 0, result.output
    assert "1 user, 1 message" in result.output
    result = admin("backup", "bk", "--data-dir", "live")
    assert result.exit_code == 2 and "not an empty directory" in result.output
    await server.stop()
    result = admin("restore", "bk", "--data-dir", "restored")
    assert result.exit_code == 0, result.output
    assert "1 user, 1 message" in result.output
    result = admin("restore", "bk", "--data-dir", "restored")
    assert result.exit_code == 2 and "already holds a cfm database" in result.output
    result = admin("restore", "nothing-here", "--data-dir", "other")
    assert result.exit_code == 2 and "does not exist" in result.output
    assert count(tmp_path / "restored" / DB) == 1


async def test_a_wal_without_its_database_is_refused(tmp_path: Path) -> None:
    from cfm_common.frames import StoredMsg

    store = SqliteStore(tmp_path / "data" / DB)
    await store.open()
    await store.append(StoredMsg("#lobby", 1, "alice", "hi", 1, "say", "1"))
    half = tmp_path / "half"
    half.mkdir(mode=0o700)
    # What a partial copy of a running server's directory leaves: the WAL alone.
    shutil.copy(tmp_path / "data" / f"{DB}-wal", half / f"{DB}-wal")
    await store.close()
    assert (half / f"{DB}-wal").stat().st_size > 0
    code, output = await run_to_exit(half)
    assert code == 2, output
    assert f"holds {DB}-wal but not {DB}" in output and "nothing was changed" in output
    assert sorted(p.name for p in half.iterdir() if not p.name.endswith(".lock")) == [
        f"{DB}-wal"]


async def test_a_database_copied_without_its_wal_from_a_running_server_is_refused(
    server_factory: Any, tmp_path: Path
) -> None:
    server = await server_factory(data_dir=tmp_path / "live")
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#lobby"})
        await alice.recv_until("joined")
        await alice.send({"t": "say", "room": "#lobby", "text": "in the WAL", "id": "1"})
        await alice.recv_until("ack")
    copy = tmp_path / "copy"
    copy.mkdir(mode=0o700)
    shutil.copy(server.data_dir / DB, copy / DB)  # the main file alone, server running
    code, output = await run_to_exit(copy)
    assert code == 2, output
    assert "without its cfm.sqlite3-wal file while a server had it open" in output
    await server.stop()
    # After a clean stop the database file alone is whole, and starts.
    clean = tmp_path / "clean"
    clean.mkdir(mode=0o700)
    shutil.copy(server.data_dir / DB, clean / DB)
    assert not (server.data_dir / f"{DB}-wal").exists()
    assert count(clean / DB) == 1
    code, output = await run_to_exit(clean)
    assert code == -9, output  # it started listening (and was killed by the helper)


async def test_a_killed_servers_data_dir_still_starts(tmp_path: Path) -> None:
    from tests.faults.procs import ServerProcess

    proc = ServerProcess(tmp_path / "data")
    url = await proc.start()
    async with WireClient.connect(url) as alice:
        await alice.hello("alice")
        await alice.send({"t": "join", "room": "#lobby"})
        await alice.recv_until("joined")
        await alice.send({"t": "say", "room": "#lobby", "text": "x", "id": "1"})
        await alice.recv_until("ack")
    proc.kill()
    await proc.wait()
    await proc.start()  # the WAL is there: recovered, not refused
    await proc.stop()
    assert count(tmp_path / "data" / DB) == 1


async def test_a_whole_sqlite3_backup_file_is_taken_in_by_restore(
    server_factory: Any, tmp_path: Path
) -> None:
    server = await server_factory(data_dir=tmp_path / "live")
    async with signed_in(server.url, "alice"):
        pass
    # What `sqlite3 cfm.sqlite3 .backup FILE` makes: whole, but marked as open.
    target = sqlite3.connect(tmp_path / "manual.sqlite3")
    source = sqlite3.connect(server.data_dir / DB)
    source.backup(target)
    source.close()
    target.close()
    await server.stop()
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o700)
    shutil.copy(tmp_path / "manual.sqlite3", loose / DB)
    code, output = await run_to_exit(loose)
    assert code == 2 and "cfm admin restore" in output
    result = admin("restore", str(tmp_path / "manual.sqlite3"), "--data-dir",
                   str(tmp_path / "in"))
    assert result.exit_code == 0, result.output
    second = await server_factory(data_dir=tmp_path / "in")
    assert "alice" in second.hub.users


async def test_an_idle_servers_wal_reaches_the_database_file_in_time(tmp_path: Path) -> None:
    from cfm_common.frames import StoredMsg

    store = SqliteStore(tmp_path / DB, checkpoint_interval_s=0.1)
    await store.open()
    try:
        await store.append(StoredMsg("#lobby", 1, "alice", "hi", 1, "say", "1"))
        # Far below the 16 MB that used to be the only trigger; nothing else is written.
        for _ in range(200):
            copy = tmp_path / "alone.sqlite3"
            shutil.copy(tmp_path / DB, copy)  # the database file alone, as a naive backup
            if count(copy) == 1:
                break
            await asyncio.sleep(0.05)
        assert count(copy) == 1
    finally:
        await store.close()


async def test_an_upgrade_keeps_the_database_as_it_was_before_migrating(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cfm_server.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    old = sqlite3.connect(data / DB, isolation_level=None)  # what cfm with schema v1 made
    old.execute("PRAGMA journal_mode=WAL")
    old.executescript(f"{MIGRATIONS[0]}; PRAGMA user_version = 1;")
    old.execute("INSERT INTO users VALUES ('alice', 'h', 'Alice', '', 'online', 0, 1)")
    old.close()
    store = SqliteStore(data / DB)
    await store.open()
    await store.close()
    kept = data / f"{DB}.v1.bak"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert count(kept, "PRAGMA user_version") == 1
    assert count(kept, "SELECT count(*) FROM users") == 1
    assert count(data / DB, "PRAGMA user_version") == SCHEMA_VERSION
    assert any(f"from schema v1 to v{SCHEMA_VERSION}" in r.getMessage() for r in caplog.records)
    # Going back: the copy restores as a whole database.
    result = admin("restore", str(kept), "--data-dir", str(tmp_path / "back"))
    assert result.exit_code == 0, result.output
    assert count(tmp_path / "back" / DB, "PRAGMA user_version") == 1


async def test_cfm_admin_does_not_clear_the_mark_of_a_database_without_its_wal(
    server_factory: Any, tmp_path: Path
) -> None:
    server = await server_factory(data_dir=tmp_path / "live")
    async with signed_in(server.url, "alice"):
        pass
    copy = tmp_path / "copy"
    copy.mkdir(mode=0o700)
    shutil.copy(server.data_dir / DB, copy / DB)
    await server.stop()
    assert admin("users", "--data-dir", str(copy)).exit_code == 0  # readable all the same
    code, output = await run_to_exit(copy)
    assert code == 2 and "without its cfm.sqlite3-wal file" in output, output


async def test_an_invite_is_withdrawn_on_a_running_server_and_stays_so_after_restore(
    server_factory: Any, tmp_path: Path
) -> None:
    server = await server_factory(data_dir=tmp_path / "live", registration="invite")
    key = server.hub.invites.key
    withdrawn, other = make_code(key, uses=5), make_code(key, uses=5)
    async with signed_in(server.url, "bob", invite=withdrawn):
        pass
    result = admin("revoke-invite", withdrawn, "--data-dir", str(server.data_dir))
    assert result.exit_code == 0, result.output
    assert "withdrawn: nobody can sign up with it any more" in result.output
    assert "already withdrawn" in admin("revoke-invite", withdrawn, "--data-dir",
                                        str(server.data_dir)).output
    bad = admin("revoke-invite", "nonsense", "--data-dir", str(server.data_dir))
    assert bad.exit_code == 2 and "not an invite code" in bad.output
    async with WireClient.connect(server.url) as carol:
        refused = await carol.hello("carol", invite=withdrawn)
        assert refused["code"] == "forbidden" and "withdrawn" in refused["msg"]
    async with signed_in(server.url, "dave", invite=other):
        pass
    await asyncio.to_thread(backup, server.data_dir, tmp_path / "bk")
    await server.stop()
    await asyncio.to_thread(restore, tmp_path / "bk", tmp_path / "new")
    again = await server_factory(data_dir=tmp_path / "new", registration="invite")
    async with WireClient.connect(again.url) as carol:
        assert (await carol.hello("carol", invite=withdrawn))["code"] == "forbidden"
    async with signed_in(again.url, "erin", invite=other):
        pass


async def test_a_backup_of_a_database_without_its_wal_is_refused_not_laundered(
    server_factory: Any, tmp_path: Path
) -> None:
    """cfm serve refuses a database copied without its WAL; a backup of it would mark
    the copy whole, and the restored server would start without a word about what the
    WAL held."""
    server = await server_factory(data_dir=tmp_path / "live")
    async with signed_in(server.url, "alice"):
        pass
    copy = tmp_path / "copy"
    copy.mkdir(mode=0o700)
    shutil.copy(server.data_dir / DB, copy / DB)  # the main file alone, server running
    result = admin("backup", str(tmp_path / "bk"), "--data-dir", str(copy))
    assert result.exit_code == 2, result.output
    assert "without its cfm.sqlite3-wal file while a server had it open" in result.output
    assert f"cfm admin restore {copy / DB} --data-dir NEWDIR" in result.output
    assert not (tmp_path / "bk").exists()  # nothing written
    assert not (copy / f"{DB}-wal").exists()  # nor beside the copy
    # The running server's own directory (its WAL beside it) backs up as before.
    result = admin("backup", str(tmp_path / "bk"), "--data-dir", str(server.data_dir))
    assert result.exit_code == 0, result.output
    await server.stop()


async def test_restore_says_which_registration_the_server_ran_with(
    server_factory: Any, tmp_path: Path
) -> None:
    """The restore's "start the server on it" line, copied as it is, must not start an
    invite-only server's data with open registration."""
    server = await server_factory(data_dir=tmp_path / "live", registration="invite")
    async with signed_in(server.url, "alice", invite=make_code(server.hub.invites.key)):
        pass
    result = admin("backup", str(tmp_path / "bk"), "--data-dir", str(server.data_dir))
    assert result.exit_code == 0, result.output
    await server.stop()
    result = admin("restore", str(tmp_path / "bk"), "--data-dir", str(tmp_path / "new"))
    assert result.exit_code == 0, result.output
    assert "registration invite" in result.output
    assert f"cfm serve --registration invite --data-dir {tmp_path / 'new'}" in result.output
