"""Two nodes' live state (the domain's World) kept equal through the shared records in a
real redis-server: what one node's handlers change (through World's methods and the
ClusterWrites), the other applies (apply.py); a node started later loads it all; two
nodes creating one handle at once give it to one of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cfm_common import rules
from cfm_server.cluster import keys
from cfm_server.cluster.apply import apply_change, learn_rooms, read_snapshot
from cfm_server.cluster.broker import Broker
from cfm_server.cluster.state import SharedState
from cfm_server.cluster.writes import ClusterWrites
from cfm_server.domain.world import World, now_ms
from cfm_server.metrics import Metrics
from cfm_server.state import User
from cfm_server.store import ContactRecord, IdentityTaken, MemoryStore, UserRecord
from tests.cluster.helpers import wait_until
from tests.cluster.redis_proc import RedisProcess
from tests.conftest import make_config


class Node:
    def __init__(self, url: str, name: str, tmp_path: Path) -> None:
        self.broker = Broker(url, node=name, on_message=self._message, on_reset=self._reset)
        self.state = SharedState(self.broker, on_change=self._changed)
        self.writes = ClusterWrites(self.state, self.broker)
        config = make_config(tmp_path / name, store="memory")
        self.world = World(config, MemoryStore(), Metrics(), writes=self.writes)
        self.loaded = False
        self.applied = 0
        self.learning: set[asyncio.Task[None]] = set()
        self.writes.on_epoch = self._epoch_stands

    def _epoch_stands(self, room: str, epoch: str) -> None:
        self.world.rooms[room].epoch = epoch

    def _message(self, room: str, seq: int, origin: str, msg: bytes) -> None:
        if room == keys.STATE:
            self.state.deliver(seq, origin, msg)

    def _reset(self, room: str, epoch: str) -> None:
        if room == keys.STATE:
            self.state.reset(epoch)

    def _changed(self, change: Any) -> None:
        if self.loaded:
            unknown = apply_change(self.world, change)
            self.applied += 1
            if unknown:  # rooms made on another node: their seq and epoch from Redis
                task = asyncio.create_task(learn_rooms(self.world, self.broker, unknown))
                self.learning.add(task)
                task.add_done_callback(self.learning.discard)

    async def start(self) -> Node:
        await self.broker.start()
        self.world.load(await read_snapshot(self.state, self.broker))
        self.loaded = True
        return self

    async def close(self) -> None:
        await self.state.close()
        await self.broker.close()

    # What the handlers do, as the domain modules call it.
    async def sign_up(self, name: str) -> User:
        record = UserRecord(name, "h-" + name, name.capitalize(), "", "online", False, now_ms())
        await self.writes.create_user(record)
        user = self.world.users[name] = User(record)
        return user

    async def add_contact(self, owner: str, name: str, *, blocked: bool = False) -> None:
        record = ContactRecord(owner, name, True, blocked)
        self.world.set_contact(record)
        await self.writes.put_contact(record)

    async def join(self, room_name: str, user_name: str) -> None:
        world = self.world
        room = world.rooms.get(room_name) or world.create_room(room_name)
        world.add_membership(room, world.users[user_name])
        await world.writes.add_member(room_name, user_name)


@pytest.fixture
async def nodes(redis: RedisProcess,
                tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[Node]]]:
    made: list[Node] = []

    async def factory() -> Node:
        node = Node(redis.url, f"n{len(made) + 1}", tmp_path)
        made.append(node)
        return await node.start()

    yield factory
    for node in made:
        await node.close()


def view(world: World) -> dict[str, Any]:
    """What must be the same on every node."""
    return {
        "users": {n: (u.record.token_hash, u.record.display) for n, u in world.users.items()},
        "contacts": {n: sorted((c.name, c.in_list, c.blocked) for c in u.contacts.values())
                     for n, u in world.users.items()},
        "listed_by": {n: sorted(o) for n, o in world.listed_by.items()},
        "members": {r: sorted(room.members) for r, room in world.rooms.items()},
        "reads": {n: dict(u.reads) for n, u in world.users.items() if u.reads},
        "epochs": {r: room.epoch for r, room in world.rooms.items()},
    }


async def test_what_one_node_changes_the_other_applies(nodes) -> None:
    a, b = await nodes(), await nodes()
    # Both loaded the same #lobby: the second node took the first one's epoch.
    assert a.world.rooms[rules.LOBBY].epoch == b.world.rooms[rules.LOBBY].epoch != ""
    await a.sign_up("alice")
    await b.sign_up("bob")
    await a.add_contact("alice", "bob")
    await b.add_contact("bob", "alice", blocked=True)
    await a.join(rules.LOBBY, "alice")
    await b.join("#rust", "bob")
    a.world.move_read_mark(a.world.users["alice"], rules.LOBBY, 3)
    await a.writes.set_read("alice", rules.LOBBY, 3)
    await wait_until(lambda: view(a.world) == view(b.world), "both nodes equal")
    assert b.world.users["alice"].record.token_hash == "h-alice"
    assert b.world.listed_by["bob"] == {"alice"} and a.world.users["bob"].has_blocked("alice")
    assert a.world.rooms["#rust"].members == {"bob"}
    # Undone on one node, undone on the other.
    record = ContactRecord("alice", "bob", False, False)
    a.world.set_contact(record)
    await a.writes.put_contact(record)
    b.world.end_membership(b.world.rooms["#rust"], b.world.users["bob"])
    await b.writes.remove_member("#rust", "bob")
    await wait_until(lambda: view(a.world) == view(b.world) and "bob" not in a.world.listed_by
                     and not a.world.rooms["#rust"].members, "undone on both")


async def test_a_node_started_later_loads_what_the_others_made(nodes) -> None:
    a = await nodes()
    for name in ("alice", "bob", "carol"):
        await a.sign_up(name)
        await a.join(rules.LOBBY, name)
    await a.add_contact("carol", "alice")
    late = await nodes()
    assert view(late.world) == view(a.world)
    assert late.applied == 0  # from the snapshot alone


async def test_one_handle_claimed_on_two_nodes_at_once_goes_to_one(nodes) -> None:
    a, b = await nodes(), await nodes()
    claims = [a.writes.create_user(UserRecord(f"user{i}", "from-a", "A", "", "online", False, 1))
              for i in range(10)]
    claims += [b.writes.create_user(UserRecord(f"user{i}", "from-b", "B", "", "online", False, 1))
               for i in range(10)]
    results = await asyncio.gather(*claims, return_exceptions=True)
    for i in range(10):
        outcomes = [results[i], results[10 + i]]
        assert sum(o is None for o in outcomes) == 1, outcomes
        assert sum(isinstance(o, IdentityTaken) for o in outcomes) == 1, outcomes


async def test_a_room_made_on_two_nodes_at_once_ends_with_one_epoch(nodes) -> None:
    a, b = await nodes(), await nodes()
    made = [a.world.create_room(f"#race{i}") for i in range(10)]
    made += [b.world.create_room(f"#race{i}") for i in range(10)]
    assert any(x.epoch != y.epoch for x, y in zip(made[:10], made[10:], strict=True))
    def agreed() -> bool:
        return all(a.world.rooms[f"#race{i}"].epoch == b.world.rooms[f"#race{i}"].epoch
                   for i in range(10))

    await wait_until(agreed, "one epoch per room")
    for i in range(10):
        head = await a.broker.head(f"#race{i}")
        assert head.epoch == a.world.rooms[f"#race{i}"].epoch
