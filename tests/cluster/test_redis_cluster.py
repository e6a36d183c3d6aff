"""``cfm serve --redis redis+cluster://…`` on a Redis Cluster of 3 masters on loopback:
two nodes pass a representative set of test_serve.py's two-node tests, and the batcher
follows MOVED when its slot map is wrong.

Each test starts 3 ``redis-server --cluster-enabled yes`` in its tmp dir and joins them
with ``redis-cli --cluster create … --cluster-replicas 0``; skipped, saying why, when
redis-server or redis-cli is missing (Debian's redis-tools ships redis-cli).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from cfm_server.cluster.batcher import Batcher
from cfm_server.cluster.broker import redis_client
from cfm_server.cluster.errors import ClusterError
from cfm_server.cluster.rediscluster import ClusterBatcher, slot_of, split_url
from tests.cluster.redis_proc import BINARY, MISSING, RedisProcess

# The two-node protocol tests, run here against the Redis Cluster (this module's `nodes`).
from tests.cluster.test_barrier import (  # noqa: F401
    test_a_change_of_a_message_just_stored_on_the_other_node_is_accepted,
    test_a_say_right_after_a_block_on_the_other_node_is_hidden,
)
from tests.cluster.test_changes import (  # noqa: F401
    test_an_edit_on_one_node_reaches_the_other_and_every_page,
    test_moderators_are_shared_and_delete_on_the_other_node,
    test_reactions_cross_nodes_and_a_retry_on_either_is_stored_once,
)
from tests.cluster.test_index_kept import rows_of_trimmed_and_gone_rooms_go
from tests.cluster.test_limits import (  # noqa: F401
    test_connections_per_address_are_counted_over_the_nodes,
)
from tests.cluster.test_search import (  # noqa: F401
    test_a_message_sent_on_one_node_is_found_on_the_other,
    test_a_room_the_node_never_followed_is_caught_up_when_it_is,
    test_edits_and_deletes_on_either_node_are_what_the_other_finds,
)
from tests.cluster.test_serve import (  # noqa: F401
    test_a_handle_claimed_on_both_nodes_at_once_goes_to_one,
    test_a_node_follows_only_rooms_with_members_signed_in_there,
    test_a_retry_on_the_other_node_gets_the_original_seq_and_ts,
    test_an_account_made_on_one_node_signs_in_on_the_other,
    test_dm_and_room_messages_cross_nodes_once_in_order_and_acked,
    test_frames_for_a_user_and_private_blocking_cross_nodes,
    test_join_replays_and_history_pages_read_the_stream_in_order,
    test_member_frames_and_room_typing_cross_nodes,
    test_presence_crosses_nodes_and_a_user_on_two_nodes_stays_online,
)
from tests.ports import free_port

CLI = shutil.which("redis-cli")
CLUSTER_ARGS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000")


class RedisCluster:
    def __init__(self, directory: Path, masters: int = 3) -> None:
        ports: list[int] = []
        while len(ports) < 2 * masters:  # distinct: nothing listens on them before start
            if (port := free_port()) not in ports:
                ports.append(port)
        # The bus port named, not port + 10000: that would be in the ephemeral range.
        self.procs = [RedisProcess(directory / f"m{i}",
                                   (*CLUSTER_ARGS, "--cluster-port", str(ports[masters + i])))
                      for i in range(masters)]
        for proc, port in zip(self.procs, ports, strict=False):
            proc.port = port

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.procs[0].port}/0"

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for p in self.procs))
        addresses = [f"127.0.0.1:{p.port}" for p in self.procs]
        assert CLI is not None
        done = await asyncio.to_thread(
            subprocess.run, [CLI, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                             "--cluster-yes"],
            capture_output=True, timeout=60)
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
        # Every master must see every slot served before a node is started on it.
        for proc in self.procs:
            client = Redis(host="127.0.0.1", port=proc.port)
            try:
                for _ in range(500):
                    info = await client.execute_command("CLUSTER INFO")  # parsed: a dict
                    if info.get("cluster_state") == "ok" \
                            and str(info.get("cluster_slots_ok")) == "16384":
                        break
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError(f"the Redis Cluster did not come up: {info}")
            finally:
                await client.aclose()

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.procs))


@pytest.fixture
async def redis_cluster(tmp_path: Path) -> AsyncIterator[RedisCluster]:
    if BINARY is None:
        pytest.skip(MISSING)
    if CLI is None:
        pytest.skip("redis-cli is not installed (Debian: apt-get install redis-tools); "
                    "it creates the Redis Cluster")
    cluster = RedisCluster(tmp_path / "rc")
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


@pytest.fixture
async def nodes(redis_cluster: RedisCluster, server_factory: Callable[..., Awaitable[Any]]
                ) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    made: list[Any] = []

    async def node(**overrides: Any) -> Any:
        server = await server_factory(redis_url=redis_cluster.url, node_id=f"n{len(made) + 1}",
                                      **overrides)
        made.append(server)
        return server

    yield node


def test_the_url_scheme_asks_for_a_redis_cluster() -> None:
    assert split_url("redis+cluster://h:1/0") == ("redis://h:1/0", True)
    assert split_url("rediss+cluster://:pw@h:1/0") == ("rediss://:pw@h:1/0", True)
    assert split_url("redis://h:1/0") == ("redis://h:1/0", False)


def test_a_call_goes_to_its_keys_slot_and_a_script_of_two_slots_is_refused() -> None:
    assert slot_of(("GET", "cfm:{#a}:meta")) == slot_of(("HGET", "cfm:{#a}:ids", "x"))
    assert slot_of(("EVALSHA", "0" * 40, 2, "cfm:{#a}:meta", "cfm:{#a}:log", "v")) \
        == slot_of(("GET", "#a"))
    assert slot_of(("PING",)) is None
    with pytest.raises(ClusterError):
        slot_of(("EVALSHA", "0" * 40, 2, "cfm:{#a}:meta", "cfm:{#b}:meta"))


async def test_the_batcher_follows_moved_when_its_slot_map_is_wrong(
        redis_cluster: RedisCluster) -> None:
    seed, _ = split_url(redis_cluster.url)
    client = redis_client(seed, 5.0)
    batcher = ClusterBatcher(client, timeout=5.0)
    try:
        await batcher.refresh()
        owners = sorted(set(batcher._owners))
        assert len(owners) == 3
        # Every slot believed on one master: two thirds of the keys answer MOVED.
        batcher._owners = [owners[0]] * len(batcher._owners)
        names = [f"cfm:{{#room{i}}}:k" for i in range(30)]
        await asyncio.gather(*(batcher.call("SET", n, n) for n in names))
        got = await asyncio.gather(*(batcher.call("GET", n) for n in names))
        assert got == [n.encode() for n in names]
        assert batcher.redirects > 0
        assert len(set(batcher._owners)) == 3  # the map was read again
    finally:
        await batcher.close()
        await client.aclose()


async def test_a_loop_turns_appends_merge_per_slot_and_survive_moved(
        redis_cluster: RedisCluster) -> None:
    """The appends of one turn over rooms of many slots (one EVALSHA may only hold keys
    of one slot), with a wrong slot map: every room numbered from 1, in order."""
    from cfm_server.cluster.broker import Broker

    broker = Broker(redis_cluster.url, node="n1", on_message=lambda *_: None)
    await broker.start()
    try:
        batcher = broker.batcher
        assert isinstance(batcher, ClusterBatcher)
        await batcher.refresh()
        batcher._owners = [batcher._owners[0]] * len(batcher._owners)
        done = await asyncio.gather(*(broker.append(f"#m{i % 30}", "bob", f"c{i}", "text",
                                                    "x", 1_764_800_000_000)
                                      for i in range(90)))
        for r in range(30):
            assert [d.seq for d in done[r::30]] == [1, 2, 3]
        assert batcher.redirects > 0
    finally:
        await broker.close()


async def test_a_plain_url_on_a_cluster_node_names_the_scheme_to_use(
        redis_cluster: RedisCluster) -> None:
    seed, _ = split_url(redis_cluster.url)
    client = redis_client(seed, 5.0)
    batcher = Batcher(client, timeout=5.0)
    try:
        # Some of these keys live on another master: that one answers MOVED.
        results = await asyncio.gather(*(batcher.call("GET", f"cfm:{{#r{i}}}:k")
                                         for i in range(10)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, ClusterError)]
        assert refused and "redis+cluster://" in str(refused[0])
    finally:
        await batcher.close()
        await client.aclose()


async def test_a_key_of_a_slot_being_migrated_is_asked_for_on_the_new_master(
        redis_cluster: RedisCluster) -> None:
    from redis.crc import key_slot

    seed, _ = split_url(redis_cluster.url)
    client = redis_client(seed, 5.0)
    batcher = ClusterBatcher(client, timeout=5.0)
    key = "cfm:{#moving}:k"
    slot = key_slot(key.encode())
    try:
        await batcher.refresh()
        source_address = batcher._owners[slot]
        target_address = next(a for a in set(batcher._owners) if a != source_address)
        source = Redis(host=source_address[0], port=source_address[1])
        target = Redis(host=target_address[0], port=target_address[1])
        try:
            await source.set(key, b"moved")
            source_id = (await source.execute_command("CLUSTER MYID")).decode()
            target_id = (await target.execute_command("CLUSTER MYID")).decode()
            # The first steps of a resharding: the key is on the target, the slot not yet.
            await target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
            await source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
            await source.execute_command("MIGRATE", target_address[0], target_address[1],
                                         key, 0, 5000)
            assert await batcher.call("GET", key) == b"moved"
            assert batcher.redirects == 1
            assert batcher._owners[slot] == source_address  # ASK does not move the slot
        finally:
            await source.aclose()
            await target.aclose()
    finally:
        await batcher.close()
        await client.aclose()


async def test_the_admin_commands_reach_keys_on_any_master(
        redis_cluster: RedisCluster) -> None:
    from cfm_server.cluster import keys
    from cfm_server.cluster.ai import kill_switch_in_redis
    from cfm_server.cluster.invites import key_from_redis

    first = await key_from_redis(redis_cluster.url)
    assert first is not None and await key_from_redis(redis_cluster.url) == first
    await kill_switch_in_redis(redis_cluster.url, True)
    seed, _ = split_url(redis_cluster.url)
    client = redis_client(seed, 5.0)
    batcher = ClusterBatcher(client, timeout=5.0)
    try:
        assert await batcher.call("GET", keys.AI_KILL_SWITCH) == b"1"
    finally:
        await batcher.close()
        await client.aclose()


async def test_a_master_out_of_reach_is_unavailable_then_back(
        redis_cluster: RedisCluster) -> None:
    from redis.crc import key_slot

    from cfm_server.cluster.errors import ClusterUnavailable

    seed, _ = split_url(redis_cluster.url)
    client = redis_client(seed, 5.0)
    batcher = ClusterBatcher(client, timeout=5.0, backoff=(0.05, 0.2))
    try:
        await batcher.refresh()
        lost = redis_cluster.procs[2]
        key = next(k for k in (f"cfm:{{#r{i}}}:k" for i in range(100))
                   if batcher._owners[key_slot(k.encode())] == ("127.0.0.1", lost.port))
        await batcher.call("SET", key, b"kept")
        lost.kill()
        with pytest.raises(ClusterUnavailable):
            await batcher.call("GET", key)
        await lost.start()  # its AOF and nodes.conf: the same master again
        for _ in range(500):  # the probe reaches every master; then calls go out again
            try:
                value = await batcher.call("GET", key)
                break
            except ClusterUnavailable:
                await asyncio.sleep(0.02)
        else:
            raise AssertionError("the batcher did not come back")
        assert value == b"kept"
    finally:
        await batcher.close()
        await client.aclose()


async def test_a_kept_search_index_is_checked_against_every_master(
        redis_cluster: RedisCluster, tmp_path: Path) -> None:
    """A node's kept index file checked at its indexer's start (one pipeline over rooms
    of several slots: indexfile.check_kept) on a Redis Cluster."""
    from cfm_server.cluster.broker import Broker

    brokers: list[Broker] = []

    async def make(url: str) -> Broker:
        broker = Broker(url, node=f"n{len(brokers) + 1}", on_message=lambda *_: None)
        await broker.start()
        brokers.append(broker)
        return broker

    try:
        await rows_of_trimmed_and_gone_rooms_go(redis_cluster.url, make, tmp_path)
    finally:
        for broker in brokers:
            await broker.close()


async def test_a_pass_reads_rooms_of_every_master_in_one_pipeline_loading_its_script(
        redis_cluster: RedisCluster, tmp_path: Path) -> None:
    """The indexer reads a pass's rooms (their keys on different masters) in one
    pipeline; a Redis Cluster's pipeline does not load scripts, so after a SCRIPT FLUSH
    of every master the indexer loads read.lua itself and reads them all."""
    from cfm_server.cluster import indexer as ix
    from cfm_server.cluster import indexfile
    from cfm_server.cluster.broker import Broker

    broker = Broker(redis_cluster.url, node="n1", on_message=lambda *_: None)
    await broker.start()
    rooms = [f"#r{i}" for i in range(12)]  # 12 hash tags: slots on all three masters
    try:
        for n in range(2):
            await asyncio.gather(*(broker.append(room, "alice", f"{room}-{n}", "text",
                                                 f"word{n} in {room}", 1_700_000_000_000)
                                   for room in rooms))
    finally:
        await broker.close()
    for proc in redis_cluster.procs:
        client = Redis(host="127.0.0.1", port=proc.port)
        try:
            await client.script_flush()
        finally:
            await client.aclose()
    path = tmp_path / "index.sqlite3"
    indexfile.prepare(path, "")
    conn = ix.connect(path)
    indexer = ix.Indexer(conn, lambda: ix.redis_client(redis_cluster.url))
    try:
        for room in rooms:
            indexer.note(room, 2)
        indexer.run_pass()  # blocking, as in its process
        assert not indexer.busy
        marks = dict(conn.execute("SELECT room, seq FROM rooms").fetchall())
        assert marks == {room: 2 for room in rooms}
        assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == 2 * len(rooms)
    finally:
        if indexer.redis is not None:
            indexer.redis.close()
        conn.close()


async def test_a_subscription_from_a_seq_keeps_it_when_a_new_masters_connection_resyncs(
        redis_cluster: RedisCluster) -> None:
    """A node that learns of a new DM subscribes to it from seq 0 (its first messages
    may be stored already). The room's channel may be the node's first on its master:
    that master's pub/sub connection is made then, and its first confirmation re-reads
    the head of every room (``Broker._resync``), this one's too, while the subscription
    has not read the head itself. The resync must not take that head as where delivery
    starts: the messages up to it are the subscription's to read from the stream."""
    import contextvars

    import msgpack
    from redis.crc import key_slot

    from cfm_server.cluster.broker import Broker, Head

    resyncing: contextvars.ContextVar[bool] = contextvars.ContextVar("resyncing",
                                                                     default=False)

    class LateHead(Broker):
        """The order the race needs, made certain: the subscription reads the room's
        head only after the resync of the room's new pub/sub connection ran."""

        room = ""
        resynced: asyncio.Event

        async def _resync(self) -> None:
            token = resyncing.set(True)  # copied into the tasks of its head reads
            try:
                await super()._resync()
            finally:
                resyncing.reset(token)
            if self.room in self._rooms:
                self.resynced.set()

        async def head(self, room: str) -> Head:
            if room == self.room and not resyncing.get():
                await asyncio.wait_for(self.resynced.wait(), 10)
            return await super().head(room)

    writer = Broker(redis_cluster.url, node="n1", on_message=lambda *_: None)
    seen: list[tuple[str, int, str, bytes]] = []
    reader = LateHead(redis_cluster.url, node="n2", on_message=lambda *d: seen.append(d))
    reader.resynced = asyncio.Event()
    await writer.start()
    await reader.start()
    try:
        batcher = writer.batcher
        assert isinstance(batcher, ClusterBatcher)
        await batcher.refresh()
        seed = ("127.0.0.1", redis_cluster.procs[0].port)
        # A room on another master than the seed's: the reader holds no connection there.
        room = next(r for r in (f"dm:a{i}:b" for i in range(100))
                    if batcher._owners[key_slot(f"cfm:{{{r}}}:x".encode())] != seed)
        reader.room = room
        for i in range(3):  # stored before the reader knew of the room
            await writer.append(room, "alice", f"c{i}", "text", f"m{i}", 1_764_800_000_000)
        head = await reader.subscribe(room, since=0)
        assert reader.resynced.is_set()  # the race took place
        await writer.append(room, "alice", "c3", "text", "m3", 1_764_800_000_000)
        for _ in range(500):  # the live one, after what the stream held before it
            if any(d[1] == 4 for d in seen):
                break
            await asyncio.sleep(0.01)
        assert [(d[1], msgpack.unpackb(d[3])["text"]) for d in seen] \
            == [(1, "m0"), (2, "m1"), (3, "m2"), (4, "m3")]
        assert head.seq == 0  # delivery starts after it
    finally:
        await reader.close()
        await writer.close()
