"""What ``cfm admin``'s account tools show and the rules they apply, for every backend.

A single node's data dir (``cfm_server/admin.py``, SQLite) and a cluster's Redis
(``cfm_server/cluster/admin.py``) differ in where they read and write; what a valid
handle is, which accounts can be reset, what a new account holds and what each command
answers are here, once.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Collection
from dataclasses import asdict, dataclass

from cfm_common import rules
from cfm_server.store.base import UserRecord

ARCHIVE_PREFIX = "archived:"
# A fresh token, as Hub.sign_in and Hub.provision_bot make one: 256 random bits.
TOKEN_BYTES = 32


class AdminError(Exception):
    """An operation the operator asked for cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    display: str
    kind: str  # "person", "bot" or "ai" (one of the server's own AI contacts)
    status: str  # the status last chosen
    created: str  # ISO date (UTC)
    created_ms: int
    rooms: int  # group rooms joined
    dms: int  # direct conversations
    # messages sent (nudges included), wherever they are; None: not counted (a cluster's
    # Redis, where it would mean reading every room's stream)
    messages: int | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def iso_date(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).date().isoformat()


def user_info(record: UserRecord, personas: Collection[str], rooms: int, dms: int,
              messages: int | None) -> UserInfo:
    """One row of ``cfm admin users``, from a stored user and its counts."""
    kind = ("ai" if record.name in personas else "bot") if record.bot else "person"
    return UserInfo(record.name, record.display, kind, record.status,
                    iso_date(record.created_ms), record.created_ms, rooms, dms, messages)


# --- the rules every backend applies (a data dir's database, a cluster's Redis) --------


def check_handle(name: str) -> str:
    """The canonical handle of ``name``; AdminError if it is not a valid one."""
    if not rules.is_valid_name(name):
        raise AdminError(f"{name!r} is not a valid handle (2-24 of A-Z a-z 0-9 _ . -, "
                         f"starting with a letter or digit)")
    return rules.normalize_name(name)


def no_such_user(key: str) -> AdminError:
    return AdminError(f"no user {key!r} on this server; `cfm admin users` lists them")


def check_resettable(key: str, bot: bool, personas: Collection[str]) -> None:
    """The server's own AI contacts are refused: it gives each a fresh token every time
    it starts (a cluster: every time a node takes them over), so there is nothing to
    recover."""
    if bot and key in personas:
        raise AdminError(f"{key!r} is one of this server's AI contacts: cfm serve gives it a "
                         f"fresh token every time it starts, so there is nothing to reset")


def new_user(name: str, display: str | None, now_ms: int, token: str) -> UserRecord:
    """The record of a person's account made by the operator (add-user), after the
    rules: a valid handle, a display name within bounds. Whether the handle is free is
    the backend's to say (``already_exists``)."""
    from cfm_server.domain.signin import hash_token

    key = check_handle(name)
    display = name if display is None else display
    if len(display) > rules.MAX_DISPLAY:
        raise AdminError(f"the display name is longer than {rules.MAX_DISPLAY} characters")
    return UserRecord(key, hash_token(token), display, "", "online", False, now_ms)


def already_exists(key: str) -> AdminError:
    return AdminError(f"{key!r} already exists; `cfm admin reset-token {key}` gives it a "
                      f"new token")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


@dataclass(frozen=True, slots=True)
class Removal:
    """What removing a user deletes, keeps and archives (a plan, or what was done)."""

    name: str
    memberships: int
    contacts: int  # entries on its list and on others' lists (blocks included)
    reads: int
    # its messages in group rooms, where they stay (None: not counted, on a cluster)
    messages_kept: int | None
    dms: tuple[str, ...]  # direct conversations moved to archived:<ms>:<room>
    dm_messages: int  # messages (both users') in those conversations
    archived_as: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Stats:
    users: int
    persons: int
    bots: int
    rooms: int  # group rooms
    dms: int  # direct conversations
    archived: int  # conversations archived by remove-user
    messages: int
    db_bytes: int  # the database with its -wal and -shm files; a cluster: Redis's memory

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
