"""The pieces both search indexer processes share (store/searchfile.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cfm_server.store.searchfile import note_lines, transaction


def test_a_transaction_commits_or_rolls_back_whatever_the_block_raises(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "i.sqlite3", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    for error in (ValueError, KeyboardInterrupt):
        with pytest.raises(error), transaction(conn, "BEGIN"):
            conn.execute("INSERT INTO t VALUES (2)")
            raise error
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert not conn.in_transaction


def test_note_lines_are_kind_seq_room_and_a_bad_line_has_no_seq() -> None:
    data = b"n\t12\t#lobby\nr\nc\tx\t#a\nf\t3\tdm:a:b\n"
    assert list(note_lines(data)) == [("n", 12, "#lobby"), ("r", None, ""),
                                      ("c", None, ""), ("f", 3, "dm:a:b")]


def test_notes_go_down_the_pipe_as_far_as_it_takes_them() -> None:
    import os

    from cfm_server.store.searchfile import write_notes

    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        assert write_notes(write, b"n\t1\t#a\n") == 7
        assert write_notes(write, b"") == 0
        written = write_notes(write, b"x" * (1 << 20))  # more than a pipe holds
        assert written is not None and 0 < written < 1 << 20
        assert write_notes(write, b"more") == 0  # full: nothing now, nothing lost
        os.close(read)
        read = -1
        assert write_notes(write, b"n\t2\t#a\n") is None  # the indexer is gone
    finally:
        os.close(write)
        if read >= 0:
            os.close(read)
