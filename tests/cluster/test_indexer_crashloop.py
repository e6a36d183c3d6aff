"""A cluster node's search indexer that fails at every start, for a cause SQLite does not
call a damaged file (nothing the node can mend by itself), under a real ``cfm serve
--redis`` over a real redis-server: each death is one ERROR line with the indexer's
exit status and the last lines it wrote, its next start comes after a doubling
back-off, and ``/metrics`` counts the deaths (cfm_server/childwatch.py). It used to be
a WARNING with the exit status alone, a start every 30 s forever, the cause only on the
node's stderr (not in its ``--log-file``)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from tests.cluster.opsprobe import http_of, scrape, until_scraped
from tests.cluster.redis_proc import RedisProcess
from tests.server.indexer_kill import kill_indexer, search_until
from tests.server.serve_proc import serve
from tests.server.test_search import _join, _say
from tests.wire import signed_in

DIED = re.compile(r"ERROR cfm_server\.cluster\.search: the search indexer \(pid (\d+)\) died "
                  r"\((.+?)\) after \d+ s.*; starting a new one in (\d+) s")


async def test_an_indexer_failing_at_every_start_is_an_error_with_its_output_and_backs_off(
        redis: RedisProcess, tmp_path: Path) -> None:
    data = tmp_path / "k1"
    index = data / "search-k1.sqlite3"
    async with serve("--redis", redis.url, "--node-id", "k1", "--no-rate-limits",
                     "--data-dir", str(data)) as node, \
            signed_in(node.url, "alice") as alice:
        await _join(alice, "#w")
        seq = await _say(alice, "needle", room="#w")
        await search_until(alice, "needle", [("#w", seq)])
        base = http_of(node.url)
        healthy = await scrape(base)
        assert (healthy["cfm_cluster_search_indexer_up"],
                healthy["cfm_cluster_search_indexer_deaths_total"]) == (1, 0)
        # The file loses a table an indexer reads first thing: not "corrupt" to SQLite
        # (the node's start would make such a file again, not a running node).
        conn = sqlite3.connect(index)
        try:
            conn.execute("DROP TABLE rooms")
        finally:
            conn.close()
        first = await kill_indexer(node, index.name)
        # The kill, then two starts that fail: 1 s, 2 s, then 4 s to the next start.
        await node.wait_line(r"ERROR .*the search indexer .* died .*; starting a new one "
                             r"in 4 s", timeout=30)
        deaths = [(at, *match.groups()) for at, line in enumerate(node.lines)
                  if (match := DIED.search(line))][:3]
        assert [(pid, how, delay) for _, pid, how, delay in deaths] == [
            (str(first), "killed by SIGKILL", "1"),
            (deaths[1][1], "exited with status 1", "2"),
            (deaths[2][1], "exited with status 1", "4")]
        # The cause, on the death's line (the lines below it in the text log).
        at = deaths[1][0]
        assert "(2 deaths in a row, each within 60 s of its start)" in node.lines[at]
        assert node.lines[at].endswith("the last lines it wrote:")
        assert re.fullmatch(rf"    ERROR cfm_server\.cluster\.indexer: search index "
                            rf"{re.escape(str(index))} stopped: no such table: rooms; .*",
                            node.lines[at + 1]), node.lines[at:at + 3]
        # And as the indexer wrote it, a line of the node's log under the indexer's logger.
        assert any(re.search(r"\d ERROR cfm_server\.cluster\.indexer: search index .* "
                             "stopped: no such table: rooms", line) for line in node.lines)
        samples = await until_scraped(
            base, lambda s: s["cfm_cluster_search_indexer_deaths_total"] >= 3,
            "three deaths counted")
        assert samples["cfm_cluster_search_indexer_up"] in (0, 1)
        assert await _say(alice, "the node serves on", room="#w") == seq + 1
