"""Storage faults: an unwritable data dir, a full disk, a locked or corrupt database.

At start-up each one must end ``cfm serve`` with a clear one-line error and exit code 2,
and leave every byte of the existing files as it was. A disk that fills while the
server runs must never produce an ``ack`` for a message that was not stored; once
there is room again, the same ``id`` is stored once.

Tiny and read-only file systems are tmpfs mounts (root only); where mounting is not
allowed those tests are skipped, and the full-disk start-up case falls back to
``RLIMIT_FSIZE``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import resource
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.procs import ServerProcess, run_to_exit
from tests.wire import signed_in

DB = "cfm.sqlite3"


def snapshot(directory: Path) -> dict[str, str]:
    """Every file's sha256, to prove that nothing was overwritten."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir()) if p.is_file()
    }


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *options: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path``; skips the test where that is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join((f"size={size}", *options))
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(directory: Path) -> Path:
    """Fill the file system holding ``directory``; returns the ballast file."""
    ballast = directory / "ballast"
    # Unbuffered: a buffer left to flush at close would raise ENOSPC out of the ``with``.
    with ballast.open("wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * (64 * 1024))
            fh.flush()
    return ballast


async def make_database(data_dir: Path) -> None:
    """A real cfm database with a user and a few messages, then a clean stop."""
    server = ServerProcess(data_dir)
    await server.start()
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#lobby"})
        for i in range(20):
            await alice.send({"t": "say", "room": "#lobby", "text": f"m{i}" * 50, "id": str(i)})
        await alice.recv_n("ack", 20)
    assert await server.stop() == 0


def assert_refused(code: int, output: str, *words: str) -> None:
    assert code == 2, f"exit {code}: {output}"
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("cfm serve:")]
    assert errors, output
    for word in words:
        assert word in errors[-1], errors[-1]


async def test_an_unwritable_data_dir_exits_2(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    if os.geteuid() == 0:
        # root writes through file modes: make the directory a read-only mount instead.
        with tmpfs(data_dir, "1m", "ro"):
            code, output = await run_to_exit(data_dir)
            assert not any(data_dir.iterdir())
    else:
        data_dir.mkdir()
        data_dir.chmod(0o500)
        try:
            code, output = await run_to_exit(data_dir)
        finally:
            data_dir.chmod(0o700)
        assert not any(data_dir.iterdir())
    assert_refused(code, output, str(data_dir), "writable")


async def test_a_database_that_is_not_sqlite_is_left_untouched(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / DB).write_bytes(os.urandom(8192))
    before = snapshot(data_dir)
    code, output = await run_to_exit(data_dir)
    assert_refused(code, output, "not an SQLite database", "untouched")
    assert snapshot(data_dir) == {**before, f"{DB}.lock": snapshot(data_dir)[f"{DB}.lock"]}


async def test_a_corrupt_cfm_database_is_left_untouched(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await make_database(data_dir)
    db = data_dir / DB
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    assert len(data) >= 3 * page
    data[page:] = b"\xa5" * (len(data) - page)  # every page but the header page: garbage
    db.write_bytes(bytes(data))
    before = snapshot(data_dir)
    code, output = await run_to_exit(data_dir)
    assert_refused(code, output, str(db))
    after = snapshot(data_dir)
    assert after[DB] == before[DB], "the corrupt database was written to"


async def test_a_database_locked_by_another_program(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await make_database(data_dir)
    before = snapshot(data_dir)
    holder = sqlite3.connect(data_dir / DB, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # an sqlite3 shell in the middle of a transaction
        code, output = await run_to_exit(data_dir)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_refused(code, output, "locked")
    assert snapshot(data_dir)[DB] == before[DB]


async def test_a_second_server_on_the_same_data_dir_exits_2(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = ServerProcess(data_dir)
    await first.start()
    try:
        code, output = await run_to_exit(data_dir)
        assert_refused(code, output, "in use by another cfm server")
        async with signed_in(first.url, "alice") as alice:  # the first one never noticed
            await alice.send({"t": "join", "room": "#lobby"})
            await alice.recv_until("joined")
    finally:
        assert await first.stop() == 0


async def test_a_lock_file_held_by_a_dead_servers_successor(tmp_path: Path) -> None:
    """An flock, not a pid file: a lock file left behind by a killed server is no obstacle,
    a lock somebody holds is."""
    data_dir = tmp_path / "data"
    await make_database(data_dir)
    lock = os.open(data_dir / f"{DB}.lock", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, output = await run_to_exit(data_dir)
        assert_refused(code, output, "in use")
    finally:
        os.close(lock)
    server = ServerProcess(data_dir)
    await server.start()
    assert await server.stop() == 0


async def test_a_full_disk_at_start_up_exits_2(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    if os.geteuid() == 0:
        with contextlib.suppress(pytest.skip.Exception), tmpfs(data_dir, "256k"):
            fill(data_dir)
            code, output = await run_to_exit(data_dir)
            assert_refused(code, output)
            assert "full" in output or "No space" in output, output
            return

    def small_files() -> None:  # in the child: no file may grow past 8 KiB
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    data_dir.mkdir(exist_ok=True)
    code, output = await run_to_exit(data_dir, preexec_fn=small_files)
    assert_refused(code, output, str(data_dir))


async def test_a_disk_that_fills_while_serving_never_acks_a_lost_message(
    tmp_path: Path, server_factory: Any
) -> None:
    data_dir = tmp_path / "tiny"
    with tmpfs(data_dir, "4m"):
        server = await server_factory(data_dir=data_dir, rate_limits=False)
        async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
            for client in (alice, bob):
                await client.send({"t": "join", "room": "#lobby"})
                await client.recv_until("joined")
            await alice.send({"t": "say", "room": "#lobby", "text": "before", "id": "a0"})
            assert (await alice.recv_until("ack"))["seq"] == 1
            ballast = fill(data_dir)
            acked: list[dict] = []
            refused = 0
            # Write until the store refuses (the WAL may still have a little room).
            for i in range(1, 400):
                await alice.send({"t": "say", "room": "#lobby", "text": "x" * 4000,
                                  "id": f"a{i}"})
                reply = await alice.recv()
                while reply["t"] not in ("ack", "error"):
                    reply = await alice.recv()
                if reply["t"] == "error":
                    assert reply["code"] == "internal" and reply["ref"] == f"a{i}", reply
                    refused = i
                    break
                acked.append(reply)
            assert refused, "the disk never filled up"
            # bob saw exactly the acknowledged messages, nothing of the refused one.
            seen = [m["id"] for m in await bob.recv_n("msg", len(acked) + 1)]
            assert seen == ["a0", *(a["id"] for a in acked)]
            await bob.expect_silence("msg", timeout=0.2)

            ballast.unlink()
            await alice.send({"t": "say", "room": "#lobby", "text": "again", "id": f"a{refused}"})
            again = await alice.recv_until("ack")
            assert again["seq"] == len(acked) + 2  # the next seq: no gap left by the failure
            await alice.send({"t": "say", "room": "#lobby", "text": "again", "id": f"a{refused}"})
            assert (await alice.recv_until("ack"))["seq"] == again["seq"]  # stored once
            await alice.send({"t": "history", "room": "#lobby", "after": 0, "limit": 200})
            page = await alice.recv_until("history")
            assert [m["seq"] for m in page["msgs"]] == list(range(1, len(acked) + 3))
            assert [m["id"] for m in page["msgs"]].count(f"a{refused}") == 1
        await server.stop()


def internal_errors(server: Any) -> float:
    return server.metrics.registry.get_sample_value(
        "cfm_errors_total", {"code": "internal"}) or 0.0


async def test_the_sdk_retries_a_say_the_full_disk_refused_and_it_is_stored_once(
    tmp_path: Path, server_factory: Any
) -> None:
    import asyncio

    from cfm_common.client import Client

    data_dir = tmp_path / "tiny"
    with tmpfs(data_dir, "4m"):
        server = await server_factory(data_dir=data_dir, rate_limits=False)
        async with Client(server.url, "alice", token_file=False) as alice:
            await alice.join("#lobby")
            await alice.say("before", room="#lobby", id="a0")
            ballast = fill(data_dir)
            says = [asyncio.create_task(alice.say("x" * 4000, room="#lobby", id=f"a{i}"))
                    for i in range(1, 400)]
            # Some are stored into what room the WAL had left; then the store refuses.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while loop.time() < deadline and not internal_errors(server):
                await asyncio.sleep(0.05)
            assert internal_errors(server), "the disk never filled up"
            await asyncio.sleep(0.6)  # the first retry is refused too: still full
            assert not all(t.done() for t in says)
            assert not any(t.done() and t.exception() for t in says)

            ballast.unlink()  # room again: the retries go through
            acks = await asyncio.wait_for(asyncio.gather(*says), 30)
        # Each refused say is retried on its own timer, from when it was refused: one
        # refused later (or fewer times) than another may be stored before it, so the
        # order of the seqs is not the order sent (it depends on how far the server got
        # before the disk had room again). Every say is acked once, on a seq of its own.
        assert [a.id for a in acks] == [f"a{i}" for i in range(1, 400)]
        assert sorted(a.seq for a in acks) == list(range(2, 401))
        async with Client(server.url, "bob", token_file=False) as bob:
            await bob.join("#lobby")
            stored: list[Any] = []
            more = True
            while more:  # pages are cut by bytes too (page_bytes): page on while more
                after = stored[-1].seq if stored else 0
                page = await bob.history("#lobby", after=after, limit=200)
                stored += page.msgs
                more = bool(page.more)
        assert [m.seq for m in stored] == list(range(1, 401))
        assert stored[0].id == "a0"
        # Each id stored once, at the seq its ack gave.
        assert sorted(m.id for m in stored) == sorted(f"a{i}" for i in range(400))
        assert {m.id: m.seq for m in stored[1:]} == {a.id: a.seq for a in acks}
        await server.stop()
