"""What a cluster node's answers read from Redis (``World.reads``): history pages, a
joiner's top, one message, the welcome's unread counts.

A single node's store answers these at once (``domain.world.StoreReads``); here most are
futures of a read in Redis (read.lua, unread.lua through the broker). A join's top waits
for the room's subscription (``ClusterNode.subscription``), so that the seq a joiner is
shown is where live delivery starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cfm_common.frames import StoredMsg
from cfm_server.cluster import keys
from cfm_server.cluster.broker import Broker
from cfm_server.domain.changes import UNREAD_CAP
from cfm_server.domain.world import World
from cfm_server.pages import Slice
from cfm_server.state import Room, User
from cfm_server.store import StoreError

log = logging.getLogger(__name__)


class ClusterReads:
    def __init__(self, broker: Broker,
                 subscription: Callable[[str], asyncio.Future[int]]) -> None:
        self.broker = broker
        self._subscription = subscription
        # (user, room) → (read mark, unread, mentions) counted for a sign-in under way.
        self._unread: dict[tuple[str, str], tuple[int, int, int]] = {}

    async def count_unread(self, world: World, user: User) -> None:
        """The welcome's unread and mention counts (``unread_counts``), read now: one
        capped count per room with something past the user's read mark, as a single
        node's store counts (``changes.UNREAD_CAP`` seqs at most, change entries
        included), made in Redis (unread.lua: the messages are not read out to be
        counted). A room whose count fails is left out of the counts, never the
        sign-in."""
        rooms = [(room, user.reads.get(room.name, 0)) for name in list(user.rooms)
                 if (room := world.rooms.get(name)) is not None]
        rooms = [(room, read) for room, read in rooms if room.durable_seq > read]
        counts = await asyncio.gather(
            *(self.broker.unread(room.name, after=read, limit=UNREAD_CAP, user=user.name)
              for room, read in rooms), return_exceptions=True)
        for (room, read), counted in zip(rooms, counts, strict=True):
            if isinstance(counted, BaseException):
                log.warning("cannot count %s's unread messages in %s: %s", user.name,
                            room.name, counted)
                continue
            unread, mentions = counted
            self._unread[(user.name, room.name)] = (read, unread, mentions)

    def unread_counts(self, user: str, room: str, after: int, cap: int) -> tuple[int, int]:
        """What ``count_unread`` read before this sign-in (World.reads)."""
        counted = self._unread.pop((user, room), None)
        if counted is None or counted[0] != after:
            raise StoreError(f"{room}: not counted for this sign-in")
        return min(counted[1], cap), min(counted[2], cap)

    def top(self, room: Room) -> int | asyncio.Future[int]:
        """The last seq a joiner is shown: the room's latest once it is subscribed
        (later ones reach the member by fan-out), else where the subscription starts.

        While Redis is out of reach (the join's read barrier has just tried it) the join
        fails before its ``joined``, retryably: a ``joined`` first would tell the client
        its replay is complete (``more: false``) when it cannot be read (the SDK's
        ``join`` raises, and the replay comes with the next join)."""
        sub = self._subscription(room.name)
        if sub.done() and not sub.cancelled() and sub.exception() is None:
            top = room.durable_seq
            if self.broker.batcher.down:  # refused at once, with the next probe's time
                return self.broker.batcher.call("EXISTS", keys.room_meta(room.name),
                                                convert=lambda _: top)
            return top
        return sub

    def history_after(self, room: str, after: int, limit: int
                      ) -> asyncio.Future[list[StoredMsg]]:
        return asyncio.ensure_future(self.broker.history(room, after=after, limit=limit))

    def history_before(self, room: str, before: int | None, limit: int
                       ) -> asyncio.Future[list[StoredMsg]]:
        return asyncio.ensure_future(self.broker.history(room, before=before, limit=limit))

    def history_slice(self, room: str, *, after: int | None, before: int | None, limit: int,
                      budget: int) -> asyncio.Future[Slice]:
        return asyncio.ensure_future(self.broker.page(room, after=after, before=before,
                                                      limit=limit, budget=budget))

    def get_message(self, room: str, seq: int) -> asyncio.Future[StoredMsg | None]:
        """One message in its current state, from the room's stream and changes hash."""
        async def read() -> StoredMsg | None:
            msgs = await self.broker.history(room, after=seq - 1, limit=1)
            return msgs[0] if msgs and msgs[0].seq == seq else None

        return asyncio.ensure_future(read())
