"""``cfm admin``: offline operator tools on a stopped server's data directory.

Each command takes the data directory's lock, as ``cfm serve`` does, so it refuses a
directory a server is serving; the work itself is in ``cfm_server/admin.py``. The data
directory resolves as ``cfm serve``'s does (``--data-dir``, ``CFM_DATA_DIR``, the TOML
file, the user data dir). Heavy imports happen inside the commands, so ``cfm --help``
stays fast. Errors: one line on stderr and exit 2; a declined confirmation exits 1.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfm_server.admin_output import (
    EXIT_DECLINED,
    describe,
    fail,
    hand_over,
    plural,
    print_stats,
    print_users,
    size,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator

    from cfm_server.config import ServerConfig

app = typer.Typer(help="Operator tools on a stopped server's data directory.",
                  no_args_is_help=True, add_completion=False)


DataDir = Annotated[Path | None, typer.Option("--data-dir", help="The server's data directory. (default: as cfm serve: CFM_DATA_DIR, the config file, else the user data dir, e.g. ~/.local/share/cfm)")]  # noqa: E501
ConfigFile = Annotated[Path | None, typer.Option("--config", help="The server's TOML settings file, for its data_dir and AI personas. (default: <user config dir>/cfm/server.toml if it exists)")]  # noqa: E501
RedisUrl = Annotated[str | None, typer.Option("--redis", help="A cluster's Redis (redis://HOST:PORT/DB): the accounts every node shares, changed while the nodes run. (default: CFM_REDIS_URL, the config file's redis_url; none: the data dir)")]  # noqa: E501


def _settings(data_dir: Path | None, config: Path | None) -> Any:
    from cfm_server.config import ConfigError, load_config, unknown_env_warnings

    # As cfm serve does: a misspelled CFM_DATA_DIR would otherwise send the command to
    # the default data directory without a word.
    for warning in unknown_env_warnings():
        typer.echo(f"cfm admin: warning: {warning}", err=True)
    try:
        return load_config(config, {"data_dir": data_dir, "store": "sqlite"})
    except ConfigError as exc:
        raise fail(str(exc)) from None


class _Opened:
    """The open database of a data directory, with what the commands need beside it."""

    def __init__(self, settings: Any, conn: sqlite3.Connection, data_dir: Path) -> None:
        self.settings = settings
        self.conn = conn
        self.data_dir = data_dir

    @property
    def personas(self) -> frozenset[str]:
        """The server's own AI contacts: its configured personas and those it keeps a
        token for in <data dir>/ai/ (a persona once configured, since removed)."""
        names = {p.key for p in self.settings.ai.personas} if self.settings.ai else set()
        names.update(path.stem for path in (self.data_dir / "ai").glob("*.token"))
        return frozenset(names)


@contextlib.contextmanager
def _open(data_dir: Path | None, config: Path | None, *, read_only: bool = False,
          settings: ServerConfig | None = None) -> Iterator[_Opened]:
    """The data directory's database under the server's lock; ``read_only`` commands
    read beside a running server instead of asking for it to stop. ``settings``: those
    the command loaded already."""
    from cfm_server.admin import AdminError, open_database, read_database
    from cfm_server.store import StoreError
    from cfm_server.store.lockfile import DataDirInUse

    settings = settings or _settings(data_dir, config)
    directory = _owned_data_dir(settings)
    with contextlib.ExitStack() as stack:
        try:
            try:
                conn = stack.enter_context(open_database(directory))
            except DataDirInUse as exc:
                if not read_only:
                    who = f"pid {exc.holder_pid}" if exc.holder_pid else "a server"
                    raise fail(f"stop cfm serve first ({who} serves {directory})") from None
                conn = stack.enter_context(read_database(directory))
        except (AdminError, StoreError) as exc:
            raise fail(str(exc)) from None
        yield _Opened(settings, conn, directory)


@app.command("users")
def users(
    data_dir: DataDir = None,
    config: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array, one object per user.")] = False,  # noqa: E501
    redis: RedisUrl = None,
) -> None:
    """Every user: handle, display name, kind, status, created, rooms, DMs, messages sent
    (not counted on a cluster)."""
    from cfm_server.admin import list_users

    settings = _settings(data_dir, config)
    if url := redis or settings.redis_url:
        from cfm_server import admin_cluster_cli

        admin_cluster_cli.users(url, settings, as_json)
        return
    with _open(data_dir, config, read_only=True, settings=settings) as db:
        rows = list_users(db.conn, db.personas)
    print_users(rows, as_json)


TokenFile = Annotated[Path | None, typer.Option("--token-file", help="Write the new token to this file (mode 0600) instead of printing it.")]  # noqa: E501
ServerUrl = Annotated[str | None, typer.Option("--server", help="The URL users connect to, for the token file's name and the instructions. (default: the server's public_url, else ws://<host>:<port>/ws from its settings)")]  # noqa: E501


def _token_writer(token_file: Path | None) -> Any:
    """A ``deliver`` for admin.reset_token/add_user: writes the token file, if asked."""
    from cfm_common import tokens
    from cfm_server import admin

    def deliver(token: str) -> None:
        if token_file is not None:
            try:
                tokens.write_token(token_file, token)
            except OSError as exc:
                raise admin.AdminError(
                    f"cannot write {token_file}: {exc.strerror or exc}; nothing changed"
                ) from None

    return deliver


@app.command("reset-token")
def reset_token(
    name: Annotated[str, typer.Argument(help="The handle whose token is replaced.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    token_file: TokenFile = None,
    server: ServerUrl = None,
    redis: RedisUrl = None,
) -> None:
    """Account recovery: a fresh token for NAME; the old one stops working (also while
    the server runs, or a cluster's nodes: NAME's open sessions are closed)."""
    from cfm_server import admin

    settings = _settings(data_dir, config)
    if url := redis or settings.redis_url:
        from cfm_server import admin_cluster_cli

        admin_cluster_cli.reset_token(url, name, settings, _token_writer(token_file),
                                      token_file, server or _server_url(settings))
        return
    if _served(settings.resolved_data_dir()):
        _reset_token_live(settings, name, token_file, server)
        return
    with _open(data_dir, config, settings=settings) as db:
        try:
            key, token = admin.reset_token(db.conn, name, db.personas,
                                           deliver=_token_writer(token_file))
        except admin.AdminError as exc:
            raise fail(str(exc)) from None
    hand_over(db.data_dir, key, token, token_file, server or _server_url(db.settings),
               f"New token for {key}; the old token no longer works once cfm serve runs "
               f"again")


def _served(directory: Path) -> bool:
    """Whether a running cfm serve holds the data directory's lock."""
    import fcntl
    import os

    from cfm_server.admin import database_path

    try:
        fd = os.open(f"{database_path(directory)}.lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # drops the lock taken just to look
    return False


def _reset_token_live(settings: Any, name: str, token_file: Path | None,
                      server: str | None) -> None:
    """reset-token through the running server's control socket (cfm_server/control.py):
    the token is made and delivered here, only its hash goes to the server."""
    from cfm_server import admin, control
    from cfm_server.hub import hash_token

    directory = _owned_data_dir(settings)
    token = admin.new_token()
    try:
        _token_writer(token_file)(token)
    except admin.AdminError as exc:
        raise fail(str(exc)) from None
    try:
        reply = control.request(directory, {"op": "set-token", "name": name,
                                            "token_hash": hash_token(token)})
    except control.ControlError as exc:
        reply = {"ok": False, "error": f"{exc}; stop cfm serve and run this again"}
    if not reply.get("ok"):
        if token_file is not None:
            token_file.unlink(missing_ok=True)
        raise fail(f"{reply.get('error', 'the server refused')}; nothing changed")
    key, closed = str(reply["name"]), int(reply.get("closed", 0))

    sessions = f" and {plural(closed, 'open session')} closed" if closed else ""
    hand_over(directory, key, token, token_file, server or _server_url(settings),
               f"New token for {key}, in force now (the old one no longer works{sessions})")


@app.command("add-user")
def add_user(
    name: Annotated[str, typer.Argument(help="The handle to create.")],
    display: Annotated[str | None, typer.Option(help="The display name. (default: the handle as typed)")] = None,  # noqa: E501
    data_dir: DataDir = None,
    config: ConfigFile = None,
    token_file: TokenFile = None,
    server: ServerUrl = None,
    redis: RedisUrl = None,
) -> None:
    """Create an account (for a server whose registration is closed) and show its token."""
    import time

    from cfm_server import admin

    settings = _settings(data_dir, config)
    if url := redis or settings.redis_url:
        from cfm_server import admin_cluster_cli

        admin_cluster_cli.add_user(url, name, display, _token_writer(token_file), token_file,
                                   server or _server_url(settings))
        return
    with _open(data_dir, config, settings=settings) as db:
        try:
            key, token = admin.add_user(db.conn, name, display, int(time.time() * 1000),
                                        deliver=_token_writer(token_file))
        except admin.AdminError as exc:
            raise fail(str(exc)) from None
    hand_over(db.data_dir, key, token, token_file, server or _server_url(db.settings),
               f"Created {key}; its token")


@app.command("invite")
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

    settings = _settings(data_dir, config)
    if uses < 0:
        raise fail("--uses must be 0 (any number) or more")
    lifetime = _duration(expires)
    redis_url = redis or settings.redis_url
    try:
        key = _cluster_invite_key(redis_url) if redis_url else _local_invite_key(settings)
    except (OSError, InviteError) as exc:
        raise fail(str(exc)) from None
    until = int(time.time() + lifetime) if lifetime else 0
    code = make_code(key, uses=uses, expires=until)
    url = server or _server_url(settings)
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
    registration = _last_run(settings).get("registration", settings.registration)
    if registration != "invite":
        typer.echo(f"Note: this server's registration is {registration!r}; start it "
                   f"with --registration invite (or registration = \"invite\") for codes to "
                   f"be asked for.")


def _local_invite_key(settings: Any) -> bytes:
    from cfm_server.admin import database_path
    from cfm_server.invites import load_key

    directory = settings.resolved_data_dir()
    if not database_path(directory).is_file():
        raise fail(f"no cfm database in {directory}; check --data-dir (cfm serve makes it "
                    f"when it first starts)")
    _check_owner(directory)
    key = load_key(directory, create=True)
    assert key is not None
    return key


def _cluster_invite_key(url: str) -> bytes:
    """The key the nodes of the cluster at ``url`` share (made there if none is yet)."""
    key = _in_redis(url, "key_from_redis")
    assert key is not None
    return key


def _in_redis(url: str, what: str, *args: Any) -> Any:
    """Run ``cfm_server.cluster.invites.<what>(url, *args)``; a failure is the command's."""
    import asyncio

    from cfm_server.cluster import invites
    from cfm_server.server import redact_url

    try:
        return asyncio.run(getattr(invites, what)(url, *args))
    except ValueError as exc:  # not a redis://, rediss:// or unix:// URL
        raise fail(f"--redis: {exc}") from None
    except OSError as exc:
        raise fail(f"cannot reach Redis at {redact_url(url)}: {exc}") from None


@app.command("ai-kill-switch")
def ai_kill_switch(
    state: Annotated[str, typer.Argument(help="on (every AI contact answers 'not now') or off.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    redis: Annotated[str | None, typer.Option("--redis", help="The cluster's Redis (redis://HOST:PORT/DB). (default: CFM_REDIS_URL, the config file's redis_url)")] = None,  # noqa: E501
) -> None:
    """Turn the AI contacts' kill switch on or off for a whole cluster, at once."""
    import asyncio

    from cfm_server.server import redact_url

    if state not in ("on", "off"):
        raise fail("say on or off")
    url = redis or _settings(data_dir, config).redis_url
    if not url:
        raise fail("the kill switch of a single node is [ai] kill_switch in its settings "
                    "(a restart applies it); --redis names a cluster's Redis")
    from cfm_server.cluster.ai import kill_switch_in_redis

    try:
        asyncio.run(kill_switch_in_redis(url, state == "on"))
    except ValueError as exc:
        raise fail(f"--redis: {exc}") from None
    except OSError as exc:
        raise fail(f"cannot reach Redis at {redact_url(url)}: {exc}") from None
    typer.echo(f"AI kill switch {state} for every node of the cluster (a node whose own "
               f"[ai] kill_switch is true keeps it on).")


@app.command("revoke-invite")
def revoke_invite(
    code: Annotated[str, typer.Argument(help="The invite code to withdraw (as given out).")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    redis: Annotated[str | None, typer.Option("--redis", help="A cluster's Redis (redis://HOST:PORT/DB): withdrawn on every node. (default: CFM_REDIS_URL, the config file's redis_url; none: the data dir's)")] = None,  # noqa: E501
) -> None:
    """Withdraw one invite code before it expires or is used up (works while it runs)."""
    from cfm_server.invites import InviteError, load_key, parse_code, revoke

    settings = _settings(data_dir, config)
    redis_url = redis or settings.redis_url
    if redis_url:
        _revoke_in_redis(redis_url, code)
        return
    directory = _owned_data_dir(settings)
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
    from cfm_server.invites import InviteError, parse_code

    key = _in_redis(url, "key_from_redis", False)
    if key is None:
        raise fail("no invite key in that Redis: no codes were made for this cluster")
    try:
        invite = parse_code(key, code, 0.0)
    except InviteError as exc:
        raise fail(str(exc)) from None
    new = _in_redis(url, "revoke_in_redis", invite.nonce)
    typer.echo(f"Invite {invite.nonce} withdrawn on every node: nobody can sign up with it "
               f"any more; accounts already made with it stay." if new
               else f"Invite {invite.nonce} was already withdrawn.")


def _owned_data_dir(settings: ServerConfig) -> Path:
    """The data directory the settings name, refused unless this user owns it."""
    directory = settings.resolved_data_dir()
    _check_owner(directory)
    return directory


def _check_owner(directory: Path) -> None:
    """Refuse to work as another user than the one who owns the data directory (the
    server's): files made here (the WAL, the invite key) would be theirs to read, and
    the server could no longer open them."""
    import os

    try:
        owner = directory.stat().st_uid
    except OSError:
        return  # a missing directory gets its own message
    if owner != os.geteuid():
        try:
            import pwd

            name = pwd.getpwuid(owner).pw_name
        except (ImportError, KeyError):
            name = str(owner)
        raise fail(f"{directory} belongs to {name}, the user cfm serve runs as; run cfm admin "
                    f"as that user too (sudo -u {name} {_this_command()})")


def _this_command() -> str:
    """The command line being run, with the program's full path when it was started as
    ``cfm`` (another user's PATH rarely has /opt/cfm/venv/bin), for a hint to copy."""
    import os
    import shlex
    import shutil

    program, *args = sys.argv
    if Path(program).name != "cfm":  # run some other way (python -m, a test): be generic
        return "cfm admin ..."
    found = program if os.sep in program else shutil.which(program) or program
    return shlex.join([os.path.abspath(found), *args])


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


@app.command("remove-user")
def remove_user(
    name: Annotated[str, typer.Argument(help="The handle to remove.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    redis: RedisUrl = None,
) -> None:
    """Free a handle: the user, its memberships, contacts and read marks go.

    Its messages stay, so no room's history gets a hole; its direct conversations are
    archived where no client can open them. Asks first unless --yes. On a cluster
    (--redis) while the nodes run: its sessions on every node are closed.
    """
    import time

    from cfm_server import admin

    settings = _settings(data_dir, config)
    if url := redis or settings.redis_url:
        from cfm_server import admin_cluster_cli

        admin_cluster_cli.remove_user(url, name, settings, yes)
        return
    with _open(data_dir, config, settings=settings) as db:
        try:
            plan = admin.plan_removal(db.conn, name)
        except admin.AdminError as exc:
            raise fail(str(exc)) from None
        typer.echo(describe(plan))
        if plan.name in db.personas:
            typer.echo(f"{plan.name} is one of this server's AI contacts: cfm serve creates "
                       f"it again at its next start unless the AI contacts are off.")
        if not yes and not typer.confirm(f"Remove {plan.name} and free the handle?",
                                         default=False):
            raise fail("nothing changed", EXIT_DECLINED)
        done = admin.remove_user(db.conn, plan.name, int(time.time() * 1000))
        # What the AI contacts remember of the old holder is not the next one's either.
        from cfm_server.ai.memory import forget_user

        forgotten = forget_user(db.data_dir / "ai", done.name)
    typer.echo(f"Removed {done.name}; the handle is free."
               + "".join(f"\n  archived {room}" for room in done.archived_as)
               + (f"\n  the AI contacts forgot {plural(forgotten, 'conversation')} with"
                  f" {done.name}" if forgotten else ""))


@app.command("stats")
def stats(
    data_dir: DataDir = None,
    config: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    redis: RedisUrl = None,
) -> None:
    """Users, rooms, messages and the database's size on disk (a cluster: Redis's
    memory)."""
    from cfm_server import admin

    settings = _settings(data_dir, config)
    if url := redis or settings.redis_url:
        from cfm_server import admin_cluster_cli

        admin_cluster_cli.stats(url, as_json)
        return
    with _open(data_dir, config, read_only=True, settings=settings) as db:
        path = admin.database_path(db.data_dir)
        result = admin.stats(db.conn, path)
    print_stats(result, as_json,
                f"database  {size(result.db_bytes)} ({path} with its -wal and -shm files)")


@app.command("usage")
def usage(
    data_dir: DataDir = None,
    config: ConfigFile = None,
    top: Annotated[int, typer.Option("--top", min=0, help="How many rooms and users to list (0: all).")] = 20,  # noqa: E501
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Disk use: the rooms and the users whose messages take the most bytes."""
    import json

    from cfm_server.usage import usage as measure

    with _open(data_dir, config, read_only=True) as db:
        result = measure(db.conn, top)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), ensure_ascii=False))
        return
    typer.echo(f"messages  {result.total_messages}, {size(result.total_bytes)}"
               " (text and keys, without indexes)")
    for title, rows in (("rooms", result.rooms), ("users (messages sent)", result.users)):
        typer.echo(f"\n{title}")
        width = max((len(r.name) for r in rows), default=0)
        for row in rows:
            typer.echo(f"  {row.name:<{width}}  {size(row.bytes):>10}  "
                       f"{plural(row.messages, 'message')}")


@app.command("backup")
def backup(
    dest: Annotated[Path, typer.Argument(help="A new (or empty) directory for the backup.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """A consistent copy of everything a restore needs (works while the server runs)."""
    from cfm_server.backup import BackupError
    from cfm_server.backup import backup as make_backup

    settings = _settings(data_dir, config)
    directory = _owned_data_dir(settings)
    try:
        summary = make_backup(directory, dest)
    except BackupError as exc:
        raise fail(str(exc)) from None
    dest = _full(dest)  # the restore line below is run later, from elsewhere
    typer.echo(f"Backed up {_full(directory)} into {dest}:\n"
               f"  cfm.sqlite3  {plural(summary.users, 'user')}, "
               f"{plural(summary.messages, 'message')} ({size(summary.db_bytes)}, schema "
               f"v{summary.schema})\n"
               f"  invite.key   {'yes' if summary.invite_key else 'none (no invites made)'}\n"
               f"  ai/          {plural(summary.ai_files, 'file')}\n"
               f"Files are mode 0600; keep the backup as private as the server's data. "
               f"Restore with\n  cfm admin restore {dest} --data-dir NEWDIR")


@app.command("restore")
def restore(
    source: Annotated[Path, typer.Argument(help="A directory made by cfm admin backup (or a whole cfm.sqlite3 copy).")],  # noqa: E501
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The new data directory to restore into (must hold no database).")],  # noqa: E501
) -> None:
    """Put a backup in place as a server's data directory; then start cfm serve on it."""
    from cfm_server.backup import BackupError
    from cfm_server.backup import restore as do_restore

    if data_dir.exists():
        _check_owner(data_dir)
    try:
        summary = do_restore(source, data_dir)
    except BackupError as exc:
        raise fail(str(exc)) from None
    taken = f" (taken {summary.created})" if summary.created else ""
    source, data_dir = _full(source), _full(data_dir)
    typer.echo(f"Restored {source}{taken} into {data_dir}: "
               f"{plural(summary.users, 'user')}, {plural(summary.messages, 'message')}, "
               f"invite key "
               f"{'restored' if summary.invite_key else 'none'}, "
               f"{plural(summary.ai_files, 'AI contact file')}.")
    if summary.registration:
        typer.echo(f"The server it came from ran with registration {summary.registration}; "
                   f"start this one with the same settings (your --config file and flags), "
                   f"e.g.\n  cfm serve --registration {summary.registration} --data-dir "
                   f"{data_dir}")
    else:
        typer.echo(f"Start the server on it with the settings it ran with (your --config "
                   f"file and flags):\n  cfm serve --data-dir {data_dir}")
    import os

    if os.geteuid() == 0:
        typer.echo(f"You ran this as root: the files are root's. Give them to the user the "
                   f"server runs as first (e.g. chown -R cfm:cfm {data_dir}).")


# --- helpers ------------------------------------------------------------------------


@app.command("migrate")
def migrate(
    to: Annotated[str, typer.Option("--to", help="The Redis to copy into (redis://HOST:PORT/DB or rediss://…); it must hold no cfm data yet.")],  # noqa: E501
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Copy a stopped server's data (users, contacts, rooms, every message, read marks,
    invite uses) into Redis, for cluster mode (docs/cluster.md)."""
    import asyncio

    from cfm_server.admin import database_path
    from cfm_server.cluster.migrate import MigrateError, check_url, shown
    from cfm_server.cluster.migrate import migrate as copy_into
    from cfm_server.store import StoreError
    from cfm_server.store.sqlite import DataDirInUse, SqliteStore

    try:
        check_url(to)
    except MigrateError as exc:
        raise fail(str(exc)) from None
    settings = _settings(data_dir, config)
    directory = _owned_data_dir(settings)
    path = database_path(directory)
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise fail(f"the data directory {directory} {what}; check --data-dir")
    if not path.exists():
        raise fail(f"{directory} holds no cfm database ({path.name}): nothing to migrate")

    async def run() -> Any:
        store = SqliteStore(path, search=False)  # the copy reads messages, not words
        await store.open()
        try:
            return await copy_into(store, to, data_dir=directory,
                                   progress=lambda text: typer.echo(text))
        finally:
            await store.close()

    try:
        copied = asyncio.run(run())
    except DataDirInUse as exc:
        who = f"pid {exc.holder_pid}" if exc.holder_pid else "a server"
        raise fail(f"stop cfm serve first ({who} serves {directory})") from None
    except (MigrateError, StoreError) as exc:
        raise fail(str(exc)) from None
    for warning in copied.warnings:
        typer.echo(f"cfm admin: warning: {warning}", err=True)
    typer.echo(f"Copied {_full(directory)} into {shown(to)} (Redis {copied.redis_version}):\n"
               f"  {plural(copied.users, 'user')}, {plural(copied.contacts, 'contact entry', 'contact entries')}, "  # noqa: E501
               f"{plural(copied.memberships, 'membership')}, {plural(copied.reads, 'read mark')}, "
               f"{plural(copied.invites, 'invite')}, {plural(copied.moderators, 'moderator')}\n"
               f"  {plural(copied.rooms, 'room')} with {plural(copied.messages, 'message')} "
               f"(same seqs and epochs: clients resume without a gap)\n"
               f"  invite key {'yes' if copied.invite_key else 'none (no invites made)'}, "
               f"{plural(copied.ai_memories, 'AI memory', 'AI memories')}\n"
               f"The data directory keeps all it held: cfm serve still starts on it.")


def _full(path: Path) -> Path:
    """``path`` from the root, ``..`` folded (symlinks kept: it is the name typed)."""
    import os

    return Path(os.path.abspath(path))


def _last_run(settings: Any) -> dict[str, Any]:
    """What the server wrote of its last start (``server.json``): its URL and
    registration as flags and environment made them; empty if there is none."""
    import json

    from cfm_server.server import RUN_FILE

    try:
        record = json.loads((settings.resolved_data_dir() / RUN_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _server_url(settings: Any) -> str:
    """The URL people type: ``public_url`` (the settings', else as the last start
    recorded it), else where people on this machine reach the server: as its last start
    recorded it (flags included), else as the settings say."""
    from cfm_server.netaddr import ws_url

    last = _last_run(settings)
    for url in (settings.public_url, last.get("public_url")):
        if isinstance(url, str) and url.startswith(("ws://", "wss://")):
            return url
    url = last.get("dial")
    if isinstance(url, str) and url.startswith(("ws://", "wss://")):
        return url
    return ws_url(settings.host, settings.port, tls=settings.tls_cert is not None, dial=True)


