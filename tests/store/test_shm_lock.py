"""The server keeps its lock on the database's -shm file while it runs.

SQLite takes the first connection of any process to a WAL database for the only one when
no process holds a lock on the -shm file: it truncates that file and rebuilds it, and a
process that has it mapped and touches it meanwhile dies of SIGBUS. POSIX drops every
lock a process holds on a file when it closes any descriptor of that file: the
checkpointer used to open and close the -shm to read its header after each COMMIT,
after which the server held no lock, and a program opening the database while it wrote
(cfm admin backup, an sqlite3 shell, the search indexer) could kill it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cfm_common.frames import StoredMsg
from cfm_server.store import SqliteStore

READER = ("import sqlite3, sys; print(sqlite3.connect(sys.argv[1])"
          ".execute('SELECT count(*) FROM messages').fetchone()[0])")


def locks_held_on(path: Path) -> list[str]:
    """This process's POSIX locks on ``path``, from /proc/locks (Linux)."""
    inode = path.stat().st_ino
    pid = str(os.getpid())
    return [line for line in Path("/proc/locks").read_text().splitlines()
            if line.split()[4] == pid and line.split()[5].endswith(f":{inode}")]


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="reads /proc/locks (Linux)")
async def test_the_store_keeps_its_lock_on_the_shm_file_while_it_runs(tmp_path: Path) -> None:
    path = tmp_path / "cfm.sqlite3"
    store = SqliteStore(path, search=False)
    await store.open()
    try:
        for seq in range(1, 4):  # commits: the checkpointer reads the -shm after each
            await store.append(StoredMsg("#a", seq, "alice", "hello", seq, "text", None))
        store._checkpointer.unchecked_wal_bytes()  # as after a COMMIT
        shm = path.with_name(path.name + "-shm")
        assert locks_held_on(shm), "the store holds no lock on its -shm file"
        # Another program opens the database while the store has it open, and the store
        # goes on writing.
        seen = subprocess.run([sys.executable, "-c", READER, str(path)], check=True,
                              capture_output=True, text=True).stdout.strip()
        assert seen == "3"
        await store.append(StoredMsg("#a", 4, "alice", "still here", 4, "text", None))
        assert locks_held_on(shm)
        seen = subprocess.run([sys.executable, "-c", READER, str(path)], check=True,
                              capture_output=True, text=True).stdout.strip()
        assert seen == "4"
    finally:
        await store.close()
