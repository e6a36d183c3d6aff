"""``cfm serve --redis``: two real nodes (in-process Servers) over one real redis-server,
each test's clients spread over both — a client cannot tell which node it is on."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.wire import WireClient, eventually, signed_in


async def test_an_account_made_on_one_node_signs_in_on_the_other(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice:
        token = alice.token
        async with signed_in(b.url, "bob"):
            pass
        await alice.send({"t": "contact", "op": "add", "name": "bob", "id": "c1"})
        await alice.recv_until("contact", ref="c1")
    async with WireClient.connect(b.url) as again:
        welcome = await again.hello("alice", token=token)
        assert welcome["t"] == "welcome", welcome
        assert [c["name"] for c in welcome["contacts"]] == ["bob"]
    # The handle is taken on every node: without the token, or claimed anew.
    async with WireClient.connect(b.url) as thief:
        refused = await thief.hello("alice")
        assert refused["t"] == "error" and refused["code"] == "name_taken"
    async with WireClient.connect(b.url) as wrong:
        refused = await wrong.hello("alice", token="not-it")
        assert refused["t"] == "error" and refused["code"] == "bad_token"


async def test_a_handle_claimed_on_both_nodes_at_once_goes_to_one(nodes) -> None:


    a, b = await nodes(), await nodes()
    clients = [await WireClient.open(a.url), await WireClient.open(b.url)]
    try:
        replies = await asyncio.gather(*(c.hello("carol") for c in clients))
        kinds = sorted(r["t"] if r["t"] == "welcome" else r["code"] for r in replies)
        assert kinds == ["name_taken", "welcome"], replies
    finally:
        for client in clients:
            await client.close()


async def msgs_of(client: WireClient, room: str, n: int) -> list[dict[str, Any]]:
    """The next ``n`` msg frames of ``room`` (others skipped)."""
    got: list[dict[str, Any]] = []
    while len(got) < n:
        frame = await client.recv_until("msg", timeout=10)
        if frame["room"] == room:
            got.append(frame)
    return got


async def acks_and_msgs(client: WireClient, room: str, n: int
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The next ``n`` acks and ``n`` msg frames of ``room``, however they interleave."""
    acks: list[dict[str, Any]] = []
    msgs: list[dict[str, Any]] = []
    while len(acks) < n or len(msgs) < n:
        frame = await client.recv(timeout=10)
        if frame["t"] == "ack":
            acks.append(frame)
        elif frame["t"] == "msg" and frame["room"] == room:
            msgs.append(frame)
    return acks, msgs


def assert_in_order_once(frames: list[dict[str, Any]]) -> None:
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(set(seqs)) and seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


async def test_dm_and_room_messages_cross_nodes_once_in_order_and_acked(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob, \
            signed_in(b.url, "alice", token=alice.token) as alice_b:  # her 2nd session, on B
        n = 15
        # Both write at once, into a DM that neither node has yet.
        for i in range(n):
            await alice.send({"t": "say", "to": "bob", "text": f"a{i}", "id": f"a{i}"})
            await bob.send({"t": "say", "to": "alice", "text": f"b{i}", "id": f"b{i}"})
        dm = "dm:alice:bob"
        # Each reads its acks and the other's messages as they come: interleaved.
        acks_a, at_alice = await acks_and_msgs(alice, dm, n)
        acks_b, at_bob = await acks_and_msgs(bob, dm, n)
        assert [x["id"] for x in acks_a] == [f"a{i}" for i in range(n)]
        assert [x["seq"] for x in acks_a] == sorted(x["seq"] for x in acks_a)
        at_alice_b = await msgs_of(alice_b, dm, 2 * n)
        assert [m["text"] for m in at_bob] == [f"a{i}" for i in range(n)]
        assert [m["text"] for m in at_alice] == [f"b{i}" for i in range(n)]
        assert_in_order_once(at_alice_b)  # every message of the room, from both nodes
        assert sorted(m["seq"] for m in at_alice_b) == list(range(1, 2 * n + 1))
        assert {(m["seq"], m["ts"]) for m in at_bob} == {(x["seq"], x["ts"]) for x in acks_a}
        assert {(m["seq"], m["ts"]) for m in at_alice} == {(x["seq"], x["ts"]) for x in acks_b}
        # A group room, members on both nodes.
        for client in (alice, bob, alice_b):
            await client.send({"t": "join", "room": "#games", "id": "j"})
            await client.recv_until("joined", ref="j")
        for i in range(n):
            await (alice if i % 2 else bob).send(
                {"t": "say", "room": "#games", "text": f"g{i}", "id": f"g{i}"})
        for client, count in ((alice, n - n // 2), (bob, n // 2)):
            # The other's messages only: in order, once (their seqs need not be
            # consecutive: each sender's may go out over several pipelines).
            seqs = [f["seq"] for f in await msgs_of(client, "#games", count)]
            assert seqs == sorted(set(seqs)), seqs
        assert_in_order_once(await msgs_of(alice_b, "#games", n))  # every one of them
        await alice.expect_silence("msg")
        await bob.expect_silence("msg")


async def test_a_retry_on_the_other_node_gets_the_original_seq_and_ts(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        for client in (alice, bob):
            await client.send({"t": "join", "room": "#lobby", "id": "j"})
            await client.recv_until("joined", ref="j")
        say = {"t": "say", "room": "#lobby", "text": "once", "id": "r1"}
        await alice.send(say)
        first = await alice.recv_until("ack", id="r1")
        async with signed_in(b.url, "alice", token=alice.token) as alice_b:
            await alice_b.send(say)  # the reply was lost, say; the client retries elsewhere
            again = await alice_b.recv_until("ack", id="r1")
        assert (again["seq"], again["ts"]) == (first["seq"], first["ts"])
        assert [m["text"] for m in await msgs_of(bob, "#lobby", 1)] == ["once"]
        await bob.expect_silence("msg", timeout=0.3)
        await bob.send({"t": "history", "room": "#lobby", "after": 0, "id": "h"})
        page = await bob.recv_until("history", ref="h")
        assert [(m["seq"], m["text"]) for m in page["msgs"]] == [(first["seq"], "once")]


async def test_join_replays_and_history_pages_read_the_stream_in_order(nodes) -> None:


    a, b = await nodes(rate_limits=False), await nodes(rate_limits=False)
    total = 120
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        await alice.send({"t": "join", "room": "#busy", "id": "j"})
        await alice.recv_until("joined", ref="j")

        async def write() -> None:
            for i in range(total):
                await alice.send({"t": "say", "room": "#busy", "text": f"m{i}", "id": f"m{i}"})
                await asyncio.sleep(0)  # interleaved with the join below
        writing = asyncio.create_task(write())
        await alice.recv_until("ack", id="m40")
        # Mid-stream, from a node that held no member of the room: replay up to the
        # joined seq, then live — every message once, in order.
        await bob.send({"t": "join", "room": "#busy", "since": 0, "id": "jb"})
        joined = await bob.recv_until("joined", ref="jb")
        assert joined["seq"] >= 41
        got = await msgs_of(bob, "#busy", total)
        await writing
        assert [m["text"] for m in got] == [f"m{i}" for i in range(total)]
        assert [m["seq"] for m in got] == list(range(1, total + 1))
        await bob.expect_silence("msg")
        # History pages, both ways, from the other node.
        await bob.send({"t": "history", "room": "#busy", "limit": 50, "id": "h1"})
        newest = await bob.recv_until("history", ref="h1")
        assert [m["seq"] for m in newest["msgs"]] == list(range(total - 49, total + 1))
        assert newest["more"] is True
        await alice.send({"t": "history", "room": "#busy", "before": total - 49, "limit": 100,
                          "id": "h2"})
        older = await alice.recv_until("history", ref="h2")
        assert [m["seq"] for m in older["msgs"]] == list(range(1, total - 49))
        assert older["more"] is False
        await alice.send({"t": "history", "room": "#busy", "after": 100, "id": "h3"})
        after = await alice.recv_until("history", ref="h3")
        assert [m["text"] for m in after["msgs"]] == [f"m{i}" for i in range(100, total)]
        # A rejoin from where the client was: only what it missed.
        async with signed_in(b.url, "carol") as carol:
            await carol.send({"t": "join", "room": "#busy", "since": total - 3, "id": "jc"})
            assert (await carol.recv_until("joined", ref="jc"))["seq"] == total
            assert [m["seq"] for m in await msgs_of(carol, "#busy", 3)] == [
                total - 2, total - 1, total]


async def test_while_redis_is_out_of_reach_frames_get_a_retryable_internal_error(
        nodes, redis) -> None:
    a = await nodes()
    async with signed_in(a.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#lobby", "id": "j"})
        await alice.recv_until("joined", ref="j")
        await alice.send({"t": "say", "room": "#lobby", "text": "first", "id": "x0"})
        await alice.recv_until("ack", id="x0")
        redis.kill()
        await alice.send({"t": "say", "room": "#lobby", "text": "kept?", "id": "x1"})
        error = await alice.recv_until("error", ref="x1")
        assert error["code"] == "internal" and error["retry_ms"] > 0
        await alice.send({"t": "history", "room": "#lobby", "id": "h"})
        error = await alice.recv_until("error", ref="h")
        assert error["code"] == "internal" and error["retry_ms"] > 0
        async with httpx.AsyncClient() as http:
            ready = await http.get(a.http_url + "/readyz")
        assert (ready.status_code, ready.text) == (503, "not ready: Redis is unreachable\n")
        async with WireClient.connect(a.url) as late:
            refused = await late.hello("bob")
            assert refused["t"] == "error" and refused["code"] == "internal"
            assert refused["retry_ms"] > 0
            assert await late.wait_closed() == 1013
        await redis.start()  # the same dir: its AOF
        # The client retries with the same id (as the SDK does) until it is acked.
        for _ in range(200):
            await alice.send({"t": "say", "room": "#lobby", "text": "kept?", "id": "x1"})
            reply = await alice.recv()
            while reply["t"] not in ("ack", "error"):
                reply = await alice.recv()
            if reply["t"] == "ack":
                break
            assert reply["code"] == "internal", reply
            await asyncio.sleep(reply["retry_ms"] / 1000)
        assert reply["t"] == "ack" and reply["seq"] == 2
        await alice.send({"t": "history", "room": "#lobby", "id": "h2"})
        page = await alice.recv_until("history", ref="h2")
        assert [(m["seq"], m["text"]) for m in page["msgs"]] == [(1, "first"), (2, "kept?")]
        async with httpx.AsyncClient() as http:
            await eventually(lambda: not a.node.unreachable())
            ready = await http.get(a.http_url + "/readyz")
            assert ready.status_code == 200, ready.text


async def test_presence_crosses_nodes_and_a_user_on_two_nodes_stays_online(nodes) -> None:
    a, b = await nodes(presence_grace=0.2), await nodes(presence_grace=0.2)
    async with signed_in(a.url, "alice") as first:
        token = first.token
    # Past her grace: back within it, nobody would be told she came online.
    await eventually(lambda: not a.hub.users["alice"].sessions
                     and "alice" not in a.hub.presence.going_offline)
    async with signed_in(b.url, "bob") as bob:
        await bob.send({"t": "contact", "op": "add", "name": "alice", "id": "c"})
        entry = await bob.recv_until("contact", ref="c")
        assert entry["status"] == "offline"
        async with signed_in(a.url, "alice", token=token) as alice_a:
            await bob.recv_until("presence", name="alice", status="online")
            async with signed_in(b.url, "bob", token=bob.token) as bob2:
                entry = next(c for c in bob2.welcome["contacts"] if c["name"] == "alice")
                assert entry["status"] == "online"
            await alice_a.send({"t": "presence", "status": "busy", "psm": "exams"})
            busy = await bob.recv_until("presence", name="alice", status="busy")
            assert busy["psm"] == "exams"
            alice_b = await WireClient.open(b.url)
            assert (await alice_b.hello("alice", token=token))["t"] == "welcome"
        # alice left node A but is still on B: nobody sees her go offline.
        await bob.expect_silence("presence", timeout=1.0)
        await alice_b.close()
        await bob.recv_until("presence", name="alice", status="offline")


def test_redis_url_from_the_environment_a_toml_file_or_a_flag(tmp_path) -> None:
    from cfm_server.config import ConfigError, load_config

    toml = tmp_path / "server.toml"
    toml.write_text('redis_url = "redis://10.0.0.5:6379/2"\nnode_id = "node-1"\n')
    config = load_config(toml, environ={})
    assert (config.redis_url, config.node_id, config.cluster) == (
        "redis://10.0.0.5:6379/2", "node-1", True)
    config = load_config(toml, environ={"CFM_REDIS_URL": "redis://env:6379/0"})
    assert config.redis_url == "redis://env:6379/0"
    config = load_config(toml, {"redis_url": "unix:///run/redis.sock"}, environ={})
    assert config.redis_url == "unix:///run/redis.sock"
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert not load_config(empty, environ={}).cluster
    for overrides, words in (({"redis_url": "http://x"}, "redis_url must be"),
                             ({"node_id": "a b"}, "node_id must be")):
        with pytest.raises(ConfigError, match=words):
            load_config(toml, overrides, environ={})


async def test_frames_for_a_user_and_private_blocking_cross_nodes(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob, \
            signed_in(b.url, "alice", token=alice.token) as alice_b:
        # added_you, made on A, to bob on B; the contact echo to alice's session on B.
        await alice.send({"t": "contact", "op": "add", "name": "bob", "id": "c"})
        await alice.recv_until("contact", ref="c")
        assert (await bob.recv_until("contact", op="added_you"))["name"] == "alice"
        assert (await alice_b.recv_until("contact", op="add"))["name"] == "bob"
        # A DM, typing to the peer on the other node, read marks to both.
        await alice.send({"t": "say", "to": "bob", "text": "hi", "id": "m1"})
        await alice.recv_until("ack", id="m1")
        await bob.recv_until("msg", seq=1)  # a mark covers only what was shown
        await alice.send({"t": "typing", "to": "bob"})
        await bob.recv_until("typing", room="dm:alice:bob")
        await bob.send({"t": "read", "room": "dm:alice:bob", "seq": 1})
        for client in (alice, alice_b):
            seen = await client.recv_until("read", room="dm:alice:bob")
            assert (seen["name"], seen["seq"]) == ("bob", 1)
        # bob blocks alice on B: her next DM is stored; bob sees its placeholder, live
        # and in history, and alice's other session the message itself.
        await bob.send({"t": "contact", "op": "block", "name": "alice", "id": "b"})
        await bob.recv_until("contact", ref="b")
        await eventually(lambda: a.hub.users["bob"].has_blocked("alice"))
        await alice.send({"t": "say", "to": "bob", "text": "please", "id": "m2"})
        ack = await alice.recv_until("ack", id="m2")
        live = await bob.recv_until("msg", seq=ack["seq"])
        assert live["hidden"] is True and live["text"] == ""
        mine = await alice_b.recv_until("msg", seq=ack["seq"])
        assert mine["text"] == "please" and "hidden" not in mine
        await bob.send({"t": "history", "room": "dm:alice:bob", "after": 0, "id": "h"})
        page = await bob.recv_until("history", ref="h")
        assert [(m["text"], m.get("hidden", False)) for m in page["msgs"]] == [
            ("hi", False), ("", True)]


async def test_two_cfm_serve_processes_with_the_redis_flag_and_the_environment(
        redis, tmp_path) -> None:
    from tests.server.serve_proc import serve

    async with serve("--redis", redis.url, "--node-id", "p1", "--data-dir",
                     str(tmp_path / "p1")) as p1, \
            serve("--data-dir", str(tmp_path / "p2"),
                  env={"CFM_REDIS_URL": redis.url, "CFM_NODE_ID": "p2"}) as p2:
        await p1.wait_line(r"data in redis://127\.0\.0\.1:\d+/0 \(node p1\)")
        await p2.wait_line(r"\(node p2\)")
        async with signed_in(p1.url, "ann") as ann, signed_in(p2.url, "ben") as ben:
            await ann.send({"t": "say", "to": "ben", "text": "across", "id": "x"})
            ack = await ann.recv_until("ack", id="x")
            msg = await ben.recv_until("msg", room="dm:ann:ben")
            assert (msg["seq"], msg["ts"], msg["text"]) == (ack["seq"], ack["ts"], "across")
        assert await p1.stop() == 0 and await p2.stop() == 0


async def test_a_killed_nodes_users_go_offline_for_watchers_on_the_others(
        nodes, redis, tmp_path) -> None:
    import signal

    from tests.server.serve_proc import serve

    watcher = await nodes(presence_expiry=1.5)
    async with serve("--redis", redis.url, "--node-id", "doomed", "--set",
                     "presence_expiry=1.5", "--data-dir", str(tmp_path / "doomed")) as doomed, \
            signed_in(doomed.url, "alice"), signed_in(watcher.url, "bob") as bob:
        # (The watcher's node learns that alice is online a moment after she is.)
        await eventually(lambda: "alice" in watcher.hub.users
                         and watcher.hub.users["alice"].online)
        await bob.send({"t": "contact", "op": "add", "name": "alice", "id": "c"})
        assert (await bob.recv_until("contact", ref="c"))["status"] == "online"
        doomed.proc.send_signal(signal.SIGKILL)  # no goodbye: its heartbeats stop
        await doomed.proc.wait()
        gone = await bob.recv_until("presence", name="alice", timeout=10)
        assert gone["status"] == "offline"
        await bob.expect_silence("presence", timeout=0.5)  # once


async def test_member_frames_and_room_typing_cross_nodes(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob, \
            signed_in(b.url, "eve", status="invisible") as eve:
        await alice.send({"t": "join", "room": "#games", "id": "j"})
        await alice.recv_until("joined", ref="j")
        await eve.send({"t": "join", "room": "#games", "id": "j"})  # invisible: unseen
        await eve.recv_until("joined", ref="j")
        await bob.send({"t": "join", "room": "#games", "id": "j"})
        joined = await bob.recv_until("joined", ref="j")
        assert [m["name"] for m in joined["members"]] == ["alice", "bob", "eve"]
        member = await alice.recv_until("member", room="#games")
        assert (member["name"], member["op"]) == ("bob", "join")
        assert (await alice.recv_until("presence", name="bob"))["status"] == "online"
        await bob.send({"t": "typing", "room": "#games"})
        typing = await alice.recv_until("typing", room="#games")
        assert typing["from"] == "bob"
        await bob.send({"t": "leave", "room": "#games", "id": "l"})
        await bob.recv_until("left", ref="l")
        member = await alice.recv_until("member", room="#games")
        assert (member["name"], member["op"]) == ("bob", "leave")
        assert not [f for f in alice.seen if f.get("name") == "eve"]


async def test_a_node_follows_only_rooms_with_members_signed_in_there(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice:
        async with signed_in(b.url, "bob") as bob:
            token = bob.token
            for client in (alice, bob):
                await client.send({"t": "join", "room": "#games", "id": "j"})
                await client.recv_until("joined", ref="j")
            assert "#games" in b.node.broker.subscribed
        # bob, its only member there, left node B: B no longer follows the room.
        await eventually(lambda: "#games" not in b.node.broker.subscribed)
        await alice.send({"t": "say", "room": "#games", "text": "while away", "id": "m1"})
        await alice.recv_until("ack", id="m1")
        async with signed_in(b.url, "bob", token=token) as bob:
            state = next(r for r in bob.welcome["rooms"] if r["room"] == "#games")
            assert state["seq"] == 1  # where B's new subscription starts
            await alice.send({"t": "say", "room": "#games", "text": "back", "id": "m2"})
            assert (await bob.recv_until("msg", room="#games"))["text"] == "back"
            await bob.send({"t": "leave", "room": "#games", "id": "l"})
            await bob.recv_until("left", ref="l")
            await eventually(lambda: "#games" not in b.node.broker.subscribed)


async def test_search_on_a_node_answers(nodes) -> None:
    """A node keeps its own search index (tests/cluster/test_search.py has the rest)."""
    a = await nodes()
    async with signed_in(a.url, "alice") as alice:
        await alice.send({"t": "search", "text": "lunch", "id": "s1"})
        answer = await alice.recv_until("search", ref="s1")
        assert answer["msgs"] == [] and answer["more"] is False
