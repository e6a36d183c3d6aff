"""Persistence behind one interface: SQLite by default, memory for tests."""

from cfm_server.store.base import (
    BadCursor,
    Commit,
    ContactRecord,
    IdentityTaken,
    NoticeRecord,
    RoomRecord,
    Store,
    StoreError,
    UserRecord,
)
from cfm_server.store.memory import MemoryStore
from cfm_server.store.sqlite import SqliteStore

__all__ = [
    "BadCursor",
    "Commit",
    "ContactRecord",
    "IdentityTaken",
    "MemoryStore",
    "NoticeRecord",
    "RoomRecord",
    "SqliteStore",
    "Store",
    "StoreError",
    "UserRecord",
]
