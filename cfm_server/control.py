"""A running server's control socket: what ``cfm admin`` changes without a restart.

``<data dir>/admin.sock``, a Unix socket only the server's user can open (mode 0600 in
the 0700 data directory; the peer's uid is checked too). One JSON object per line in,
one out. The operations: ``set-token``, the account-recovery step of
``cfm admin reset-token``. The CLI makes the token and writes it where the operator
asked first, then sends only its hash, so the token never passes through the server;
the server stores the hash and closes the user's open sessions with 4003 (whoever held
the old token is out, and cannot come back with it). And ``remove-user``: ``cfm admin
remove-user`` while the server runs, which removes the account there and tells its
sessions (``_remove_user``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import sqlite3
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cfm_common import rules
from cfm_server.domain.signin import TOKEN_REPLACED, end_sessions
from cfm_server.store import StoreError

if TYPE_CHECKING:
    from cfm_server.config import ServerConfig
    from cfm_server.hub import Hub
    from cfm_server.state import User
    from cfm_server.store import Store


class AIMemories(Protocol):
    """The server's running AI contacts (``ai_launch.AIContactsRunner``)."""

    def forget_user(self, name: str) -> int: ...


class Server(Protocol):
    """What the control socket reaches of the server (``cfm_server.server.Server``; a
    Protocol, so that this module does not import the server that imports it)."""

    config: ServerConfig
    hub: Hub | None
    store: Store | None
    ai_contacts: AIMemories

    @property
    def data_dir(self) -> Path: ...


log = logging.getLogger(__name__)

SOCKET_FILE = "admin.sock"
MAX_REQUEST = 4096
TIMEOUT_S = 10.0
# Unix socket paths are at most 107 bytes (sun_path); a deeper data dir goes without.
_MAX_PATH = 100


class ControlError(Exception):
    """The running server refused or could not be asked; the message says why."""


async def start_control(server: Server) -> asyncio.Server | None:
    """Listen on ``<data dir>/admin.sock``; None where that cannot be (logged)."""
    path = server.data_dir.absolute() / SOCKET_FILE
    if len(os.fsencode(path)) > _MAX_PATH:
        log.info("no control socket: the data directory's path is too long for one (%s)",
                 path)
        return None
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a dead server's; the data directory's lock says we own it now
    try:
        listener = await asyncio.start_unix_server(
            lambda r, w: _serve(server, r, w), path, limit=MAX_REQUEST)
        os.chmod(path, 0o600)
    except OSError as exc:
        log.warning("no control socket at %s: %s", path, exc.strerror or exc)
        return None
    return listener


def stop_control(listener: asyncio.Server | None, data_dir: Path) -> None:
    if listener is not None:
        listener.close()
        with contextlib.suppress(OSError):
            (data_dir / SOCKET_FILE).unlink()


async def _serve(server: Server, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    try:
        sock = writer.get_extra_info("socket")
        uid = _peer_uid(sock) if sock is not None else None
        if uid is not None and uid not in (0, os.geteuid()):
            reply: dict[str, Any] = {"ok": False, "error": "not the server's user"}
        else:
            async with asyncio.timeout(TIMEOUT_S):
                line = await reader.readline()
                reply = await _handle(server, json.loads(line))
    except (ValueError, TypeError, AttributeError, KeyError):
        reply = {"ok": False, "error": "not a request"}
    except (TimeoutError, ConnectionError, asyncio.LimitOverrunError):
        writer.close()
        return
    try:
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    return int(struct.unpack("3i", creds)[1])


# What each operation says of the server's own AI contacts, which it refuses.
_AI_REFUSALS = {
    "set-token": "cfm serve gives it a fresh token every time it starts, so there is "
                 "nothing to reset",
    "remove-user": "the server runs it itself; stop cfm serve first",
}


async def _handle(server: Server, request: dict[str, Any]) -> dict[str, Any]:
    op, name, token_hash = request.get("op"), request.get("name"), request.get("token_hash")
    if op not in _AI_REFUSALS:
        return {"ok": False, "error": f"unknown operation {op!r}"}
    if not isinstance(name, str) or (op == "set-token" and (
            not isinstance(token_hash, str) or len(token_hash) != 64)):
        what = "a name and a sha256 hex hash" if op == "set-token" else "a name"
        return {"ok": False, "error": f"{op} wants {what}"}
    hub, store = server.hub, server.store
    if hub is None or store is None:
        return {"ok": False, "error": "the server is not started"}
    key = rules.normalize_name(name)
    user = hub.users.get(key)
    if user is None:
        return {"ok": False, "error": f"no user {key!r} on this server; `cfm admin users` "
                                      f"lists them"}
    ai = server.config.ai
    if user.record.bot and ai is not None and key in ai.handles:
        return {"ok": False, "error": f"{key!r} is one of this server's AI contacts: "
                                      f"{_AI_REFUSALS[op]}"}
    if op == "remove-user":
        return _remove_user(hub, store, user, server.ai_contacts)
    record = dataclasses.replace(user.record, token_hash=token_hash)
    try:
        await store.put_user(record)
    except Exception as exc:  # a StoreError: the old token stays
        return {"ok": False, "error": f"the server could not store the new token: {exc}"}
    user.record = record
    closed = end_sessions(user, TOKEN_REPLACED)
    log.warning("the token of %s was replaced by the operator (cfm admin reset-token); "
                "%d open session(s) closed", key, closed)
    return {"ok": True, "name": key, "closed": closed}


def _remove_user(hub: Hub, store: Store, user: User, ai: AIMemories) -> dict[str, Any]:
    """``cfm admin remove-user`` on the running server: the removal is one transaction
    on the server's own connection (``removal.py``, after the open batch's COMMIT),
    then its sessions are told and the user's closed (``Hub.remove_user``). All on the
    event loop without awaiting, so no frame comes between the two."""
    from cfm_server.accounts import AdminError
    from cfm_server.removal import remove_user
    from cfm_server.store.sqlite import SqliteStore

    if not isinstance(store, SqliteStore):
        return {"ok": False, "error": "this server keeps no database to remove it from"}
    key = user.name
    online = [other.name for other in hub.users.values() if other.sessions]
    now = int(time.time() * 1000)
    try:
        done = store.alone(lambda conn: remove_user(conn, key, now, online, recorded=True))
    except (AdminError, StoreError, sqlite3.Error) as exc:
        return {"ok": False, "error": f"the server could not remove {key!r}: {exc}"}
    store.rooms_moved(done.dms)
    closed = hub.remove_user(user)
    # What the AI contacts remember of the old holder is not the next one's either (the
    # CLI drops it from their files; they would write it back from memory).
    forgotten = ai.forget_user(key)
    log.warning("%s was removed by the operator (cfm admin remove-user); %d open "
                "session(s) closed", key, closed)
    return {"ok": True, "name": key, "closed": closed, "archived": list(done.archived_as),
            "forgotten": forgotten}


def request(data_dir: Path, message: dict[str, Any]) -> dict[str, Any]:
    """Send one request to the server running on ``data_dir``; its reply. ControlError
    when there is no server to ask."""
    path = data_dir.absolute() / SOCKET_FILE
    if len(os.fsencode(path)) > _MAX_PATH:
        raise ControlError(f"the data directory's path is too long for a control socket "
                           f"({path})")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT_S)
            sock.connect(os.fsencode(path))
            sock.sendall(json.dumps(message).encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(MAX_REQUEST)
                if not chunk:
                    break
                reply += chunk
    except OSError as exc:
        raise ControlError(f"cannot reach the running server at {path}: "
                           f"{exc.strerror or exc}") from None
    try:
        answer = json.loads(reply)
    except ValueError:
        raise ControlError("the running server gave no answer") from None
    if not isinstance(answer, dict):
        raise ControlError("the running server gave no answer")
    return answer
