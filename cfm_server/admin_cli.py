"""``cfm admin``: offline operator tools on a stopped server's data directory.

Each command takes the data directory's lock, as ``cfm serve`` does, so it refuses a
directory a server is serving; the work itself is in ``cfm_server/admin.py``. The
exceptions read beside a running server, or ask it through its control socket
(``reset-token``, ``remove-user``: ``cfm_server/control.py``). The data
directory resolves as ``cfm serve``'s does (``--data-dir``, ``CFM_DATA_DIR``, the TOML
file, the user data dir: ``admin_settings.py``). With a cluster's Redis (``--redis``)
the account tools work there instead (``admin_cluster_cli.py``); the invite commands
are in ``admin_invite_cli.py``. Heavy imports happen inside the commands, so ``cfm
--help`` stays fast. Errors: one line on stderr and exit 2; a declined confirmation
exits 1.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfm_server import admin_invite_cli
from cfm_server.admin_output import (
    EXIT_DECLINED,
    describe,
    fail,
    hand_over,
    plural,
    print_stats,
    print_usage,
    print_users,
    size,
)
from cfm_server.admin_settings import (
    ConfigFile,
    DataDir,
    RedisUrl,
    ServerUrl,
    TokenFile,
    check_owner,
    full_path,
    load_settings,
    owned_data_dir,
    server_url,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator

    from cfm_server.config import ServerConfig

app = typer.Typer(help="Operator tools on a server's data directory, or a cluster's Redis.",
                  no_args_is_help=True, add_completion=False)


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

    settings = settings or load_settings(data_dir, config)
    directory = owned_data_dir(settings)
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
    """Every user: handle, display name, kind, the status they last chose (not whether
    they are online now), created, rooms, DMs, messages sent.

    On a cluster (--redis) the messages sent are not counted."""
    from cfm_server.admin import list_users

    settings = load_settings(data_dir, config)
    if url := redis or settings.redis_url:
        from cfm_server import admin_cluster_cli

        admin_cluster_cli.users(url, settings, as_json)
        return
    with _open(data_dir, config, read_only=True, settings=settings) as db:
        rows = list_users(db.conn, db.personas)
    print_users(rows, as_json)


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
    """Account recovery: a fresh token for NAME; the old one stops working.

    Also while the server runs, or a cluster's nodes (--redis): NAME's open sessions are
    closed."""
    from cfm_server import admin

    settings = load_settings(data_dir, config)
    if url := redis or settings.redis_url:
        from cfm_server import admin_cluster_cli

        admin_cluster_cli.reset_token(url, name, settings, _token_writer(token_file),
                                      token_file,
                                      server or admin_cluster_cli.server_url(url, settings))
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
    hand_over(db.data_dir, key, token, token_file, server or server_url(db.settings),
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

    directory = owned_data_dir(settings)
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
    hand_over(directory, key, token, token_file, server or server_url(settings),
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

    settings = load_settings(data_dir, config)
    if url := redis or settings.redis_url:
        from cfm_server import admin_cluster_cli

        admin_cluster_cli.add_user(url, name, display, _token_writer(token_file), token_file,
                                   server or admin_cluster_cli.server_url(url, settings))
        return
    with _open(data_dir, config, settings=settings) as db:
        try:
            key, token = admin.add_user(db.conn, name, display, int(time.time() * 1000),
                                        deliver=_token_writer(token_file))
        except admin.AdminError as exc:
            raise fail(str(exc)) from None
    hand_over(db.data_dir, key, token, token_file, server or server_url(db.settings),
               f"Created {key}; its token")


# Made and withdrawn also while the server runs, on a data dir or a cluster's Redis.
app.command("invite")(admin_invite_cli.invite)
app.command("ai-kill-switch")(admin_invite_cli.ai_kill_switch)
app.command("revoke-invite")(admin_invite_cli.revoke_invite)


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
    archived where no client can open them. Asks first unless --yes. While the server
    runs, or a cluster's nodes (--redis): its sessions are closed, and the others told.
    """
    import time

    from cfm_server import admin

    settings = load_settings(data_dir, config)
    if url := redis or settings.redis_url:
        from cfm_server import admin_cluster_cli

        admin_cluster_cli.remove_user(url, name, settings, yes)
        return
    live = _served(settings.resolved_data_dir())
    with _open(data_dir, config, settings=settings, read_only=live) as db:
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
        if live:  # (the running AI contacts forget too: they would write it back)
            key, archived, closed, held = _remove_user_live(db.data_dir, plan.name)
        else:
            done = admin.remove_user(db.conn, plan.name, int(time.time() * 1000))
            key, archived, closed, held = done.name, done.archived_as, 0, 0
        # What the AI contacts remember of the old holder is not the next one's either.
        from cfm_server.ai.memory import forget_user

        forgotten = max(held, forget_user(db.data_dir / "ai", key))
    sessions = f" ({plural(closed, 'open session')} closed)" if closed else ""
    typer.echo(f"Removed {key}; the handle is free{sessions}."
               + "".join(f"\n  archived {room}" for room in archived)
               + (f"\n  the AI contacts forgot {plural(forgotten, 'conversation')} with"
                  f" {key}" if forgotten else ""))


def _remove_user_live(directory: Path, name: str) -> tuple[str, list[str], int, int]:
    """remove-user through the running server's control socket (cfm_server/control.py):
    (handle, archived rooms, sessions closed, AI conversations forgotten)."""
    from cfm_server import control

    try:
        reply = control.request(directory, {"op": "remove-user", "name": name})
    except control.ControlError as exc:
        reply = {"ok": False, "error": f"{exc}; stop cfm serve and run this again"}
    if not reply.get("ok"):
        raise fail(f"{reply.get('error', 'the server refused')}; nothing changed")
    return (str(reply["name"]), [str(r) for r in reply.get("archived", ())],
            int(reply.get("closed", 0)), int(reply.get("forgotten", 0)))


@app.command("stats")
def stats(
    data_dir: DataDir = None,
    config: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    redis: RedisUrl = None,
) -> None:
    """Users, rooms, messages and the database's size on disk.

    On a cluster (--redis): Redis's memory in use instead of the size."""
    from cfm_server import admin

    settings = load_settings(data_dir, config)
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
    redis: RedisUrl = None,
) -> None:
    """Disk use: the rooms and the users whose messages take the most bytes.

    On a cluster (--redis): every room's stream is read, a page at a time."""
    from cfm_server.usage import usage as measure

    settings = load_settings(data_dir, config)
    if url := redis or settings.redis_url:
        from cfm_server import admin_cluster_cli

        admin_cluster_cli.usage(url, top, as_json)
        return
    with _open(data_dir, config, read_only=True, settings=settings) as db:
        result = measure(db.conn, top)
    print_usage(result, as_json, "text and keys, without indexes")


@app.command("backup")
def backup(
    dest: Annotated[Path, typer.Argument(help="A new (or empty) directory for the backup.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """A consistent copy of everything a restore needs (works while the server runs)."""
    from cfm_server.backup import BackupError
    from cfm_server.backup import backup as make_backup

    settings = load_settings(data_dir, config)
    directory = owned_data_dir(settings)
    try:
        summary = make_backup(directory, dest)
    except BackupError as exc:
        raise fail(str(exc)) from None
    dest = full_path(dest)  # the restore line below is run later, from elsewhere
    typer.echo(f"Backed up {full_path(directory)} into {dest}:\n"
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
        check_owner(data_dir)
    try:
        summary = do_restore(source, data_dir)
    except BackupError as exc:
        raise fail(str(exc)) from None
    taken = f" (taken {summary.created})" if summary.created else ""
    source, data_dir = full_path(source), full_path(data_dir)
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
    from cfm_server.cluster.migrate import MigrateError, check_url
    from cfm_server.cluster.migrate import migrate as copy_into
    from cfm_server.config import redact_url
    from cfm_server.store import StoreError
    from cfm_server.store.sqlite import DataDirInUse, SqliteStore

    try:
        check_url(to)
    except MigrateError as exc:
        raise fail(str(exc)) from None
    settings = load_settings(data_dir, config)
    directory = owned_data_dir(settings)
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
    typer.echo(f"Copied {full_path(directory)} into {redact_url(to)} "
               f"(Redis {copied.redis_version}):\n"
               f"  {plural(copied.users, 'user')}, {plural(copied.contacts, 'contact entry', 'contact entries')}, "  # noqa: E501
               f"{plural(copied.memberships, 'membership')}, {plural(copied.reads, 'read mark')}, "
               f"{plural(copied.invites, 'invite')}, {plural(copied.moderators, 'moderator')}\n"
               f"  {plural(copied.rooms, 'room')} with {plural(copied.messages, 'message')} "
               f"(same seqs and epochs: clients resume without a gap)\n"
               f"  invite key {'yes' if copied.invite_key else 'none (no invites made)'}, "
               f"{plural(copied.ai_memories, 'AI memory', 'AI memories')}\n"
               f"The data directory keeps all it held: cfm serve still starts on it.")


