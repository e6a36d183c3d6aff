"""`cfm admin migrate --to redis://…`: a single-node server's data, made by real clients
over a real server, copied into a real redis-server; what a cluster node reads back
there equals what the single-node store holds, seq and epoch included."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgpack
from typer.testing import CliRunner

from cfm_cli.main import app
from cfm_common import rules
from cfm_server.cluster import keys, records
from cfm_server.cluster.broker import Broker
from cfm_server.cluster.state import SharedState
from cfm_server.server import DB_FILE
from cfm_server.store.sqlite import SqliteStore
from tests.wire import signed_in

BIG = 10_000


async def cfm_admin(*args: str) -> Any:
    """``cfm admin ARGS`` as typed (its asyncio.run needs a thread of its own here)."""
    return await asyncio.to_thread(CliRunner().invoke, app, ["admin", *args])


async def make_history(server_factory: Any, data_dir: Path) -> None:
    """Three people: contacts, a block, DMs (one hidden by the block), a busy lobby with
    retried ids, read marks."""
    server = await server_factory(data_dir=data_dir)
    async with signed_in(server.url, "alice") as alice, \
            signed_in(server.url, "bob") as bob, signed_in(server.url, "carol") as carol:
        for client, other in ((alice, "bob"), (bob, "alice"), (carol, "alice")):
            await client.send({"t": "contact", "op": "add", "name": other})
            await client.recv_until("contact")
        await bob.send({"t": "contact", "op": "block", "name": "carol"})
        await bob.recv_until("contact")
        for client in (alice, bob, carol):
            await client.send({"t": "join", "room": "#lobby"})
            await client.recv_until("joined")
        for i in range(30):
            client = (alice, bob, carol)[i % 3]
            await client.send({"t": "say", "room": "#lobby", "text": f"lobby {i}", "id": f"l{i}"})
            await client.recv_until("ack")
        await alice.send({"t": "say", "to": "bob", "text": "hi bob", "id": "d1"})
        await alice.recv_until("ack")
        await carol.send({"t": "say", "to": "bob", "text": "you blocked me?", "id": "d2"})
        await carol.recv_until("ack")
        await bob.send({"t": "read", "room": "#lobby", "seq": 20})
        await alice.send({"t": "read", "room": "#lobby", "seq": 30})
        await alice.send({"t": "say", "room": "#lobby", "text": "bye", "id": "l30"})
        await alice.recv_until("ack")
    await server.stop()


async def test_the_copy_is_what_a_node_reads_back(server_factory, redis, tmp_path) -> None:
    data_dir = tmp_path / "single"
    await make_history(server_factory, data_dir)
    (data_dir / "ai").mkdir(exist_ok=True)
    (data_dir / "ai" / "smartybot.memory.json").write_text('{"alice": {"name": "Xavier"}}')
    (data_dir / "invite.key").write_bytes(b"k" * 32)

    result = await cfm_admin("migrate", "--to", redis.url, "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "3 users" in result.output
    assert "invite key yes, 1 AI memory" in result.output

    store = SqliteStore(data_dir / DB_FILE)
    await store.open()
    broker = Broker(redis.url, node="n1", on_message=lambda *a: None)
    await broker.start()
    try:
        # The shared records, as a node loads them, equal the store's rows.
        state = SharedState(broker)
        broker_records = records.parse(await state.load())
        assert broker_records.users == {u.name: u for u in store.load_users()}
        assert sorted(map(_contact, broker_records.contacts)) == \
            sorted(_contact(c) for c in store.load_contacts() if c.in_list or c.blocked)
        assert any(c.blocked for c in broker_records.contacts)  # bob's block came along
        assert sorted(broker_records.members) == sorted(store.load_members())
        assert sorted(broker_records.reads) == sorted(store.load_reads())
        assert ("alice", "#lobby", 30) in broker_records.reads
        # Every room: same head (seq and epoch), same messages, hidden mark included.
        rooms = list(store.load_rooms())
        assert {r.room for r in rooms} >= {"#lobby", rules.dm_room("alice", "bob"),
                                           rules.dm_room("bob", "carol")}
        total = 0
        for room in rooms:
            head = await broker.head(room.room)
            assert (head.seq, head.epoch) == (room.seq, room.epoch)
            copied = await broker.history(room.room, after=0, limit=BIG)
            assert copied == store.history_after(room.room, 0, BIG)
            total += len(copied)
        assert total == 33 and f"{total} messages" in result.output
        hidden = await broker.history(rules.dm_room("bob", "carol"), after=0, limit=5)
        assert [m.hidden for m in hidden] == [True]
        # On the stream: the frame as its sender sees it, the mark beside it.
        [(_, fields)] = await broker.batcher.call(
            "XRANGE", keys.room_log(rules.dm_room("bob", "carol")), "-", "+")
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
        frame = msgpack.unpackb(fields[b"m"])
        assert frame["text"] == "you blocked me?" and "hidden" not in frame
        assert fields[b"h"] == b"1"
        # A say retried after the move gets its original ack; a new one goes on from
        # the same seq in the same epoch: no gap, no reset.
        lobby = next(r for r in rooms if r.room == "#lobby")
        first = store.find_message("bob", "l1")
        assert first is not None
        retry = await broker.append("#lobby", "bob", "l1", "text", "lobby 1", 1)
        assert retry.duplicate and (retry.seq, retry.ts) == (first.seq, first.ts)
        new = await broker.append("#lobby", "alice", "after", "text", "moved", 1)
        assert (new.seq, new.epoch, new.duplicate) == (lobby.seq + 1, lobby.epoch, False)
        # The files every node needs.
        assert await broker.batcher.call("GET", keys.INVITE_KEY) == b"k" * 32
        memory = await broker.batcher.call("GET", keys.ai_memory("smartybot"))
        assert json.loads(memory) == {"alice": {"name": "Xavier"}}
    finally:
        await broker.close()
        await store.close()


def _contact(c: Any) -> tuple[str, str, bool, bool]:
    return (c.owner, c.name, c.in_list, c.blocked)


async def test_a_redis_holding_cfm_data_or_a_served_dir_is_refused(
        server_factory, redis, tmp_path) -> None:
    data_dir = tmp_path / "single"
    await make_history(server_factory, data_dir)
    first = await cfm_admin("migrate", "--to", redis.url, "--data-dir", str(data_dir))
    assert first.exit_code == 0, first.output
    again = await cfm_admin("migrate", "--to", redis.url, "--data-dir", str(data_dir))
    assert again.exit_code == 2
    assert "already holds cfm data" in again.output and "redis://HOST:PORT/1" in again.output
    # Another database number of the same Redis is empty: that works.
    other = redis.url.rsplit("/", 1)[0] + "/1"
    elsewhere = await cfm_admin("migrate", "--to", other, "--data-dir", str(data_dir))
    assert elsewhere.exit_code == 0, elsewhere.output
    # A served data dir: stop the server first.
    server = await server_factory(data_dir=data_dir)
    served = await cfm_admin("migrate", "--to", redis.url.rsplit("/", 1)[0] + "/2",
                                 "--data-dir", str(data_dir))
    assert served.exit_code == 2 and "stop cfm serve first" in served.output
    await server.stop()
    for bad, says in (("http://127.0.0.1:1/", "takes a Redis URL"),
                      ("redis://127.0.0.1:9/0", "cannot reach Redis"),
                      (redis.url.rsplit("/", 1)[0] + "/abc", "give a number"),
                      (redis.url + "?x=1", "options Redis clients do not take: x")):
        refused = await cfm_admin("migrate", "--to", bad, "--data-dir", str(data_dir))
        assert refused.exit_code == 2 and says in refused.output, refused.output


async def test_the_password_is_never_printed_and_a_missing_dir_is_named(
        redis, tmp_path) -> None:
    url = f"redis://:s3cret@127.0.0.1:{redis.port}/3"  # Redis 7 takes any, unset
    result = await cfm_admin("migrate", "--to", url, "--data-dir", str(tmp_path / "nothere"))
    assert result.exit_code == 2
    assert "does not exist; check --data-dir" in result.output
    data_dir = tmp_path / "empty"
    data_dir.mkdir()
    (data_dir / DB_FILE).write_bytes(b"")  # an empty database: nothing to copy
    result = await cfm_admin("migrate", "--to", url, "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and "redis://…@127.0.0.1" in result.output
