"""Persistence behind one interface: SQLite by default, memory for tests."""

from cfm_server.store.base import (
    Commit,
    ContactRecord,
    RoomRecord,
    Store,
    StoreError,
    UserRecord,
)

__all__ = ["Commit", "ContactRecord", "RoomRecord", "Store", "StoreError", "UserRecord"]
