"""Where ``cfm admin`` finds the server it works on: its settings (``--config``, the
environment), its data directory (owned by the user running the command), the URL its
users type, and the flags every command shares."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfm_server.admin_output import fail

if TYPE_CHECKING:
    from cfm_server.config import ServerConfig

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="The server's data directory. (default: as cfm serve: CFM_DATA_DIR, the config file, else the user data dir, e.g. ~/.local/share/cfm)")]  # noqa: E501
ConfigFile = Annotated[Path | None, typer.Option("--config", help="The server's TOML settings file, for its data_dir and AI personas. (default: <user config dir>/cfm/server.toml if it exists)")]  # noqa: E501
RedisUrl = Annotated[str | None, typer.Option("--redis", help="A cluster's Redis (redis://HOST:PORT/DB): the accounts every node shares, changed while the nodes run. (default: CFM_REDIS_URL, the config file's redis_url; none: the data dir)")]  # noqa: E501
TokenFile = Annotated[Path | None, typer.Option("--token-file", help="Write the new token to this file (mode 0600) instead of printing it.")]  # noqa: E501
ServerUrl = Annotated[str | None, typer.Option("--server", help="The URL users connect to, for the token file's name and the instructions. (default: the server's public_url, else ws://<host>:<port>/ws from its settings)")]  # noqa: E501


def load_settings(data_dir: Path | None, config: Path | None) -> Any:
    from cfm_server.config import ConfigError, load_config, unknown_env_warnings

    # As cfm serve does: a misspelled CFM_DATA_DIR would otherwise send the command to
    # the default data directory without a word.
    for warning in unknown_env_warnings():
        typer.echo(f"cfm admin: warning: {warning}", err=True)
    try:
        return load_config(config, {"data_dir": data_dir, "store": "sqlite"})
    except ConfigError as exc:
        raise fail(str(exc)) from None


def owned_data_dir(settings: ServerConfig) -> Path:
    """The data directory the settings name, refused unless this user owns it."""
    directory = settings.resolved_data_dir()
    check_owner(directory)
    return directory


def check_owner(directory: Path) -> None:
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


def full_path(path: Path) -> Path:
    """``path`` from the root, ``..`` folded (symlinks kept: it is the name typed)."""
    import os

    return Path(os.path.abspath(path))


def last_run(settings: Any) -> dict[str, Any]:
    """What the server wrote of its last start (``server.json``): its URL and
    registration as flags and environment made them; empty if there is none."""
    from cfm_server import runfile

    return runfile.read(settings.resolved_data_dir())


def server_url(settings: Any) -> str:
    """The URL people type: ``public_url`` (the settings', else as the last start
    recorded it), else where people on this machine reach the server: as its last start
    recorded it (flags included), else as the settings say."""
    from cfm_server.netaddr import ws_url

    last = last_run(settings)
    for url in (settings.public_url, last.get("public_url")):
        if isinstance(url, str) and url.startswith(("ws://", "wss://")):
            return url
    url = last.get("dial")
    if isinstance(url, str) and url.startswith(("ws://", "wss://")):
        return url
    return ws_url(settings.host, settings.port, tls=settings.tls_cert is not None, dial=True)
