"""What a node checks of its Redis at start (docs/cluster.md, "Starting a node"): each
problem one ``cfm serve:`` line naming it and its fix, exit status 2, no traceback; a
Redis out of reach waited for; weak persistence and a refused ``CONFIG GET`` said in
the log. Real ``cfm serve --redis`` processes over real redis-servers."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.cluster.redis_proc import BINARY, MISSING, RedisProcess
from tests.cluster.serve_exit import one_line_error, refused, spawn, started
from tests.ports import free_port

pytestmark = pytest.mark.skipif(BINARY is None, reason=MISSING)


@asynccontextmanager
async def redis_server(directory: Path, *settings: str, port: int = 0
                       ) -> AsyncIterator[RedisProcess]:
    """A redis-server with ``settings`` after the tests' usual ones (the later wins)."""
    proc = RedisProcess(directory, extra_args=settings)
    proc.port = port
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


@asynccontextmanager
async def redis_with_password(directory: Path, password: str) -> AsyncIterator[str]:
    """A redis-server that wants ``password``; yields its ``host:port``."""
    async with redis_server(directory) as redis:
        client = Redis.from_url(redis.url)
        await client.config_set("requirepass", password)
        await client.aclose()
        yield f"127.0.0.1:{redis.port}"


async def test_a_redis_that_may_evict_keys_is_refused_unless_the_operator_allows_it(
        tmp_path) -> None:
    async with redis_server(tmp_path / "r", "--maxmemory-policy", "allkeys-lru") as redis:
        code, output = await refused("--redis", redis.url, "--data-dir", str(tmp_path / "n"))
        assert code == 2
        line = one_line_error(output)
        assert "maxmemory-policy allkeys-lru" in line and "noeviction" in line, line
        assert "--allow-redis-eviction" in line, line
        async with started("--redis", redis.url, "--allow-redis-eviction",
                           "--data-dir", str(tmp_path / "n")) as node:
            await node.wait_line(r"WARNING .*maxmemory-policy allkeys-lru.*allowed by "
                                 r"allow_redis_eviction")
        # The TOML key / environment variable does the same.
        async with started("--redis", redis.url, "--data-dir", str(tmp_path / "n"),
                           env={"CFM_ALLOW_REDIS_EVICTION": "true"}) as node:
            await node.wait_line(r"allowed by allow_redis_eviction")


@pytest.mark.parametrize(("settings", "says"), [
    (("--appendfsync", "everysec"), r"appendfsync everysec: .*loses about two seconds of "
                                    r"acknowledged messages"),
    (("--appendonly", "no"), r"appendonly no: .*a restart or crash of Redis loses every "
                             r"message since its last snapshot"),
])
async def test_persistence_weaker_than_fsync_always_is_warned_of(
        tmp_path, settings, says) -> None:
    async with redis_server(tmp_path / "r", *settings) as redis, \
            started("--redis", redis.url, "--data-dir", str(tmp_path / "n")) as node:
        await node.wait_line(r"WARNING cfm_server\.cluster\.startup: Redis at \S+ runs with "
                             + says)
        assert "appendfsync always" in node.text()  # the fix


async def test_a_redis_that_refuses_config_get_is_said_so_and_the_node_starts(
        tmp_path) -> None:
    async with redis_server(tmp_path / "r", "--rename-command", "CONFIG", "") as redis, \
            started("--redis", redis.url, "--data-dir", str(tmp_path / "n")) as node:
        await node.wait_line(r"refused CONFIG GET .*cannot check maxmemory-policy, "
                             r"appendonly and appendfsync")


async def test_a_wrong_or_missing_password_or_database_is_one_line_naming_the_fix(
        tmp_path) -> None:
    async with redis_with_password(tmp_path / "r", "sekret") as base:
        for url, says in (
                (f"redis://{base}/0", "refused the sign-in (NOAUTH"),
                (f"redis://:wrong@{base}/0", "refused the sign-in (WRONGPASS"),
                (f"redis://:sekret@{base}/99", "has no such database"),
                (f"redis://:sekret@{base}/abc", "the database is 'abc'; give a number"),
                (f"http://{base}/0", "must be a redis://"),
                (f"redis://:sekret@{base}/0?colour=red", "options Redis clients do not take")):
            code, output = await refused("--redis", url, "--data-dir", str(tmp_path / "n"))
            line = one_line_error(output)
            assert code == 2 and says in line, line
            # The password is never printed.
            assert "sekret" not in output and ":wrong@" not in output, output


async def test_a_node_started_before_its_redis_waits_for_it_and_then_starts(
        tmp_path) -> None:
    port = free_port()
    node = await spawn("--redis", f"redis://127.0.0.1:{port}/0",
                       "--data-dir", str(tmp_path / "n"))
    try:
        await node.wait_line(rf"cannot reach Redis at redis://127\.0\.0\.1:{port}/0: .*"
                             r"trying again in [\d.]+ s")
        async with redis_server(tmp_path / "r", port=port):
            await node.wait_line(r"cfm serve: listening on ws://")
            assert node.proc.returncode is None
    finally:
        await node.stop()


async def test_sigterm_while_waiting_for_redis_stops_the_node_cleanly(tmp_path) -> None:
    port = free_port()
    node = await spawn("--redis", f"redis://127.0.0.1:{port}/0",
                       "--data-dir", str(tmp_path / "n"))
    await node.wait_line(r"cannot reach Redis at .*trying again")
    node.proc.send_signal(signal.SIGTERM)
    # Its own exit, not stop()'s. (stop()'s second SIGTERM, landing after the loop had
    # closed, used to end the process by the signal, -15: now ignored there,
    # tests/server/test_shutdown_signals.py.)
    assert await asyncio.wait_for(node.proc.wait(), 30) == 0
    assert await node.stop() == 0
    assert "cfm serve: stopped before it started" in node.text()
    assert "Traceback" not in node.text()


def test_a_redis_older_than_7_is_refused_with_the_version_named() -> None:
    from cfm_server.cluster.startup import version_problem

    assert version_problem("7.0.15", "redis://r:6379/0") is None
    assert version_problem("7.2.4", "redis://r:6379/0") is None
    problem = version_problem("6.2.14", "redis://r:6379/0")
    assert problem is not None and "is version 6.2.14" in problem and "7.0" in problem


async def test_cfm_admin_on_a_redis_with_a_wrong_password_says_what_to_fix(tmp_path) -> None:
    """The --redis tools answer a refused sign-in as a node does: one line, the fix, no
    traceback, no password (they used to end in redis-py's AuthenticationError)."""
    from tests.cluster.test_admin import cfm_admin

    async with redis_with_password(tmp_path / "r", "sekret") as base:
        for args, says in (
                (("users", "--redis", f"redis://:wrong@{base}/0"), "WRONGPASS"),
                (("stats", "--redis", f"redis://{base}/0"), "NOAUTH"),
                (("invite", "--redis", f"redis://:wrong@{base}/0"), "WRONGPASS"),
                (("ai-kill-switch", "on", "--redis", f"redis://:wrong@{base}/0"), "WRONGPASS")):
            output = await cfm_admin(*args, tmp_path=tmp_path, code=2)
            assert "Traceback" not in output and "wrong" not in output.replace(
                "wrong@", ""), output
            assert says in output and "password" in output, output
            assert ":wrong@" not in output and "sekret" not in output, output
