"""The store a server's settings name, opened at start: the memory store, or SQLite in a
data directory made (private) and checked (writable, with room on its disk) first.

Its own module so that ``server.py`` keeps to the server's life cycle.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cfm_server.config import ServerConfig
from cfm_server.datadir import DataDirError, check_writable, make_private_dir
from cfm_server.store import Store, StoreError

if TYPE_CHECKING:
    from cfm_server.outbox import Outbox

DB_FILE = "cfm.sqlite3"


def open_store(config: ServerConfig, outbox: Outbox | None = None) -> tuple[Store, str]:
    """The configured store and a description of where its data lives.

    ``outbox``: flushed in the loop turn that runs a group commit's callbacks (SQLite).
    """
    if config.store == "memory":
        from cfm_server.store import MemoryStore

        return MemoryStore(), "memory (nothing is kept after exit)"
    data_dir = config.resolved_data_dir()
    try:
        make_private_dir(data_dir)
    except OSError as exc:
        raise StoreError(
            f"cannot create the data directory {data_dir}: {exc.strerror}; "
            "choose another with --data-dir"
        ) from None
    if not data_dir.is_dir() or not os.access(data_dir, os.W_OK | os.X_OK):
        raise StoreError(
            f"the data directory {data_dir} is not a writable directory; "
            "choose another with --data-dir"
        )
    try:
        check_writable(data_dir, config.min_free_mb)
    except DataDirError as exc:
        raise StoreError(str(exc)) from None
    from cfm_server.store.sqlite import SqliteStore

    path = data_dir / DB_FILE
    store = SqliteStore(
        path,
        synchronous=config.sqlite_synchronous,
        commit_interval_ms=config.commit_interval_ms,
        after_commit=outbox.flush_soon if outbox is not None else None,
        search=config.search_index,
    )
    return store, str(path)
