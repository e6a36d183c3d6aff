"""``cfm admin``'s account tools on a cluster's Redis, while the nodes run.

The rules are those of a single node's (``cfm_server/admin.py``: a valid handle, a free
one for ``add-user``, no reset of the server's own AI contacts, what ``remove-user``
deletes, keeps and archives); what differs is where they are applied:

- every change to an account is a change of the shared records (``state_change.lua``,
  the same script the nodes use), so it is logged and every running node applies it in
  order, exactly once (``cluster/apply.py``). A node that applies a user's new token
  hash, or the user's removal, closes that user's sessions (``ClusterNode._on_change``),
  as a single node's control socket does for ``reset-token``; a removal is also told to
  the node's sessions that could see the user (``domain/removal.py``);
- reads go in pages (``HSCAN`` of the records hash, ``SCAN`` of the room keys, ``COUNT``
  1000), never ``KEYS``, so Redis keeps serving the nodes between two pages.

``remove-user`` moves each direct conversation of the user (its four keys) to the room
``archived:<ms>:dm:…`` with ``DUMP``/``RESTORE``, which works across the slots of a
Redis Cluster, where ``RENAME`` does not.

Every function opens its own connection and raises OSError when Redis cannot be reached.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

import msgpack

from cfm_common import rules
from cfm_server import accounts
from cfm_server.accounts import Removal, Stats, UserInfo
from cfm_server.cluster import keys, records, scripts, state
from cfm_server.cluster.broker import new_epoch
from cfm_server.store.base import UserRecord

PAGE = 1000  # records or keys per HSCAN / SCAN call
ORIGIN = "admin"  # the log entries' origin: no node's, so every node applies them
META_PATTERN = f"{keys.PREFIX}{{*}}:meta"


def _connected(url: str) -> contextlib.AbstractAsyncContextManager[Any]:
    from cfm_server.cluster.rediscluster import one_shot

    return one_shot(url, timeout=30)


async def _pages(client: Any, key: str, match: str) -> AsyncIterator[dict[bytes, bytes]]:
    """The fields of the hash ``key`` matching ``match`` (a glob), a page at a time."""
    cursor: Any = 0
    while True:
        cursor, page = await client.hscan(key, cursor, match=match, count=PAGE)
        if page:
            yield page
        if int(cursor) == 0:
            return


async def _records(client: Any, match: str) -> AsyncIterator[tuple[str, bytes]]:
    """The shared records whose key matches ``match``."""
    async for page in _pages(client, keys.state_records(), match):
        for key, value in page.items():
            yield key.decode(), value


async def _rooms(client: Any) -> list[str]:
    """Every room with a meta key in Redis (not the shared records' log)."""
    head, tail = len(keys.PREFIX) + 1, -len("}:meta")
    names = set()
    async for key in client.scan_iter(match=META_PATTERN, count=PAGE):
        name = key.decode()[head:tail]
        if name != keys.STATE and keys.room_meta(name) == key.decode():
            names.add(name)
    return sorted(names)


async def _user(client: Any, name: str) -> UserRecord:
    key = accounts.check_handle(name)
    value = await client.hget(keys.state_records(), records.user_key(key))
    if value is None:
        raise accounts.no_such_user(key)
    return records.parse({records.user_key(key): value}).users[key]


async def _change(client: Any, op: str, key: str, value: bytes = b"") -> state.Written:
    """One change of the shared records through the nodes' own script: logged, so that
    every running node applies it."""
    reply = await client.eval(
        scripts.STATE_CHANGE.source, 3, keys.room_meta(keys.STATE),
        keys.room_log(keys.STATE), keys.state_records(), op, key, value, b"", new_epoch(),
        keys.room_channel(keys.STATE), ORIGIN, b"%d" % state.LOG_KEEP)
    return state.Written(int(reply[0]), int(reply[1]),
                         reply[2] if isinstance(reply[2], bytes) else None)


async def personas(url: str) -> set[str]:
    """The AI contacts the cluster has run: those with a memory in Redis."""
    prefix = keys.ai_memory("")
    async with _connected(url) as client:
        return {key.decode()[len(prefix):]
                async for key in client.scan_iter(match=prefix + "*", count=PAGE)}


# --- users, stats -----------------------------------------------------------------------


async def list_users(url: str, persona_names: Collection[str] = ()) -> list[UserInfo]:
    """Every user, by handle. Messages sent are not counted (None): that would mean
    reading every room's stream."""
    async with _connected(url) as client:
        users = records.parse(dict([r async for r in _records(client, "u:*")])).users
        rooms: dict[str, int] = {}
        dms: dict[str, int] = {}
        async for key, _ in _records(client, "m:*"):
            room, _, name = key[2:].rpartition(":")
            counts = dms if room.startswith(rules.DM_PREFIX) else rooms
            counts[name] = counts.get(name, 0) + 1
    return [accounts.user_info(users[name], persona_names, rooms.get(name, 0),
                               dms.get(name, 0), None) for name in sorted(users)]


async def stats(url: str) -> Stats:
    """Users, rooms and messages (each room's stream length), and Redis's memory in use
    (``db_bytes``)."""
    async with _connected(url) as client:
        users = bots = 0
        async for _, value in _records(client, "u:*"):
            users += 1
            bots += bool(msgpack.unpackb(value)[4])
        names = await _rooms(client)
        messages = 0
        for start in range(0, len(names), PAGE):
            pipe = client.pipeline(transaction=False)
            for name in names[start:start + PAGE]:
                pipe.xlen(keys.room_log(name))
            messages += sum(await pipe.execute())
        memory = await client.info("memory")
    return Stats(
        users=users, persons=users - bots, bots=bots,
        rooms=sum(rules.is_group_room(r) for r in names),
        dms=sum(r.startswith(rules.DM_PREFIX) for r in names),
        archived=sum(r.startswith(accounts.ARCHIVE_PREFIX) for r in names),
        messages=messages, db_bytes=int(memory.get("used_memory", 0)),
    )


# --- reset-token, add-user ----------------------------------------------------------------


async def reset_token(url: str, name: str, persona_names: Collection[str], *,
                      deliver: Callable[[str], None]) -> tuple[str, str, int]:
    """A fresh token for ``name``; (handle, token, the sessions it had open). Every node
    applies the new hash and closes the user's sessions it holds. ``deliver(token)``
    runs before the change: if it raises, nothing changes."""
    async with _connected(url) as client:
        user = await _user(client, name)
        accounts.check_resettable(user.name, user.bot, persona_names)
        token = accounts.new_token()
        deliver(token)
        from cfm_server.domain.signin import hash_token

        user.token_hash = hash_token(token)
        # Counted before the change: the nodes start closing them once it is made.
        sessions = await client.hvals(keys.presence_user(user.name))
        await _change(client, "put", records.user_key(user.name), records.user_value(user))
    return user.name, token, sum(int(n) for n in sessions)


async def add_user(url: str, name: str, display: str | None, now_ms: int, *,
                   deliver: Callable[[str], None]) -> tuple[str, str]:
    """Create a person's account; (handle, token). The handle is claimed as a sign-up
    claims it (``create``): of the two, one gets it."""
    token = accounts.new_token()
    record = accounts.new_user(name, display, now_ms, token)
    key = records.user_key(record.name)
    async with _connected(url) as client:
        # A node's first start makes #lobby: without it, this is likely the wrong Redis
        # (or database number), where an account would be made for no node to see.
        if not await client.exists(keys.room_meta(keys.STATE), keys.room_meta(rules.LOBBY)):
            raise accounts.AdminError("that Redis holds no cfm cluster (no node has started "
                                      "on it); check --redis, its database number too")
        if await client.hexists(keys.state_records(), key):
            raise accounts.already_exists(record.name)
        deliver(token)
        if (await _change(client, "create", key, records.user_value(record))).refused:
            raise accounts.already_exists(record.name)
    return record.name, token


# --- remove-user ----------------------------------------------------------------------


class _Found:
    """The records and rooms removing one user touches."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.memberships: list[str] = []
        self.contacts: list[str] = []
        self.reads: list[str] = []
        self.moderators: list[str] = []
        self.dms: set[str] = set()


async def _find(client: Any, name: str) -> _Found:
    found = _Found(name)
    for pattern, into in ((f"m:*:{name}", found.memberships), (f"c:{name}:*", found.contacts),
                          (f"c:*:{name}", found.contacts), (f"r:{name}:*", found.reads),
                          (f"o:*:{name}", found.moderators)):
        async for key, _ in _records(client, pattern):
            if _names(key, name):
                into.append(key)
    found.contacts = sorted(set(found.contacts))  # c:<name>:<name> would be found twice
    for key in found.memberships:
        room = key[2:].rpartition(":")[0]
        if name in (rules.dm_members(room) or ()):
            found.dms.add(room)
    async for key in client.scan_iter(match=keys.room_meta(rules.DM_PREFIX + "*"), count=PAGE):
        room = key.decode()[len(keys.PREFIX) + 1:-len("}:meta")]
        if name in (rules.dm_members(room) or ()):
            found.dms.add(room)
    return found


def _names(key: str, name: str) -> bool:
    """Whether the record ``key`` is about ``name`` (the glob found a candidate)."""
    kind, _, rest = key.partition(":")
    if kind == records.CONTACT:
        return name in rest.split(":")
    if kind == records.READ:
        return rest.partition(":")[0] == name
    return rest.rpartition(":")[2] == name  # m: and o:, whose room may hold ':'


async def plan_removal(url: str, name: str) -> Removal:
    async with _connected(url) as client:
        return await _plan(client, name)


async def _plan(client: Any, name: str) -> Removal:
    user = await _user(client, name)
    found = await _find(client, user.name)
    dms = tuple(sorted(found.dms))
    pipe = client.pipeline(transaction=False)
    for room in dms:
        pipe.xlen(keys.room_log(room))
    return Removal(name=user.name, memberships=len(found.memberships),
                   contacts=len(found.contacts), reads=len(found.reads), messages_kept=None,
                   dms=dms, dm_messages=sum(await pipe.execute()) if dms else 0)


async def remove_user(url: str, name: str, now_ms: int) -> Removal:
    """Delete ``name`` and free its handle (cfm_server/admin.py says what goes). The
    user's record goes first: every node then closes its sessions and forgets it, its
    memberships and its direct conversations; the other records follow, then the
    conversations are archived and the user's dedupe entries dropped (a retry of theirs
    must not be taken for one of the next holder's messages)."""
    async with _connected(url) as client:
        plan = await _plan(client, name)
        key = plan.name
        found = await _find(client, key)
        await _change(client, "delete", records.user_key(key))
        doomed = [*found.memberships, *found.contacts, *found.reads, *found.moderators]
        for room in plan.dms:  # the other user's membership and read mark go too
            for member in rules.dm_members(room) or ():
                doomed += [records.member_key(room, member), records.read_key(member, room)]
        for record_key in dict.fromkeys(doomed):
            await _change(client, "delete", record_key)
        archived = [archive for room in plan.dms
                    if (archive := await _archive(client, room, now_ms)) is not None]
        await _forget_in_rooms(client, key)
    return Removal(**{**_fields(plan), "archived_as": tuple(archived)})


def _fields(removal: Removal) -> dict[str, Any]:
    return {f: getattr(removal, f) for f in Removal.__dataclass_fields__}


async def _archive(client: Any, room: str, now_ms: int) -> str | None:
    """Move a direct conversation's keys to ``archived:<ms>:<room>``; the archive's
    name, or None when it held no message (its keys are deleted all the same)."""
    archive = f"{accounts.ARCHIVE_PREFIX}{now_ms}:{room}"
    names = (keys.room_meta, keys.room_log, keys.room_ids, keys.room_changes)
    kept = await client.exists(keys.room_log(room))
    for name in names:
        dumped = await client.dump(name(room))
        if dumped is not None and kept:
            await client.restore(name(archive), 0, dumped, replace=True)
    await client.delete(*(name(room) for name in names))
    return archive if kept else None


async def _forget_in_rooms(client: Any, name: str) -> None:
    """Drop ``name``'s entries from every room's dedupe hash (``<sender>:<id>``: a retry
    of theirs must not be taken for one of the next holder's messages) and its
    reactions from the room's changed messages (``forget_reactions.lua``)."""
    line = name.encode() + b" "
    for room in await _rooms(client):
        ids, chg = keys.room_ids(room), keys.room_changes(room)
        async for page in _pages(client, ids, f"{name}:*"):
            await client.hdel(ids, *page)
        async for page in _pages(client, chg, "r:*"):
            fields = [f for f, v in page.items() if v.startswith(line) or b"\n" + line in v]
            if fields:
                await client.eval(scripts.FORGET_REACTIONS.source, 1, chg, name, *fields)
