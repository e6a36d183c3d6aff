"""``cfm admin``'s account tools with ``--redis URL``: a cluster's Redis, nodes running.

``admin_cli.py`` parses the flags and, given a Redis URL (``--redis``, ``CFM_REDIS_URL``
or the config file's ``redis_url``), calls these instead of opening a data dir; the work
is in ``cfm_server/cluster/admin.py``, the printing shared with the data dir's commands
(``admin_output.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import typer

from cfm_server import admin_output as out


def run_on_redis(url: str, work: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that works on the cluster's Redis at ``url``; its failures are
    the command's, each one line that says what to fix (no traceback)."""
    import asyncio

    from redis.exceptions import RedisError

    from cfm_server.accounts import AdminError
    from cfm_server.cluster.startup import problem_line
    from cfm_server.config import redact_url

    try:
        return asyncio.run(work)
    except AdminError as exc:
        raise out.fail(str(exc)) from None
    except ValueError as exc:  # not a redis://, rediss:// or unix:// URL
        raise out.fail(f"--redis: {exc}") from None
    except (OSError, RedisError) as exc:
        raise out.fail(problem_line(exc, redact_url(url))) from None


def personas(url: str, settings: Any) -> frozenset[str]:
    """The cluster's own AI contacts: those configured, and those with a memory in Redis
    (a persona once run, since removed from the settings)."""
    from cfm_server.cluster import admin

    names = {p.key for p in settings.ai.personas} if settings.ai else set()
    return frozenset(names | run_on_redis(url, admin.personas(url)))


def node_runs(url: str) -> Any:
    """How the cluster's nodes run, as each recorded it in Redis at its start
    (``cluster/noderuns.py``: a single node's ``server.json``)."""
    from cfm_server.cluster import noderuns

    return run_on_redis(url, noderuns.read(url))


def public_url(settings: Any, runs: Any) -> str:
    """The URL the cluster's users type: the settings' ``public_url``, else the one every
    node recorded (``runs``), else as for a single node (``server_url``)."""
    from cfm_server.admin_settings import server_url

    urls = set(runs.values("public_url").values())
    if not settings.public_url and len(urls) == 1:
        url = urls.pop()
        if isinstance(url, str) and url.startswith(("ws://", "wss://")):
            return url
    return server_url(settings)


def server_url(url: str, settings: Any) -> str:
    """``public_url`` for the cluster whose Redis is at ``url``."""
    return public_url(settings, node_runs(url))


def users(url: str, settings: Any, as_json: bool) -> None:
    from cfm_server.cluster import admin

    out.print_users(run_on_redis(url, admin.list_users(url, personas(url, settings))), as_json)


def stats(url: str, as_json: bool) -> None:
    from cfm_server.cluster import admin
    from cfm_server.server import redact_url

    result = run_on_redis(url, admin.stats(url))
    out.print_stats(result, as_json, f"redis     {out.size(result.db_bytes)} in use (INFO "
                                     f"memory's used_memory of {redact_url(url)}, all of it)")


def usage(url: str, top: int, as_json: bool) -> None:
    from cfm_server.cluster import admin_usage

    out.print_usage(run_on_redis(url, admin_usage.usage(url, top)), as_json,
                    "text and keys, counted as a single node does; Redis holds more: "
                    "stats --redis")


def reset_token(url: str, name: str, settings: Any, deliver: Callable[[str], None],
                token_file: Path | None, server_url: str) -> None:
    from cfm_server.cluster import admin

    names = personas(url, settings)
    key, token, open_ = _delivering(url, token_file, deliver, lambda deliver: admin.reset_token(
        url, name, names, deliver=deliver))
    sessions = f"; {out.plural(open_, 'open session')} of {key} closed" if open_ else ""
    out.hand_over(None, key, token, token_file, server_url,
                  f"New token for {key}, in force on every node now (the old one no longer "
                  f"works{sessions})")


def add_user(url: str, name: str, display: str | None, deliver: Callable[[str], None],
             token_file: Path | None, server_url: str) -> None:
    import time

    from cfm_server.cluster import admin

    now_ms = int(time.time() * 1000)
    key, token = _delivering(url, token_file, deliver, lambda deliver: admin.add_user(
        url, name, display, now_ms, deliver=deliver))
    out.hand_over(None, key, token, token_file, server_url,
                  f"Created {key} on every node; its token")


def _delivering(url: str, token_file: Path | None, deliver: Callable[[str], None],
                work: Callable[[Callable[[str], None]], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``work(deliver)``; a token file it wrote before its change failed is
    nobody's, and goes (so a token nobody got never looks like the one in force)."""
    delivered = []

    def noted(token: str) -> None:
        deliver(token)
        delivered.append(token)

    try:
        return run_on_redis(url, work(noted))
    except typer.Exit:
        if delivered and token_file is not None:
            token_file.unlink(missing_ok=True)
        raise


def remove_user(url: str, name: str, settings: Any, yes: bool) -> None:
    import time

    from cfm_server.cluster import admin

    plan = run_on_redis(url, admin.plan_removal(url, name))
    typer.echo(out.describe(plan))
    if plan.name in personas(url, settings):
        typer.echo(f"{plan.name} is one of this cluster's AI contacts: a node creates it "
                   f"again when it next takes the AI contacts over (a start, or the "
                   f"holder's end) unless they are off.")
    typer.echo("Its sessions on every node are closed and its reactions go. What the AI "
               "contacts remember of it stays (not yet forgotten on a cluster).")
    if not yes and not typer.confirm(f"Remove {plan.name} and free the handle?",
                                     default=False):
        raise out.fail("nothing changed", out.EXIT_DECLINED)
    done = run_on_redis(url, admin.remove_user(url, plan.name, int(time.time() * 1000)))
    typer.echo(f"Removed {done.name} on every node; the handle is free."
               + "".join(f"\n  archived {room}" for room in done.archived_as))
