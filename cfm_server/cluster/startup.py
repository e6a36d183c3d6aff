"""A cluster node's first exchange with Redis at start: is this the Redis cluster mode
needs? If not, one line that names the problem and the fix (docs/cluster.md, "Starting a
node").

    await check_redis(config.redis_url, allow_eviction=config.allow_redis_eviction)

- Refused (``StartRefused``; ``cfm serve`` exits with status 2, which systemd's unit does
  not restart): a password Redis refuses, or one it wants and the URL lacks; a database
  Redis does not have; Redis older than 7.0; a ``maxmemory-policy`` that evicts keys
  (an evicted key is lost history) unless ``allow_redis_eviction``. (A URL that is no
  Redis URL, or names a database that is no number, is refused before: ``config.py``.)
- Waited for, a log line each try, with back-off: Redis out of reach (refused, no route,
  a name that does not resolve, a timeout) or loading its data. A node started while
  Redis is down — both machines booting after a power cut — comes up once Redis does,
  as a running node resumes after an outage; SIGTERM or Ctrl+C stops the wait.
- Warned: persistence weaker than ``appendonly yes`` + ``appendfsync always`` (what an
  acknowledged message may lose), and what could not be checked when Redis refuses
  ``CONFIG GET`` (managed Redis often does).

On a Redis Cluster the seed node of the URL is the one asked.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import redis.exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cfm_server.cluster import rediscluster
from cfm_server.cluster.errors import ClusterError
from cfm_server.config import redact_url

log = logging.getLogger(__name__)

MIN_VERSION = 7
DOCS = "docs/cluster.md#redis-requirements"
# Back-off between tries while Redis is out of reach (seconds): first, cap.
BACKOFF = (0.5, 5.0)
TIMEOUT = 5.0  # to connect, and for each answer


class StartRefused(ClusterError):
    """The node cannot start on this Redis as it is set up: the message says what to fix."""


class _OutOfReach(Exception):
    """Redis cannot be reached now (or is loading): worth another try."""


def version_problem(version: str, shown: str) -> str | None:
    """Why a Redis of ``version`` cannot hold a cluster's data (None: it can)."""
    major = version.split(".")[0]
    if major.isdigit() and int(major) >= MIN_VERSION:
        return None
    return (f"Redis at {shown} is version {version or 'unknown'}; cluster mode needs Redis "
            f"{MIN_VERSION}.0 or newer (or Valkey 7.2+): upgrade it")


def persistence_warnings(settings: dict[str, str], shown: str) -> list[str]:
    """What an acknowledged message may lose under these ``appendonly``/``appendfsync``
    settings (from ``CONFIG GET``) of the Redis at ``shown``, in words."""
    appendonly, fsync = settings.get("appendonly", ""), settings.get("appendfsync", "")
    if appendonly and appendonly != "yes":
        return [f"Redis at {shown} runs with appendonly {appendonly}: acknowledged "
                f"messages are kept in its memory and its snapshots only, so a restart or "
                f"crash of Redis loses every message since its last snapshot, and the seqs "
                f"after it are handed out again; set appendonly yes and appendfsync always "
                f"({DOCS})"]
    if fsync and fsync != "always":
        lag = ("about two seconds" if fsync == "everysec"
               else "what the kernel has not written yet (up to ~30 s)")
        return [f"Redis at {shown} runs with appendfsync {fsync}: it answers before the data is on "
                f"disk, so a crash of Redis's machine (power, kernel) loses {lag} of "
                f"acknowledged messages, and the seqs after it are handed out again; set "
                f"appendfsync always if every acknowledged message must be kept ({DOCS})"]
    return []


async def check_redis(url: str, *, allow_eviction: bool = False) -> None:
    """Wait until Redis answers, then check it (see the module's docstring). Raises
    StartRefused; logs each failed try and each warning."""
    shown = redact_url(url)
    delay = BACKOFF[0]
    while True:
        try:
            await _check_once(url, shown, allow_eviction)
            return
        except _OutOfReach as exc:
            log.warning("cannot reach Redis at %s: %s; trying again in %.1f s (is Redis "
                        "running, and are the host and port of redis_url right? Ctrl+C or "
                        "SIGTERM stops)", shown, exc, delay)
        await asyncio.sleep(delay)
        delay = min(BACKOFF[1], delay * 2) * random.uniform(0.9, 1.1)


async def _check_once(url: str, shown: str, allow_eviction: bool) -> None:
    seed, _ = rediscluster.split_url(url)
    client = Redis.from_url(seed, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT,
                            retry=Retry(NoBackoff(), 0), decode_responses=True, protocol=2)
    try:
        try:
            await client.ping()
            info = await client.info("server")
        except Exception as exc:
            raise _refusal(exc, shown) from None  # (StartRefused or _OutOfReach)
        problem = version_problem(str(info.get("redis_version", "")), shown)
        if problem is not None:
            raise StartRefused(problem)
        settings = await _settings(client, shown)
    finally:
        await client.aclose()
    if settings is None:
        return
    policy = settings.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        what = (f"Redis at {shown} runs with maxmemory-policy {policy}: once it is full it "
                f"deletes keys to make room, and with them stored messages, accounts and "
                f"presence")
        if not allow_eviction:
            raise StartRefused(
                f"{what}; set maxmemory-policy noeviction (in redis.conf, and CONFIG SET "
                f"maxmemory-policy noeviction for the running Redis), or accept that loss "
                f"with --allow-redis-eviction (allow_redis_eviction = true) ({DOCS})")
        log.warning("%s (allowed by allow_redis_eviction)", what)
    for warning in persistence_warnings(settings, shown):
        log.warning("%s", warning)


async def _settings(client: Redis, shown: str) -> dict[str, str] | None:
    """maxmemory-policy, appendonly and appendfsync; None (said in a log line) when
    Redis refuses CONFIG GET."""
    try:
        found: dict[str, Any] = await client.config_get("maxmemory-policy", "appendonly",
                                                        "appendfsync")
    except rx.RedisError as exc:
        log.warning("Redis at %s refused CONFIG GET (%s), as managed Redis often does: "
                    "cannot check maxmemory-policy, appendonly and appendfsync; make sure "
                    "they are noeviction, yes and always (%s)", shown, exc, DOCS)
        return None
    return {str(k): str(v) for k, v in found.items()}


def problem_line(exc: BaseException, shown: str) -> str:
    """One line for a failure talking to Redis at ``shown`` (a password-free URL): what
    is wrong and what to fix (a tool's answer: ``cfm admin … --redis``)."""
    refusal = _refusal(exc, shown)
    if isinstance(refusal, _OutOfReach):
        return f"cannot reach Redis at {shown}: {refusal}"
    return str(refusal)


def _refusal(exc: BaseException, shown: str) -> Exception:
    """``exc`` from the first commands as StartRefused (a setting to fix) or _OutOfReach
    (worth another try)."""
    text = str(exc)
    code = getattr(exc, "status_code", None)
    if isinstance(exc, rx.AuthenticationError) or code in ("WRONGPASS", "NOAUTH"):
        if code == "NOAUTH" or "Authentication required" in text:
            fix = ("it wants a password: put it in redis_url as redis://:PASSWORD@HOST:PORT/DB "
                   "(best from CFM_REDIS_URL or server.toml, not the command line)")
        elif "no password is set" in text or "without any password configured" in text:
            fix = "it has no password set: drop the password from redis_url"
        else:
            fix = ("fix the password (and user name, for an ACL user) in redis_url: "
                   "redis://[USER]:PASSWORD@HOST:PORT/DB")
        return StartRefused(f"Redis at {shown} refused the sign-in ({code or 'AUTH'}: "
                            f"{text}): {fix}")
    if isinstance(exc, rx.NoPermissionError):
        return StartRefused(f"the Redis user of {shown} may not run what a node needs "
                            f"({text}): give it every command and key (ACL SETUSER … "
                            f"+@all ~*), or use another user")
    if "DB index is out of range" in text:
        return StartRefused(f"Redis at {shown} has no such database ({text}): use a "
                            f"number below its 'databases' setting (16 by default)")
    if isinstance(exc, rx.BusyLoadingError):
        return _OutOfReach("it is loading its data into memory")
    if isinstance(exc, (rx.ConnectionError, rx.TimeoutError, OSError, TimeoutError)):
        return _OutOfReach(text.rstrip(".") or type(exc).__name__)
    return StartRefused(f"Redis at {shown} answered what cluster mode cannot use: {text}")
