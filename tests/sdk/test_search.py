"""Client.search against a real server: words across rooms and DMs, newest first, paged
with the answer's ``next``; a refusal raises ClientError with the server's code."""

from __future__ import annotations

from typing import Any

import pytest

from cfm_common.client import ClientError


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

    first = await alice.search("pizza", limit=2)
    assert [(m.room, m.text) for m in first.msgs] == [
        ("#food", "PIZZA with extra cheese"), ("dm:alice:bob", "pizza yes")]
    assert first.more and first.next is not None
    rest = await alice.search("pizza", before=first.next, limit=2)
    assert [m.text for m in rest.msgs] == ["pizza tonight?"] and not rest.more
    only_dm = await alice.search("pizza", room="dm:alice:bob")
    assert [m.sender for m in only_dm.msgs] == ["bob"]

    with pytest.raises(ClientError) as refused:
        await alice.search("pizza", room="#elsewhere")
    assert refused.value.code == "no_such_room"
    with pytest.raises(ClientError) as no_words:
        await alice.search("***")
    assert no_words.value.code == "bad_frame"
