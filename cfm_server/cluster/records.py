"""The shared records' keys and values (state.py keeps them; this says what they mean).

One record per fact, its key naming the fact and its value holding the rest (msgpack,
or a number in ASCII where a script counts it):

    u:<user>            [token_hash, display, psm, status, bot, created_ms]
    c:<owner>:<name>    [in_list, blocked]        (no record: neither)
    m:<room>:<user>     b""                       a lasting membership, DM rooms included
    r:<user>:<room>     b"<seq>"                  the user's read mark in the room
    i:<nonce>           b"<uses>"                 an invite's sign-ups so far (counted)
    o:<room>:<user>     b"1" (creator) / b""      a moderator of a group room

Handles hold no ``:`` and no space, room names no space (a DM room is ``dm:<a>:<b>``),
so every key splits back into its parts. The same facts the single-node store keeps
(store/base.py), so the records map one to one onto its rows, and a migration is a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from cfm_server.store.base import ContactRecord, UserRecord

USER, CONTACT, MEMBER, READ, INVITE, MODERATOR = "u", "c", "m", "r", "i", "o"


def user_key(name: str) -> str:
    return f"{USER}:{name}"


def contact_key(owner: str, name: str) -> str:
    return f"{CONTACT}:{owner}:{name}"


def member_key(room: str, user: str) -> str:
    return f"{MEMBER}:{room}:{user}"


def read_key(user: str, room: str) -> str:
    return f"{READ}:{user}:{room}"


def invite_key(nonce: str) -> str:
    return f"{INVITE}:{nonce}"


def moderator_key(room: str, user: str) -> str:
    return f"{MODERATOR}:{room}:{user}"


def moderator_value(creator: bool) -> bytes:
    return b"1" if creator else b""


def user_value(user: UserRecord) -> bytes:
    return msgpack.packb([user.token_hash, user.display, user.psm, user.status, user.bot,
                          user.created_ms], use_bin_type=True)


def user_guard(value: bytes) -> bytes:
    """The start of a user record up to and including its token hash: what a node's
    ``put`` of a user requires Redis to hold still (``SharedState.put``'s guard)."""
    unpacker = msgpack.Unpacker()
    unpacker.feed(value)
    unpacker.read_array_header()
    unpacker.skip()
    return value[:unpacker.tell()]


def contact_value(contact: ContactRecord) -> bytes:
    return msgpack.packb([contact.in_list, contact.blocked], use_bin_type=True)


def count_value(n: int) -> bytes:
    return b"%d" % n


@dataclass(slots=True)
class Records:
    """Every shared record, sorted by kind: what a node loads at start (and what the
    single-node store's ``load_*`` give)."""
    users: dict[str, UserRecord]
    contacts: list[ContactRecord]
    members: list[tuple[str, str]]  # (room, user)
    reads: list[tuple[str, str, int]]  # (user, room, seq)
    invite_uses: dict[str, int]
    moderators: list[tuple[str, str, bool]]  # (room, user, creator)


def parse(records: dict[str, bytes]) -> Records:
    """The snapshot (record key → value) by kind. ValueError names a record that is not
    one of ours."""
    out = Records({}, [], [], [], {}, [])
    for key, value in records.items():
        kind, _, rest = key.partition(":")
        try:
            if kind == USER:
                token_hash, display, psm, status, bot, created = msgpack.unpackb(value)
                out.users[rest] = UserRecord(rest, token_hash, display, psm, status,
                                             bool(bot), int(created))
            elif kind == CONTACT:
                owner, name = rest.split(":")
                in_list, blocked = msgpack.unpackb(value)
                out.contacts.append(ContactRecord(owner, name, bool(in_list), bool(blocked)))
            elif kind == MEMBER:
                room, _, user = rest.rpartition(":")
                if not room or not user:
                    raise ValueError("no room or no user")
                out.members.append((room, user))
            elif kind == READ:
                user, _, room = rest.partition(":")
                if not room or not user:
                    raise ValueError("no room or no user")
                out.reads.append((user, room, int(value)))
            elif kind == MODERATOR:
                room, _, user = rest.rpartition(":")
                if not room or not user:
                    raise ValueError("no room or no user")
                out.moderators.append((room, user, value == b"1"))
            elif kind == INVITE:
                out.invite_uses[rest] = int(value)
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise ValueError(f"shared record {key!r} is not one of cfm's: {exc}") from exc
    return out
