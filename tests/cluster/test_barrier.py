"""Read barriers across nodes (cfm_server/cluster/barrier.py): a frame that arrives on
one node right after a change was acked on the other is answered on that change.

Each test repeats a change-then-frame pair many times, the change acked by one node and
the next frame sent at once to the other, so that without the barrier the frame would
find the change missing in most runs (the change's copy is still on its way through
pub/sub)."""

from __future__ import annotations

import asyncio

from tests.wire import WireClient, signed_in

PAIRS = 30  # change-then-frame pairs per test (rate limits lifted where they would bite)


def _text_reached(client: WireClient, text: str) -> bool:
    return any(f.get("t") == "msg" and f.get("text") == text for f in client.seen)


async def test_a_say_right_after_a_block_on_the_other_node_is_hidden(nodes) -> None:
    """Block on node a, say on node b at once: the blocker gets a placeholder every
    time; unblock on a, say on b at once: the text, every time."""
    a, b = await nodes(rate_limits=False), await nodes(rate_limits=False)
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        for n in range(PAIRS):
            await alice.send({"t": "contact", "op": "block", "name": "bob", "id": f"k{n}"})
            await alice.recv_until("contact", ref=f"k{n}")
            await bob.send({"t": "say", "to": "alice", "text": f"plea {n}", "id": f"p{n}"})
            await bob.recv_until("ack", id=f"p{n}")
            placeholder = await alice.recv_until("msg")
            assert placeholder.get("hidden") is True and placeholder["text"] == "", \
                (n, placeholder)

            await alice.send({"t": "contact", "op": "unblock", "name": "bob",
                              "id": f"u{n}"})
            await alice.recv_until("contact", ref=f"u{n}")
            await bob.send({"t": "say", "to": "alice", "text": f"hi {n}", "id": f"h{n}"})
            await bob.recv_until("ack", id=f"h{n}")
            clear = await alice.recv_until("msg")
            assert clear["text"] == f"hi {n}" and "hidden" not in clear, (n, clear)
        assert not any(_text_reached(alice, f"plea {n}") for n in range(PAIRS))


async def test_members_asked_on_one_node_right_after_a_join_on_the_other(nodes) -> None:
    a, b = await nodes(), await nodes()
    # carol keeps node a subscribed to #den: a join there is answered without waiting.
    async with signed_in(b.url, "bob") as bob, signed_in(a.url, "carol") as carol:
        for client in (bob, carol):
            await client.send({"t": "join", "room": "#den", "id": "j"})
            await client.recv_until("joined", ref="j")
        for n in range(PAIRS):
            name = f"user{n}"
            async with signed_in(a.url, name) as user:
                await user.send({"t": "join", "room": "#den", "id": "j"})
                await user.recv_until("joined", ref="j")
                await bob.send({"t": "members", "room": "#den", "id": f"m{n}"})
                page = await bob.recv_until("members", ref=f"m{n}")
                assert name in [m["name"] for m in page["members"]], (n, page)


async def test_a_change_of_a_message_just_stored_on_the_other_node_is_accepted(
        nodes) -> None:
    """alice says on node a; bob reacts to it (and replies to it) on node b the moment
    her ack is in: never refused as a seq the room does not have."""
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        for client in (alice, bob):
            await client.send({"t": "join", "room": "#den", "id": "j"})
            await client.recv_until("joined", ref="j")
        for n in range(PAIRS):
            await alice.send({"t": "say", "room": "#den", "text": f"m{n}", "id": f"a{n}"})
            seq = (await alice.recv_until("ack", id=f"a{n}"))["seq"]
            await bob.send({"t": "react", "room": "#den", "target": seq, "emoji": "+1",
                            "id": f"r{n}"})
            await bob.send({"t": "say", "room": "#den", "text": "re", "reply": seq,
                            "id": f"y{n}"})
            for ref in (f"r{n}", f"y{n}"):
                answer = await _answer(bob, ref)
                assert answer["t"] == "ack", (n, answer)


async def test_an_answer_to_someone_who_wrote_first_on_the_other_node_is_no_strangers(
        nodes) -> None:
    """Nobody lists the bot; each user writes to it on node a, and the bot answers each
    on node b at once: none of its answers counts against the stranger bucket (whose
    burst is well below the number of answers)."""
    a, b = await nodes(), await nodes()
    users = [f"user{n}" for n in range(24)]  # the stranger bucket's burst is 20
    async with signed_in(b.url, "echobot") as bot:
        for n, name in enumerate(users):
            async with signed_in(a.url, name) as user:
                await user.send({"t": "say", "to": "echobot", "text": "!ping", "id": "p"})
                await user.recv_until("ack", id="p")
                await bot.send({"t": "say", "to": name, "text": "pong", "id": f"r{n}"})
                answer = await _answer(bot, f"r{n}")
                assert answer["t"] == "ack", (n, answer)


async def test_frames_of_one_loop_turn_share_one_read_of_the_records_head(nodes) -> None:
    a = await nodes()
    node = a.node
    assert node is not None
    before = node.barriers.reads
    first, second = node.barriers.state(), node.barriers.state()
    assert first is second
    await asyncio.gather(first, second)
    assert node.barriers.reads == before + 1
    third = node.barriers.state()  # a later turn: a read of its own
    assert third is not first
    await third
    assert node.barriers.reads == before + 2


async def _answer(client: WireClient, ref: str) -> dict:
    """The ack or error answering the frame ``ref``."""
    for _ in range(100):
        frame = await client.recv()
        if frame["t"] == "ack" and frame.get("id") == ref:
            return frame
        if frame["t"] == "error" and frame.get("ref") == ref:
            return frame
    raise AssertionError(f"no answer to {ref} in 100 frames")
