"""``cfm admin invite``, ``revoke-invite`` and ``ai-kill-switch``: a data dir's invite
key and withdrawn codes, or a cluster's in Redis (``--redis``); registered on the
``cfm admin`` app by ``admin_cli.py``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import typer

from cfm_server import admin_cluster_cli
from cfm_server.admin_output import fail, plural
from cfm_server.admin_settings import (
    ConfigFile,
    DataDir,
    ServerUrl,
    check_owner,
    last_run,
    load_settings,
    owned_data_dir,
    server_url,
)


def invite(
    uses: Annotated[int, typer.Option(help="How many new accounts the code may create (0: any number).")] = 1,  # noqa: E501
    expires: Annotated[str, typer.Option(help="How long the code is valid: e.g. 30m, 12h, 7d, or never.")] = "7d",  # noqa: E501
    data_dir: DataDir = None,
    config: ConfigFile = None,
    server: ServerUrl = None,
    redis: Annotated[str | None, typer.Option("--redis", help="A cluster's Redis (redis://HOST:PORT/DB): the code is signed with the key every node shares there. (default: CFM_REDIS_URL, the config file's redis_url; none: the data dir's key)")] = None,  # noqa: E501
) -> None:
    """An invite code for a server whose registration is by invite (works while it runs)."""
    import datetime
    import time

    from cfm_server.invites import InviteError, make_code

    settings = load_settings(data_dir, config)
    if uses < 0:
        raise fail("--uses must be 0 (any number) or more")
    lifetime = _duration(expires)
    redis_url = redis or settings.redis_url
    try:
        key = _cluster_invite_key(redis_url) if redis_url else _local_invite_key(settings)
    except (OSError, InviteError) as exc:
        raise fail(str(exc)) from None
    runs = admin_cluster_cli.node_runs(redis_url) if redis_url else None
    until = int(time.time() + lifetime) if lifetime else 0
    code = make_code(key, uses=uses, expires=until)
    url = server or (server_url(settings) if runs is None
                     else admin_cluster_cli.public_url(settings, runs))
    when = ("never expires" if not until else "valid until " + datetime.datetime.fromtimestamp(
        until, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    times = "any number of new accounts" if not uses else plural(uses, "new account")
    typer.echo(f"Invite code ({times}; {when}):\n\n  {code}\n")
    typer.echo(f"Give it to the people you invite; each signs up with\n"
               f"  cfm chat --server {url} --invite {code}\n"
               f"or, keeping it out of the shell history and the process list, with\n"
               f"  cfm chat --server {url}\n"
               f"and the code pasted into the Invite code field the sign-in screen shows "
               f"when the server asks for it (a bot: Client(url, name, invite=...)). It is "
               f"needed only for the first sign-in.")
    note = (_local_note(settings) if runs is None else _cluster_note(settings, runs))
    if note:
        typer.echo(f"Note: {note}")


_START_INVITE = "with --registration invite (or registration = \"invite\")"


def _local_note(settings: Any) -> str | None:
    """What to say when the server (as its last start recorded it, else its settings)
    asks nobody for a code."""
    registration = last_run(settings).get("registration", settings.registration)
    if registration == "invite":
        return None
    return (f"this server's registration is {registration!r}; start it {_START_INVITE} "
            f"for codes to be asked for.")


def _cluster_note(settings: Any, runs: Any) -> str | None:
    """The same for a cluster, from the records its nodes keep in Redis
    (``cluster/noderuns.py``), each node's own: they can differ, and then each is named."""
    if not runs.nodes:
        if settings.registration == "invite":
            return None
        return (f"no node has recorded its registration in this Redis (none started on "
                f"it yet); start them {_START_INVITE} for codes to be asked for.")
    each = runs.values("registration")
    where = (f"as {plural(len(each), 'running node')} recorded it in Redis: "
             if runs.running else "as the nodes recorded it at their last start (none "
             "runs now): ") + ", ".join(f"{node} {mode!r}" for node, mode in each.items())
    modes = set(each.values())
    if modes == {"invite"}:
        return None
    if len(modes) == 1:
        return (f"this cluster's registration is {modes.pop()!r} ({where}); start its "
                f"nodes {_START_INVITE} for codes to be asked for.")
    return (f"the nodes of this cluster differ in registration ({where}): only a node "
            f"whose registration is 'invite' asks for a code ('open': anyone signs up "
            f"without one, 'closed': nobody signs up); start every node {_START_INVITE}.")


def _local_invite_key(settings: Any) -> bytes:
    from cfm_server.admin import database_path
    from cfm_server.invites import load_key

    directory = settings.resolved_data_dir()
    if not database_path(directory).is_file():
        raise fail(f"no cfm database in {directory}; check --data-dir (cfm serve makes it "
                    f"when it first starts)")
    check_owner(directory)
    key = load_key(directory, create=True)
    assert key is not None
    return key


def _cluster_invite_key(url: str) -> bytes:
    """The key the nodes of the cluster at ``url`` share (made there if none is yet)."""
    from cfm_server.cluster import invites

    key = _in_redis(url, invites.key_from_redis)
    assert key is not None
    return key


def _in_redis(url: str, work: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
    """Run ``work(url, *args)`` on the cluster's Redis; a failure is the command's."""
    return admin_cluster_cli.run_on_redis(url, work(url, *args))


def ai_kill_switch(
    state: Annotated[str, typer.Argument(help="on (every AI contact answers 'not now') or off.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    redis: Annotated[str | None, typer.Option("--redis", help="The cluster's Redis (redis://HOST:PORT/DB). (default: CFM_REDIS_URL, the config file's redis_url)")] = None,  # noqa: E501
) -> None:
    """Turn the AI contacts' kill switch on or off for a whole cluster, at once."""
    if state not in ("on", "off"):
        raise fail("say on or off")
    url = redis or load_settings(data_dir, config).redis_url
    if not url:
        raise fail("the kill switch of a single node is [ai] kill_switch in its settings "
                    "(a restart applies it); --redis names a cluster's Redis")
    from cfm_server.cluster.ai import kill_switch_in_redis

    admin_cluster_cli.run_on_redis(url, kill_switch_in_redis(url, state == "on"))
    typer.echo(f"AI kill switch {state} for every node of the cluster (a node whose own "
               f"[ai] kill_switch is true keeps it on).")


def revoke_invite(
    code: Annotated[str, typer.Argument(help="The invite code to withdraw (as given out).")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    redis: Annotated[str | None, typer.Option("--redis", help="A cluster's Redis (redis://HOST:PORT/DB): withdrawn on every node. (default: CFM_REDIS_URL, the config file's redis_url; none: the data dir's)")] = None,  # noqa: E501
) -> None:
    """Withdraw one invite code before it expires or is used up (works while it runs)."""
    from cfm_server.invites import InviteError, load_key, parse_code, revoke

    settings = load_settings(data_dir, config)
    redis_url = redis or settings.redis_url
    if redis_url:
        _revoke_in_redis(redis_url, code)
        return
    directory = owned_data_dir(settings)
    try:
        key = load_key(directory, create=False)
    except (OSError, InviteError) as exc:
        raise fail(str(exc)) from None
    if key is None:
        raise fail(f"no invite key in {directory}: no codes were made there; check --data-dir")
    try:
        # Expired codes too: withdrawing one is harmless and says what the operator meant.
        invite = parse_code(key, code, 0.0)
    except InviteError as exc:
        raise fail(str(exc)) from None
    try:
        new = revoke(directory, invite.nonce)
    except OSError as exc:
        raise fail(f"cannot write {directory}: {exc.strerror or exc}") from None
    typer.echo(f"Invite {invite.nonce} withdrawn: nobody can sign up with it any more "
               f"(a running server sees it at the next sign-up); accounts already made with "
               f"it stay." if new else f"Invite {invite.nonce} was already withdrawn.")


def _revoke_in_redis(url: str, code: str) -> None:
    from cfm_server.cluster import invites
    from cfm_server.invites import InviteError, parse_code

    key = _in_redis(url, invites.key_from_redis, False)
    if key is None:
        raise fail("no invite key in that Redis: no codes were made for this cluster")
    try:
        invite = parse_code(key, code, 0.0)
    except InviteError as exc:
        raise fail(str(exc)) from None
    new = _in_redis(url, invites.revoke_in_redis, invite.nonce)
    typer.echo(f"Invite {invite.nonce} withdrawn on every node: nobody can sign up with it "
               f"any more; accounts already made with it stay." if new
               else f"Invite {invite.nonce} was already withdrawn.")


def _duration(text: str) -> float:
    """Seconds in "30m", "12h", "7d"; 0 for "never"."""
    text = text.strip().lower()
    if text in ("never", "0"):
        return 0.0
    units = {"m": 60, "h": 3600, "d": 86400}
    try:
        value = float(text[:-1])
        unit = units[text[-1]]
    except (ValueError, KeyError, IndexError):
        raise fail(f"--expires wants 30m, 12h, 7d or never, not {text!r}") from None
    if value <= 0:
        raise fail("--expires must be more than 0 (or never)")
    return value * unit
