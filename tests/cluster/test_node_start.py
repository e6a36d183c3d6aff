"""A node's id at start (docs/cluster.md, "Starting a node"): one live process per node
id, a killed node's id free again once its registration expired, a cleanly stopped
node's at once, and nodes without ``--node-id`` on port 0 each their own.

Real ``cfm serve --redis`` processes over a real redis-server; ``presence_expiry`` 1.5 s
(a beat every 0.5 s, a registration of 1 s) keeps the waits short.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from cfm_server.cluster import keys
from tests.cluster.helpers import WAIT
from tests.cluster.serve_exit import one_line_error, refused, started
from tests.wire import signed_in

FAST = ("--set", "presence_expiry=1.5")


async def holder(url: str, node: str) -> str:
    """The origin of the process holding ``node``'s registration ('' if none)."""
    client = Redis.from_url(url)
    try:
        expiry = await client.zscore(keys.PRESENCE_NODES, node)
        origin = await client.hget(keys.PRESENCE_LIVES, node)
    finally:
        await client.aclose()
    return origin.decode() if expiry is not None and origin is not None else ""


async def sessions_of(url: str, user: str) -> dict[bytes, bytes]:
    """node → the user's sessions there, as the cluster's presence counts them."""
    client = Redis.from_url(url)
    try:
        return await client.hgetall(keys.presence_user(user))
    finally:
        await client.aclose()


async def poll(read: Callable[[], Awaitable[Any]], expected: Any, what: str) -> None:
    """Until ``await read() == expected`` (bounded: WAIT seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while (got := await read()) != expected:
        if loop.time() > deadline:
            raise AssertionError(f"{what}: {got!r}, not {expected!r}")
        await asyncio.sleep(0.02)


async def test_a_second_node_with_a_live_nodes_id_is_refused_and_the_first_keeps_its_users(
        redis, tmp_path) -> None:
    async with started("--redis", redis.url, "--node-id", "p1", *FAST,
                       "--data-dir", str(tmp_path / "first")) as first, \
            signed_in(first.url, "alice"):
        await poll(lambda: sessions_of(redis.url, "alice"), {b"p1": b"1"}, "alice counted")
        owner = await holder(redis.url, "p1")
        assert owner.startswith("p1.")
        code, output = await refused("--redis", redis.url, "--node-id", "p1", *FAST,
                                     "--data-dir", str(tmp_path / "second"))
        assert code == 2
        line = one_line_error(output)
        assert "node id 'p1' is in use by a running node" in line, line
        assert "give this node its own --node-id" in line, line
        # The refused one changed nothing: the first still holds the id and its user.
        assert await holder(redis.url, "p1") == owner
        assert await sessions_of(redis.url, "alice") == {b"p1": b"1"}
        assert first.proc.returncode is None


async def test_a_node_id_is_free_at_once_after_a_clean_stop_and_after_a_killed_nodes_expiry(
        redis, tmp_path) -> None:
    # A registration of 8 s (presence_expiry 12): the next start, a second or two after
    # the kill, comes well within it.
    args = ("--redis", redis.url, "--node-id", "p1", "--set", "presence_expiry=12",
            "--data-dir", str(tmp_path / "p1"))
    async with started(*args) as first:
        pass  # stopped with SIGTERM: it leaves the cluster's presence
    assert await first.proc.wait() == 0
    assert await holder(redis.url, "p1") == ""
    async with started(*args) as again:
        assert "has not left" not in again.text()  # no wait: the id was free
        again.proc.send_signal(signal.SIGKILL)  # no goodbye: its registration stays
        await again.proc.wait()
    assert (await holder(redis.url, "p1")).startswith("p1.")
    async with started(*args) as third:
        # It waited for the killed one's registration to expire, then took the id.
        await third.wait_line(r"node id p1 is registered by p1\.\w+, which has not left: "
                              r"waiting up to [\d.]+ s")
        assert re.search(r"\(node p1\)", third.text())
        async with signed_in(third.url, "bob"):  # counted under the id it took
            await poll(lambda: sessions_of(redis.url, "bob"), {b"p1": b"1"}, "bob counted")


async def test_nodes_without_a_node_id_on_port_0_each_get_their_own(redis, tmp_path) -> None:
    async with started("--redis", redis.url, "--data-dir", str(tmp_path / "a")) as a, \
            started("--redis", redis.url, "--data-dir", str(tmp_path / "b")) as b:
        ids = []
        for node in (a, b):
            match = await node.wait_line(r"data in redis://\S+ \(node ([^)]+)\)")
            ids.append(match.group(1))
        assert ids[0] != ids[1], ids
        assert not ids[0].endswith("-0") and not ids[1].endswith("-0"), ids


async def test_a_node_whose_id_was_taken_while_it_was_away_leaves_the_new_holder_alone(
        broker_factory) -> None:
    from cfm_server.cluster.presence import NodeIdTaken, Presence

    broker = await broker_factory(node="slow")
    stalled = Presence(broker.batcher, "slow", expiry=1.5)
    await stalled.start()
    await stalled.session_up("carol")
    assert stalled._beats is not None
    stalled._beats.cancel()  # its loop stalls (or Redis is out of its reach) too long
    newcomer = Presence(broker.batcher, "slow", expiry=1.5)
    await newcomer.claim()  # waits for the stalled one's registration to expire
    await newcomer.session_up("dave")
    assert await stalled.beat() == []  # back: it finds the id taken, and changes nothing
    try:
        await stalled.session_up("erin")
    except NodeIdTaken as exc:
        assert "'slow'" in str(exc)
    else:
        raise AssertionError("a session counted under another process's registration")
    assert await newcomer.online(["carol", "dave", "erin"]) == {"dave"}
    await newcomer.beat()  # the newcomer still holds it
    assert newcomer.origin != stalled.origin
    await newcomer.close()
