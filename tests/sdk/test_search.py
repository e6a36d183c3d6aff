"""Client.search against a real server: words across rooms and DMs, newest first, paged
with the answer's ``next``; a refusal raises ClientError with the server's code.

The server side of search comes with the protocol's "Search" section (its own branch);
until the frames are registered this runs only the local refusal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cfm_common import frames as f
from cfm_common.client import Client, ClientError

SEARCH_KNOWN = "search" in f.CLIENT_FRAMES and "search" in f.SERVER_FRAMES
needs_search = pytest.mark.skipif(
    not SEARCH_KNOWN, reason="the protocol in this tree has no search frames yet (the "
    "server's search branch registers them with its docs/protocol.md section)")


async def settled_search(client: Client, text: str, **options: Any) -> f.SearchResults:
    """The answer once the server's index holds every stored message (it is built
    behind the writes: ``behind`` counts what it lacks)."""
    while True:
        answer = await client.search(text, **options)
        if not answer.behind:
            return answer
        await asyncio.sleep(0.05)


@needs_search
async def test_search_finds_pages_and_refuses(server: Any, clients: Any) -> None:
    alice = clients(server.url, "alice")
    bob = clients(server.url, "bob")
    await alice.connect()
    await bob.connect()
    await alice.join("#food")
    await bob.join("#food")
    await alice.say("pizza tonight?", room="#food")
    await bob.say("pizza yes", to="alice")
    await alice.say("PIZZA with extra cheese", room="#food")

    first = await asyncio.wait_for(settled_search(alice, "pizza", limit=2), 10)
    assert sorted((m.room, m.text) for m in first.msgs) == [
        ("#food", "PIZZA with extra cheese"), ("dm:alice:bob", "pizza yes")]
    assert first.more and first.next is not None
    rest = await alice.search("pizza", before=first.next, limit=2)
    assert [m.text for m in rest.msgs] == ["pizza tonight?"] and not rest.more
    only_dm = await alice.search("pizza", room="dm:alice:bob")
    assert [m.sender for m in only_dm.msgs] == ["bob"]

    with pytest.raises(ClientError) as refused:
        await alice.search("pizza", room="#elsewhere")
    assert refused.value.code in ("no_such_room", "not_member")


async def test_search_is_refused_locally_when_it_breaks_the_frame_rules(
    server: Any, clients: Any
) -> None:
    alice = clients(server.url, "alice")
    await alice.connect()
    with pytest.raises(ClientError) as too_long:
        await alice.search("x" * (f.MAX_SEARCH_TEXT + 1))
    assert too_long.value.code == "bad_frame" and alice.pending == 0
