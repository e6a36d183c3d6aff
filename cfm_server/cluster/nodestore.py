"""A cluster node's store: it keeps nothing (the shared state and the messages live in
Redis) and only answers the hub's lookups; its searches go to the node's own index."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from cfm_common.frames import StoredMsg
from cfm_server.store import MemoryStore, StoreError

if TYPE_CHECKING:
    from cfm_server.cluster.search import ClusterSearch


class NodeStore(MemoryStore):
    """A cluster node's store: it keeps nothing (the shared state and the messages live
    in Redis) and only answers the hub's lookups. Its searches go to the node's own
    index (``cluster/search.py``), given by ``ClusterNode.start`` unless the server runs
    with ``search_index = false``."""

    search_unavailable = "search is turned off on this node (search_index)"

    def __init__(self) -> None:
        super().__init__()
        self.search_index: ClusterSearch | None = None

    @property
    def searchable(self) -> bool:
        return self.search_index is not None

    def search(self, reader: str, rooms: Collection[str],  # type: ignore[override]
               words: Sequence[str], before: str | None, limit: int
               ) -> asyncio.Future[list[tuple[str, StoredMsg]]]:
        """A future: each hit is read again from Redis (domain/search.py awaits it)."""
        index = self.search_index
        if index is None:
            raise StoreError("this node keeps no search index")
        return asyncio.ensure_future(index.search(reader, rooms, words, before, limit))

    def search_behind(self, rooms: Mapping[str, int]) -> int:
        index = self.search_index
        return 0 if index is None else index.behind(rooms)

    def when_indexed(self, rooms: Mapping[str, int], callback: Callable[[], None],
                     timeout_s: float) -> None:
        index = self.search_index
        if index is None:
            callback()
        else:
            index.when_indexed(rooms, callback, timeout_s)
