"""Message changes on a cluster (issue 16 over issue 12): two real nodes over one real
redis-server, the author on node A, the reader on node B.

The same cases as tests/server/test_changes.py where they make sense: an edit, a delete,
reactions and replies are entries of the room's sequence, applied to their target by the
append script in the same call that stores them, so a page, a replay and live delivery
end in the same state on every node; the target is read from Redis, not from a node's
memory.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from tests.server.test_changes import ROOM, _change, _history, _join, _say, state_of
from tests.wire import WireClient, signed_in


async def redis_values(url: str) -> bytes:
    """Everything Redis answers for cfm's keys, concatenated: what any reader can get."""
    client = Redis.from_url(url)
    out: list[bytes] = []
    try:
        async for key in client.scan_iter("cfm:*"):
            kind = (await client.type(key)).decode()
            if kind == "stream":
                for _, fields in await client.xrange(key):
                    out += [*fields.keys(), *fields.values()]
            elif kind == "hash":
                for field, value in (await client.hgetall(key)).items():
                    out += [field, value]
            elif kind == "string":
                out.append(await client.get(key))
    finally:
        await client.aclose()
    return b"\n".join(out)


async def redis_dumps(url: str) -> bytes:
    """Every cfm key as Redis serializes it (DUMP: what RDB files and a rewritten AOF
    hold), uncompressed so that a text in it can be found."""
    client = Redis.from_url(url)
    try:
        await client.config_set("rdbcompression", "no")
        return b"\n".join([await client.dump(key) async for key in client.scan_iter("cfm:*")])
    finally:
        await client.aclose()


async def test_an_edit_on_one_node_reaches_the_other_and_every_page(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        await _join(alice)
        await _join(bob)
        seq = await _say(alice, "helo", "a1")
        await bob.recv_until("msg", seq=seq)
        ack = await _change(alice, "edit", "a2", seq, text="hello")
        assert ack["t"] == "ack" and ack["seq"] == seq + 1
        live = await bob.recv_until("msg", seq=seq + 1)
        assert live == {"t": "msg", "room": ROOM, "seq": seq + 1, "from": "alice",
                        "text": "hello", "ts": ack["ts"], "kind": "text", "id": "a2",
                        "change": "edit", "target": seq}
        for client in (alice, bob):
            page = await _history(client)
            assert page[0]["text"] == "hello" and page[0]["edited"] == ack["ts"]
            assert page[1]["change"] == "edit"
        # Another's edit is refused by the domain, read from Redis on node B; nothing
        # is stored.
        error = await _change(bob, "edit", "b1", seq, text="yours now")
        assert error["t"] == "error" and error["code"] == "forbidden", error
        assert (await _change(bob, "edit", "b2", seq + 1, text="x"))["code"] == "bad_frame"
        assert (await _change(bob, "edit", "b3", seq + 5, text="x"))["code"] == "bad_frame"
        assert await _say(alice, "next", "a3") == seq + 2


async def test_a_delete_erases_the_text_from_what_redis_answers(nodes, redis) -> None:
    a, b = await nodes(), await nodes()
    secret, fixed = "my PIN is 4711-secret", "my PIN is 4711-corrected"
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        await _join(alice)
        await _join(bob)
        seq = await _say(alice, secret, "a1")
        assert (await _change(alice, "edit", "a2", seq, text=fixed))["t"] == "ack"
        assert (await _change(bob, "react", "b1", seq, emoji="\U0001f62e"))["t"] == "ack"
        after = await _say(bob, "@alice ok", "b2", reply=seq)
        assert b"4711-corrected" in await redis_values(redis.url)
        assert b"4711-secret" in await redis_dumps(redis.url)  # the check can fail

        ack = await _change(alice, "delete", "a3", seq)
        assert ack["t"] == "ack" and ack["seq"] == after + 1
        delete = await bob.recv_until("msg", seq=ack["seq"])
        assert (delete["change"], delete["target"], delete["text"]) == ("delete", seq, "")
        for client in (alice, bob):
            page = await _history(client)
            assert page[0] == {"room": ROOM, "seq": seq, "from": "alice", "text": "",
                               "ts": page[0]["ts"], "kind": "text", "id": "a1",
                               "deleted": True}
            assert page[1]["change"] == "edit" and page[1]["text"] == ""  # erased too
            assert [m["seq"] for m in page] == list(range(seq, ack["seq"] + 1))  # gapless
            assert page[3]["reply"] == seq and page[3]["mentions"] == ["alice"]
        assert b"4711" not in await redis_values(redis.url)
        # Nor left in the stream's nodes (XDEL only marks an entry deleted): the stream
        # was rewritten after the delete, before alice's history read on the same node.
        assert b"4711" not in await redis_dumps(redis.url)
        # A tombstone stays one, whichever node is asked.
        assert (await _change(alice, "edit", "a4", seq, text="again"))["code"] == "forbidden"
        assert (await _change(bob, "react", "b3", seq, emoji="x"))["code"] == "forbidden"
        # Single messages read back as pages do (history{before}, one message).
        await bob.send({"t": "history", "room": ROOM, "before": seq + 1, "limit": 1,
                        "id": "one"})
        (one,) = (await bob.recv_until("history", ref="one"))["msgs"]
        assert one["deleted"] is True and one["text"] == ""


async def test_reactions_cross_nodes_and_a_retry_on_either_is_stored_once(nodes) -> None:
    thumbs, pizza = "\U0001f44d", "\U0001f355"
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        await _join(alice)
        await _join(bob)
        seq = await _say(alice, "lunch?", "a1")
        # A message acked on A is one B may not have received yet: bob reacts to what he
        # was shown (seq past what B holds is bad_frame, as past the room's latest).
        await bob.recv_until("msg", seq=seq)
        first = await _change(bob, "react", "r1", seq, emoji=thumbs)
        assert first["t"] == "ack", first
        assert await _change(bob, "react", "r1", seq, emoji=thumbs) == first
        async with signed_in(a.url, "bob", token=bob.token) as bob_a:  # a retry on A
            assert await _change(bob_a, "react", "r1", seq, emoji=thumbs) == first
            error = await _change(bob_a, "react", "r2", seq, emoji=thumbs)
            assert error["code"] == "forbidden"  # the reaction read from Redis on A
        assert (await _change(alice, "react", "a2", seq, emoji=thumbs))["t"] == "ack"
        assert (await _change(alice, "react", "a3", seq, emoji=pizza))["t"] == "ack"
        for client in (alice, bob):
            page = await _history(client)
            assert page[0]["reactions"] == [{"emoji": thumbs, "names": ["bob", "alice"]},
                                            {"emoji": pizza, "names": ["alice"]}]
            assert [m["seq"] for m in page] == [seq, seq + 1, seq + 2, seq + 3]
        assert (await _change(bob, "unreact", "r3", seq, emoji=thumbs))["t"] == "ack"
        assert (await _change(bob, "unreact", "r4", seq, emoji=thumbs))["code"] == "forbidden"
        page = await _history(bob)
        assert page[0]["reactions"] == [{"emoji": thumbs, "names": ["alice"]},
                                        {"emoji": pizza, "names": ["alice"]}]


async def test_an_offline_reader_resumes_on_the_other_node_to_the_same_state(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with (signed_in(a.url, "alice") as alice, signed_in(a.url, "bob") as bob,
                signed_in(b.url, "dave") as dave):
        for client in (alice, bob, dave):
            await _join(client)
        async with signed_in(b.url, "carol") as carol:
            await _join(carol)
            carol_token = carol.token
            s1 = await _say(alice, "first draft", "a1")
            s2 = await _say(bob, "regrettable", "b1")
            s3 = await _say(bob, "nice one", "b2", reply=s1)
            await carol.recv_until("msg", seq=s3)
            carol_seen = [f for f in carol.seen if f["t"] == "msg"]
        assert (await _change(alice, "edit", "a2", s1, text="final draft"))["t"] == "ack"
        assert (await _change(bob, "delete", "b3", s2))["t"] == "ack"
        assert (await _change(alice, "react", "a3", s3, emoji="\U0001f44d"))["t"] == "ack"
        assert (await _change(bob, "react", "b4", s1, emoji="\U0001f44d"))["t"] == "ack"
        assert (await _change(bob, "unreact", "b5", s1, emoji="\U0001f44d"))["t"] == "ack"
        assert (await _change(alice, "edit", "a4", s1, text="final draft v2"))["t"] == "ack"
        last = await _say(alice, "done", "a5")
        online = [f for f in (await dave.recv_n("msg", last)) if f["t"] == "msg"]
        online_state = state_of(online)

        for url in (a.url, b.url):
            async with WireClient.connect(url) as again:
                await again.hello("carol", token=carol_token)
                await again.send({"t": "join", "room": ROOM, "since": s3})
                await again.recv_until("joined")
                replay = await again.recv_n("msg", last - s3)
                resumed_state = state_of(carol_seen + replay)
                await again.send({"t": "history", "room": ROOM, "after": s3, "id": "gap"})
                gap = (await again.recv_until("history", ref="gap"))["msgs"]
                assert resumed_state == online_state == state_of(carol_seen + gap)
        assert state_of(await _history(dave)) == online_state

    assert online_state[s1]["text"] == "final draft v2" and online_state[s1]["edited"]
    assert online_state[s1]["reactions"] == {}
    assert online_state[s2]["deleted"] and online_state[s2]["text"] == ""
    assert online_state[s3] == {"from": "bob", "text": "nice one", "edited": None,
                                "deleted": False, "reply": s1,
                                "reactions": {"\U0001f44d": ["alice"]}}


async def test_replies_and_mentions_are_carried_by_every_copy(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        await _join(alice)
        await _join(bob)
        seq = await _say(alice, "who's in?", "a1")
        await bob.recv_until("msg", seq=seq)
        answer = await _say(bob, "me, @alice", "b1", reply=seq)
        live = await alice.recv_until("msg", id="b1")
        assert (live["reply"], live["mentions"]) == (seq, ["alice"])
        page = await _history(alice)
        assert (page[1]["seq"], page[1]["reply"], page[1]["mentions"]) == \
            (answer, seq, ["alice"])
        await bob.send({"t": "say", "room": ROOM, "text": "?", "id": "b2", "reply": 99})
        assert (await bob.recv_until("error", ref="b2"))["code"] == "bad_frame"
        edit = await _change(alice, "edit", "a2", seq, text="who is in?")
        await bob.send({"t": "say", "room": ROOM, "text": "?", "id": "b3",
                        "reply": edit["seq"]})
        assert (await bob.recv_until("error", ref="b3"))["code"] == "bad_frame"


async def test_across_a_block_a_change_is_stored_hidden_and_not_applied(nodes) -> None:
    room = "dm:alice:bob"
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        await bob.send({"t": "say", "to": "alice", "text": "hi alice", "id": "b1"})
        seq = (await bob.recv_until("ack"))["seq"]
        await alice.send({"t": "say", "to": "bob", "text": "hi bob", "id": "a1"})
        mine = (await alice.recv_until("ack"))["seq"]
        await alice.send({"t": "contact", "op": "block", "name": "bob"})
        await alice.recv_until("contact", op="block")
        edit = await _change(bob, "edit", "b2", seq, room=room, text="you will regret")
        react = await _change(bob, "react", "b3", mine, room=room, emoji="\U0001f595")
        assert edit["t"] == react["t"] == "ack"
        for entry in (edit, react):
            live = await alice.recv_until("msg", seq=entry["seq"])
            assert live["hidden"] is True and live["text"] == "" and "change" not in live
        page = await _history(alice, room)
        assert page[0]["text"] == "hi alice" and "edited" not in page[0]
        assert "reactions" not in page[1]
        bobs = state_of(await _history(bob, room))
        assert bobs[seq]["text"] == "you will regret"
        assert (await _change(bob, "delete", "b4", seq, room=room))["t"] == "ack"
        page = await _history(alice, room)
        assert page[0]["deleted"] is True and page[0]["text"] == ""


async def test_moderators_are_shared_and_delete_on_the_other_node(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with (signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob,
                signed_in(b.url, "carol") as carol):
        await _join(alice, "#mods")  # alice creates the room on A: its moderator
        await _join(bob, "#mods")
        await _join(carol, "#mods")
        spam = await _say(bob, "buy now", "b1", room="#mods")
        await carol.recv_until("msg", seq=spam)
        assert (await _change(carol, "delete", "c1", spam, room="#mods"))["code"] == "forbidden"
        await carol.send({"t": "moderators", "room": "#mods", "id": "q0"})
        answer = await carol.recv_until("moderators", ref="q0")  # node B knows the creator
        assert (answer["names"], answer["creator"]) == (["alice"], "alice")
        await alice.send({"t": "moderators", "room": "#mods", "add": "carol", "id": "m2"})
        assert (await alice.recv_until("moderators", ref="m2"))["names"] == ["alice", "carol"]
        told = await carol.recv_until("moderators")  # across nodes, by her user channel
        assert told["names"] == ["alice", "carol"]
        ack = await _change(carol, "delete", "c2", spam, room="#mods")
        assert ack["t"] == "ack", ack
        await alice.send({"t": "moderators", "room": "#mods", "remove": "carol", "id": "m3"})
        await alice.recv_until("moderators", ref="m3")
        await carol.recv_until("moderators")
        mine = await _say(alice, "rules: be nice", "a2", room="#mods")
        await carol.recv_until("msg", seq=mine)
        assert (await _change(carol, "delete", "c3", mine, room="#mods"))["code"] == "forbidden"
    # A node started later loads them from the shared records.
    c = await nodes()
    async with signed_in(c.url, "dave") as dave:
        await _join(dave, "#mods")
        await dave.send({"t": "moderators", "room": "#mods", "id": "q"})
        answer = await dave.recv_until("moderators", ref="q")
        assert (answer["names"], answer["creator"]) == (["alice"], "alice")


async def test_mentions_are_counted_in_welcome_on_either_node(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(b.url, "bob") as bob:
        await _join(bob)
        bob_token = bob.token
    async with signed_in(a.url, "alice") as alice:
        await _join(alice)
        await _say(alice, "@bob look at this", "a1")
        await _say(alice, "hi all", "a2")
        await _say(alice, "ping @Bob.", "a3")
        await _say(alice, "mail me@bob or @nobody or @alice", "a4")
        mentioned = await _say(alice, "@bob again", "a5")
        assert (await _change(alice, "delete", "a6", mentioned))["t"] == "ack"
    for url in (a.url, b.url):
        async with WireClient.connect(url) as again:
            welcome = await again.hello("bob", token=bob_token)
            (entry,) = [r for r in welcome["rooms"] if r["room"] == ROOM]
            assert (entry["unread"], entry["mentions"]) == (4, 2), entry
    async with WireClient.connect(b.url) as again:
        welcome = await again.hello("bob", token=bob_token)
        (entry,) = [r for r in welcome["rooms"] if r["room"] == ROOM]
        await again.send({"t": "read", "room": ROOM, "seq": entry["seq"]})
        await again.send({"t": "history", "room": ROOM, "after": 0, "id": "sync"})
        await again.recv_until("history", ref="sync")
    async with WireClient.connect(a.url) as again:
        welcome = await again.hello("bob", token=bob_token)
        (entry,) = [r for r in welcome["rooms"] if r["room"] == ROOM]
        assert "unread" not in entry and "mentions" not in entry, entry


async def test_migrate_copies_changed_messages_and_moderators(server_factory, redis,
                                                              tmp_path) -> None:
    from tests.cluster.test_migrate import cfm_admin

    data = tmp_path / "single"
    single = await server_factory(data_dir=data)
    thumbs = "\U0001f44d"
    async with (signed_in(single.url, "alice") as alice, signed_in(single.url, "bob") as bob,
                signed_in(single.url, "carol") as carol):
        for client in (alice, bob, carol):
            await _join(client)
        await alice.send({"t": "moderators", "room": ROOM, "add": "carol", "id": "m"})
        await alice.recv_until("moderators", ref="m")
        s1 = await _say(bob, "secret draft", "b1")
        s2 = await _say(alice, "@bob gone soon", "a1", reply=s1)
        assert (await _change(bob, "edit", "b2", s1, text="secret final"))["t"] == "ack"
        assert (await _change(alice, "react", "a2", s1, emoji=thumbs))["t"] == "ack"
        assert (await _change(carol, "react", "c1", s1, emoji=thumbs))["t"] == "ack"
        assert (await _change(carol, "delete", "c2", s2))["t"] == "ack"
        before = await _history(alice)
        tokens = {"alice": alice.token, "bob": bob.token, "carol": carol.token}
    await single.stop()

    result = await cfm_admin("migrate", "--to", redis.url, "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    assert "1 moderator" not in result.output and "2 moderators" in result.output
    a = await server_factory(redis_url=redis.url, node_id="n1")
    async with (signed_in(a.url, "alice", token=tokens["alice"]) as alice,
                signed_in(a.url, "carol", token=tokens["carol"]) as carol):
        assert await _history(alice) == before  # the same messages, in the same state
        assert before[0]["text"] == "secret final" and before[1]["deleted"] is True
        # Changes go on from the copied state: a reaction is no second one, a moderator
        # still moderates, and a delete erases the copied edit entry's text too.
        assert (await _change(alice, "react", "a3", s1, emoji=thumbs))["code"] == "forbidden"
        assert (await _change(alice, "unreact", "a4", s1, emoji=thumbs))["t"] == "ack"
        assert (await _change(carol, "delete", "c3", s1))["t"] == "ack"
        page = await _history(carol)
        assert page[0]["deleted"] is True and "reactions" not in page[0]
        edit = next(m for m in page if m.get("change") == "edit")
        assert edit["text"] == ""
    assert b"secret" not in await redis_values(redis.url)
    assert b"secret" not in await redis_dumps(redis.url)


async def test_deletes_close_together_are_erased_by_one_later_rewrite(
    broker_factory, redis, monkeypatch
) -> None:
    from cfm_common.codec import encode_msg
    from cfm_server.cluster import broker as broker_module

    monkeypatch.setattr(broker_module, "COMPACT_INTERVAL", 0.5)
    broker = await broker_factory()
    room, ts = "#gone", 1_767_225_600_000
    texts = [f"secret-{i}-xyzzy" for i in range(3)]
    stored = [await broker.append(room, "alice", f"a{i}", "text", t, ts + i)
              for i, t in enumerate(texts)]
    rewrites = 0
    real = broker._run_compact

    def counted(*args: Any) -> None:
        nonlocal rewrites
        rewrites += 1
        real(*args)

    broker._run_compact = counted
    for i, done in enumerate(stored):
        (target,) = await broker.history(room, after=done.seq - 1, limit=1)
        tombstone = encode_msg(target.__class__(room, done.seq, "alice", "", target.ts,
                                                "text", target.id, deleted=True))
        await broker.submit(room, "alice", f"d{i}", "text", "", ts + 10 + i,
                            extra={"change": "delete", "target": done.seq},
                            tombstone=tombstone)
    assert rewrites == 1  # the first delete's, at once; the others wait for the interval
    await broker.history(room, after=0, limit=10)  # behind the first rewrite
    dump = await redis_dumps(redis.url)
    assert texts[0].encode() not in dump and texts[2].encode() in dump
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while rewrites < 2:
        assert loop.time() < deadline, "the later rewrite never ran"
        await asyncio.sleep(0.05)
    await broker.history(room, after=0, limit=10)
    dump = await redis_dumps(redis.url)
    assert not any(t.encode() in dump for t in texts)
    page = await broker.history(room, after=0, limit=10)
    assert [(m.seq, m.deleted) for m in page[:3]] == [(1, True), (2, True), (3, True)]
    assert rewrites == 2


def test_msg_parts_with_the_extension_keys_equal_encode_msg() -> None:
    from cfm_common.codec import encode_msg
    from cfm_common.frames import StoredMsg
    from cfm_server.cluster import scripts

    ts = 1_767_225_600_000
    cases: list[dict[str, Any]] = [
        {"reply": 3, "mentions": ("bob", "carol")},
        {"change": "edit", "target": 70000},
        {"change": "react", "target": 1, "emoji": "\U0001f44d"},
        {"mentions": ("bob",)},
    ]
    for extra in cases:
        for client_id in (None, "c-1"):
            head, tail = scripts.msg_parts("#r", "alice", "hi", ts, "text", client_id, extra)
            for seq in (1, 200, 70000, 2**40):
                want = encode_msg(StoredMsg("#r", seq, "alice", "hi", ts, "text", client_id,
                                            **extra))
                assert scripts.msg_bytes(head, seq, tail) == want, (extra, seq)


async def test_a_sign_in_counts_unread_messages_without_reading_them_out(
        nodes, redis) -> None:
    """The welcome's counts are made in Redis: signing in to a room of long unread
    messages moves two numbers per room, not the messages (a user in many busy rooms
    would otherwise pull megabytes out of Redis at every sign-in)."""
    a = await nodes(rate_limits=False)
    async with signed_in(a.url, "bob") as bob:
        await _join(bob)
        bob_token = bob.token
    long = "x" * 3000
    async with signed_in(a.url, "alice") as alice:
        await _join(alice)
        for n in range(100):  # 300 KB of unread text
            await alice.send({"t": "say", "room": ROOM, "text": long, "id": f"l{n}"})
        await alice.recv_n("ack", 100)
    client = Redis.from_url(redis.url)
    try:
        before = (await client.info("stats"))["total_net_output_bytes"]
        async with WireClient.connect(a.url) as again:
            welcome = await again.hello("bob", token=bob_token)
        after = (await client.info("stats"))["total_net_output_bytes"]
    finally:
        await client.aclose()
    (entry,) = [r for r in welcome["rooms"] if r["room"] == ROOM]
    assert entry["unread"] == 100
    assert after - before < 100_000, after - before  # the messages stayed in Redis
