"""Small files the SDK keeps between runs: identity tokens and last-seen message state.

A token is a password: its file is written atomically with mode 0600 in a 0700
directory. The default place is one file per server and handle under
``platformdirs.user_data_dir("cfm")``, so the same handle on two servers (or two handles
on one server) never share a token.

A server given as several URLs (the nodes of one cluster) is one server: its files are
kept under its first URL (:func:`cfm_common.servers.primary`), whichever node the client
is on, so a single URL keeps the place it always had and adding nodes after it moves
nothing. A token not found there is looked for under the other URLs (the same cluster
listed in another order before).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from cfm_common import rules
from cfm_common.servers import Servers, primary

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def data_dir() -> Path:
    """cfm's per-user data directory (honours ``XDG_DATA_HOME`` on Linux)."""
    import platformdirs  # imported here: `import cfm_common` stays cheap

    return Path(platformdirs.user_data_dir("cfm", appauthor=False))


def server_key(url: str) -> str:
    """A file-name-safe key for a server URL: ``ws://Host:7878/ws`` → ``host_7878_ws``."""
    parts = urlsplit(url)
    host = (parts.hostname or "local").lower()
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    path = parts.path.strip("/")
    key = f"{host}_{port}" + (f"_{path}" if path else "")
    return _UNSAFE.sub("_", key)[:120]


def default_token_file(url: Servers, name: str) -> Path:
    """Where the token of ``name`` on the server at ``url`` (one URL or several) lives."""
    return data_dir() / "tokens" / server_key(primary(url)) / \
        f"{rules.normalize_name(name)}.token"


def read_any_token(urls: Iterable[str], name: str) -> str | None:
    """The first token of ``name`` found in the default files of ``urls``, or None."""
    for url in urls:
        token = read_token(default_token_file(url, name))
        if token is not None:
            return token
    return None


def read_token(path: Path) -> str | None:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the token file %s: %s", path, exc)
        return None
    return token or None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only (0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)  # mkstemp already uses 0600; be explicit about it
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_token(path: Path, token: str) -> None:
    write_private(path, token + "\n")


# --- last-seen state -----------------------------------------------------------------

SeenState = dict[str, tuple[int, str | None]]


def read_seen(path: Path) -> SeenState:
    """Room → (last seq handed to the application, epoch); empty if absent or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring the unreadable seen file %s: %s", path, exc)
        return {}
    out: SeenState = {}
    rooms = data.get("rooms") if isinstance(data, dict) else None
    for room, entry in (rooms or {}).items():
        seq = entry.get("seq") if isinstance(entry, dict) else None
        epoch = entry.get("epoch")
        if isinstance(room, str) and isinstance(seq, int) and seq >= 0:
            out[room] = (seq, epoch if isinstance(epoch, str) else None)
    return out


def write_seen(path: Path, state: SeenState) -> None:
    rooms = {room: {"seq": seq, "epoch": epoch} for room, (seq, epoch) in sorted(state.items())}
    write_private(path, json.dumps({"version": 1, "rooms": rooms}, indent=1) + "\n")
