"""Moving house: a stopped single-node server's data into an empty Redis.

Everything the single-node store keeps is copied as cluster mode keeps it:

- the shared records (users with their token hashes, contacts and blocks, lasting
  memberships, read marks, invite uses) into the records hash (records.py), with an
  empty log under a new epoch: a node loads the snapshot first, so nothing is missing;
- the data dir's files every node needs: the key that signs invite codes (so codes
  made before the move still work) and the AI personas' memories;
- every room's messages into its stream under the same seqs, its meta with the same seq
  and the **same epoch**, and the dedupe entries of (sender, client id): a client that
  resumes after the move asks ``join{since}`` of the epoch it knew, gets no reset and
  no gap, and a retry of a say made before the move is answered with the original ack.

The frames are the bytes single-node would send (``encode_msg``), private blocking's
``hidden`` mark included; a changed message's current state (edited text, reactions,
a tombstone), the moderators and the mentions (in the frames) as a node keeps them
(append.lua, records.py). Writes go out in pipelines of ``BATCH`` commands.

Refused: a Redis that already holds cfm keys (the copy would merge two servers' data), or
one older than 7.0. The data dir is only read.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from cfm_common.codec import encode_msg
from cfm_common.frames import StoredMsg
from cfm_common.rules import ChangeKind
from cfm_server.cluster import keys, records
from cfm_server.cluster.startup import persistence_warnings, version_problem
from cfm_server.config import redact_url
from cfm_server.store.base import Store

BATCH = 1000  # commands per pipeline
PAGE = 1000  # messages read from the store at a time
ORIGIN = "migrated"  # the origin tag of copied messages (no session sent them here)


class MigrateError(Exception):
    """The copy cannot be made; the message says why and what to do."""


def check_url(url: str) -> str:
    """``url`` if it is a Redis URL this can use, else MigrateError naming what is wrong
    (a database that is no number went to database 0 without a word)."""
    from urllib.parse import urlsplit

    from cfm_server.config import redis_url_problem

    parts = urlsplit(url)
    if parts.scheme.endswith("+cluster"):
        # It checks emptiness with SCAN and writes through one connection: one master's.
        raise MigrateError("migrating into a Redis Cluster is not supported yet: migrate into "
                           "one Redis, then move its keys into the cluster (redis-cli "
                           "--cluster import)")
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise MigrateError(f"--to takes a Redis URL such as redis://127.0.0.1:6379/0, "
                           f"not {redact_url(url)!r}")
    problem = redis_url_problem(url)
    if problem is not None:
        raise MigrateError(problem)
    return url


@dataclass(slots=True)
class Copied:
    users: int = 0
    contacts: int = 0
    memberships: int = 0
    reads: int = 0
    invites: int = 0
    moderators: int = 0
    rooms: int = 0
    messages: int = 0
    invite_key: bool = False
    ai_memories: int = 0
    redis_version: str = ""
    warnings: list[str] = field(default_factory=list)


async def check_target(client: Redis, url: str) -> tuple[str, list[str]]:
    """Redis's version and what to warn about; MigrateError if it cannot take the copy."""
    try:
        info = await client.info("server")
    except Exception as exc:  # connection refused, auth, wrong scheme...
        raise MigrateError(f"cannot reach Redis at {redact_url(url)}: {exc}") from exc
    version = str(info.get("redis_version", "0"))
    problem = version_problem(version, redact_url(url))
    if problem is not None:
        raise MigrateError(problem)
    async for key in client.scan_iter(match=f"{keys.PREFIX}*", count=1000):
        name = key.decode(errors="replace") if isinstance(key, bytes) else key
        raise MigrateError(
            f"Redis at {redact_url(url)} already holds cfm data (e.g. {name}): migrate into an "
            "empty database, such as another database number (redis://HOST:PORT/1), or empty "
            "this one first if it holds nothing you need")
    try:
        config = await client.config_get("append*")
    except Exception:
        config = {}  # CONFIG is often disabled on managed Redis: nothing to say then
    settings = {(k.decode() if isinstance(k, bytes) else str(k)):
                (v.decode() if isinstance(v, bytes) else str(v)) for k, v in config.items()}
    warnings = persistence_warnings(settings, redact_url(url))
    return version, warnings


class _Writer:
    """Commands queued into pipelines of BATCH."""

    def __init__(self, client: Redis) -> None:
        self._pipe = client.pipeline(transaction=False)
        self._queued = 0

    async def add(self, *args: Any) -> None:
        self._pipe.execute_command(*args)
        self._queued += 1
        if self._queued >= BATCH:
            await self.flush()

    async def flush(self) -> None:
        if self._queued:
            await self._pipe.execute()
            self._queued = 0


async def migrate(store: Store, url: str, *, data_dir: Path | None = None,
                  progress: Callable[[str], None] | None = None) -> Copied:
    """Copy ``store`` (opened, and not served) and the files of ``data_dir`` that every
    node needs into the Redis at ``url``."""
    say = progress or (lambda _text: None)
    client = Redis.from_url(check_url(url), decode_responses=False, socket_timeout=30,
                            socket_connect_timeout=5)
    try:
        copied = Copied()
        copied.redis_version, copied.warnings = await check_target(client, url)
        writer = _Writer(client)
        await _copy_records(store, writer, copied)
        if data_dir is not None:
            await _copy_files(data_dir, writer, copied)
        say(f"{copied.users} users and their records copied; copying rooms…")
        for room in store.load_rooms():
            await _copy_room(store, writer, room.room, room.seq,
                             room.epoch or secrets.token_hex(8), copied)
        await writer.flush()
        return copied
    finally:
        await client.aclose()


async def _copy_records(store: Store, writer: _Writer, copied: Copied) -> None:
    target = keys.state_records()
    for user in store.load_users():
        await writer.add("HSET", target, records.user_key(user.name), records.user_value(user))
        copied.users += 1
    for contact in store.load_contacts():
        if contact.in_list or contact.blocked:
            await writer.add("HSET", target, records.contact_key(contact.owner, contact.name),
                             records.contact_value(contact))
            copied.contacts += 1
    for room, user in store.load_members():
        await writer.add("HSET", target, records.member_key(room, user), b"")
        copied.memberships += 1
    for user, room, seq in store.load_reads():
        await writer.add("HSET", target, records.read_key(user, room), records.count_value(seq))
        copied.reads += 1
    for room, name, creator in store.load_moderators():
        await writer.add("HSET", target, records.moderator_key(room, name),
                         records.moderator_value(creator))
        copied.moderators += 1
    for nonce, used in store.load_invite_uses().items():
        await writer.add("HSET", target, records.invite_key(nonce), records.count_value(used))
        copied.invites += 1
    # The log starts empty, under an epoch of its own: nodes load the snapshot first.
    await writer.add("HSET", keys.room_meta(keys.STATE), "seq", 0,
                     "epoch", secrets.token_hex(8))


async def _copy_files(data_dir: Path, writer: _Writer, copied: Copied) -> None:
    from cfm_server.ai.memory import memory_file
    from cfm_server.invites import KEY_FILE

    key_file = data_dir / KEY_FILE
    if key_file.is_file():
        await writer.add("SET", keys.INVITE_KEY, key_file.read_bytes())
        copied.invite_key = True
    suffix = memory_file(Path(), "x").name.removeprefix("x")  # ".memory.json"
    for path in sorted((data_dir / "ai").glob(f"*{suffix}")):
        await writer.add("SET", keys.ai_memory(path.name.removesuffix(suffix)), path.read_bytes())
        copied.ai_memories += 1


async def _copy_room(store: Store, writer: _Writer, room: str, seq: int, epoch: str,
                     copied: Copied) -> None:
    log_key, ids_key, chg_key = keys.room_log(room), keys.room_ids(room), keys.room_changes(room)
    after = 0
    edits: dict[int, list[int]] = {}  # a message → its edit entries (for a later delete)
    while True:
        page = store.history_after(room, after, PAGE)
        if not page:
            break
        for m in page:
            # The frame as its sender sees it, without the current state of a changed
            # message, which goes where append.lua keeps it (keys.room_changes); the
            # hidden mark (private blocking) beside it, for the node that delivers to the
            # blocker to send the placeholder.
            frame = encode_msg(replace(m, hidden=None, edited=None, reactions=None))
            if m.deleted:  # a tombstone: not in the stream, as a delete on a node leaves it
                fields = [f"d:{m.seq}", frame, f"o:{m.seq}", ORIGIN]
                if m.hidden:
                    fields += [f"h:{m.seq}", "1"]
                await writer.add("HSET", chg_key, *fields)
            else:
                fields = ["m", frame, "o", ORIGIN]
                if m.hidden:
                    fields += ["h", "1"]
                await writer.add("XADD", log_key, f"{m.seq}-0", *fields)
                await _copy_state(writer, chg_key, m, edits)
            if m.id is not None:
                await writer.add("HSET", ids_key, f"{m.sender}:{m.id}", f"{m.seq}:{m.ts}")
            copied.messages += 1
        after = page[-1].seq
    for target, seqs in edits.items():
        await writer.add("HSET", chg_key, f"x:{target}", "".join(f"{s} " for s in seqs))
    # The same seq and epoch as single-node: resuming clients see neither gap nor reset.
    await writer.add("HSET", keys.room_meta(room), "seq", max(seq, after), "epoch", epoch)
    copied.rooms += 1


async def _copy_state(writer: _Writer, chg_key: str, m: StoredMsg,
                      edits: dict[int, list[int]]) -> None:
    """A message's current state (edited text, reactions), and for an edit entry the
    copy without its text that a later delete of its target leaves (append.lua)."""
    if m.edited is not None:
        await writer.add("HSET", chg_key, f"t:{m.seq}", m.text, f"e:{m.seq}", m.edited)
    if m.reactions:
        marks = "".join(f"{name} {r.emoji}\n" for r in m.reactions for name in r.names)
        await writer.add("HSET", chg_key, f"r:{m.seq}", marks)
    if m.change == ChangeKind.EDIT and m.target is not None and m.text:
        edits.setdefault(m.target, []).append(m.seq)
        await writer.add("HSET", chg_key, f"k:{m.seq}",
                         encode_msg(replace(m, hidden=None, text="")))
