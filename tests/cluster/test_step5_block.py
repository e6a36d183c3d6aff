"""Private blocking across nodes: the blocked user, on another node than the blocker,
sees the blocker go offline at the block and come back at the unblock."""

from __future__ import annotations

from typing import Any

from tests.wire import signed_in


async def test_a_block_and_an_unblock_show_on_the_blocked_users_other_node(nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as bob:
        await bob.send({"t": "contact", "op": "add", "name": "alice", "id": "c1"})
        await bob.recv_until("contact", ref="c1")
        await alice.recv_until("contact", op="added_you")
        # Node a knows that bob lists alice (the change reached it) before she blocks.
        await alice.send({"t": "contact", "op": "add", "name": "bob", "id": "c2"})
        await alice.recv_until("contact", ref="c2")
        await alice.send({"t": "contact", "op": "block", "name": "bob", "id": "c3"})
        await alice.recv_until("contact", ref="c3")
        gone = await bob.recv_until("presence", name="alice")
        assert gone["status"] == "offline", gone
        await alice.send({"t": "contact", "op": "unblock", "name": "bob", "id": "c4"})
        await alice.recv_until("contact", ref="c4")
        back = await bob.recv_until("presence", name="alice")
        assert back["status"] == "online", back


async def test_a_block_seen_through_a_room_only_skips_the_quiet_sessions_elsewhere(
        nodes) -> None:
    a, b = await nodes(), await nodes()
    async with signed_in(a.url, "alice") as alice, signed_in(b.url, "bob") as loud, \
            _second(b.url, loud) as quiet:
        for client in (alice, loud, quiet):
            await client.send({"t": "join", "room": "#games", "id": "j"})
            await client.recv_until("joined", ref="j")
        await alice.send({"t": "contact", "op": "block", "name": "bob", "id": "c1"})
        await alice.recv_until("contact", ref="c1")
        gone = await loud.recv_until("presence", name="alice")
        assert gone["status"] == "offline", gone
        await quiet.expect_silence("presence", timeout=0.5)


def _second(url: str, first: Any) -> Any:
    """A second, quiet session of the first's user."""
    return signed_in(url, first.welcome["name"], token=first.token, quiet=True)
