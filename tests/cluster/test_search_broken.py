"""A cluster node whose search index cannot be read answers a search as a single node
does, ``error{code:"internal", ref}`` (docs/protocol.md, "Search"), and logs it — never
an empty answer, which tells the user there is nothing to find. Real ``cfm serve
--redis`` processes over a real redis-server; the index file damaged for real, and
the place it would be moved aside to taken, so that it cannot be made again."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cluster.redis_proc import RedisProcess
from tests.server.index_faults import damage_deep_inside, say
from tests.server.indexer_kill import search_until
from tests.server.serve_proc import serve
from tests.server.test_search import _join
from tests.wire import signed_in


async def test_a_search_of_an_index_that_cannot_be_made_again_is_an_error_not_no_results(
        redis: RedisProcess, tmp_path: Path) -> None:
    data = tmp_path / "k1"
    index = data / "search-k1.sqlite3"

    def node():  # type: ignore[no-untyped-def]
        return serve("--redis", redis.url, "--node-id", "k1", "--no-rate-limits",
                     "--data-dir", str(data))

    async with node() as server, signed_in(server.url, "alice") as alice:
        token = alice.token
        await _join(alice, "#w")
        seq = await say(alice, "needle", "#w")
        await search_until(alice, "needle", [("#w", seq)])
    damage_deep_inside(index)
    # Where the damaged file would go: a directory that is not empty (no rename onto it).
    aside = index.with_name(index.name + ".corrupt")
    aside.mkdir()
    (aside / "kept").write_text("an operator's copy")
    async with node() as server, signed_in(server.url, "alice", token=token) as alice:
        await server.wait_line(rf"the search indexer \(pid \d+\) found its index file "
                               rf"{re.escape(str(index))} damaged, and it could not be "
                               r"made again", timeout=30)
        await alice.send({"t": "search", "text": "needle", "id": "q1"})
        answer = await alice.recv()
        while answer.get("ref") != "q1":  # (presence and the like before it)
            answer = await alice.recv()
        assert (answer["t"], answer.get("code")) == ("error", "internal"), answer
        await server.wait_line(r"ERROR .*an answer failed")
        await server.wait_line(rf"StoreError: {re.escape(str(index))}: the search index "
                               r"is not open")
        # The connection goes on.
        assert await say(alice, "still here", "#w") == seq + 1
