"""``MemoryStore``: the ``Store`` in plain dicts, for tests and throw-away servers.

Every write is applied at once and returns an already-completed Commit, so a hub on a
MemoryStore behaves like one on SQLite whose commits are instant. It checks what the
SQLite store checks (gapless seq per room, one message per (sender, client id)) so a hub
bug shows up the same way on both.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Collection, Iterable, Sequence

from cfm_common.frames import Reaction, StoredMsg
from cfm_common.rules import ChangeKind
from cfm_server.store.base import (
    Commit,
    ContactRecord,
    RoomRecord,
    Store,
    StoreError,
    UserRecord,
)
from cfm_server.store.searchwords import parse_position, words_of


def _done(error: StoreError | None = None) -> Commit:
    future: Commit = asyncio.get_running_loop().create_future()
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
    return future


class MemoryStore(Store):
    """Keeps everything in memory; ``open`` and ``close`` keep the data (it has no file)."""

    def __init__(self) -> None:
        self._closed = False
        self._users: dict[str, UserRecord] = {}
        self._epochs: dict[str, str] = {}
        self._members: dict[str, set[str]] = {}
        self._contacts: dict[tuple[str, str], ContactRecord] = {}
        self._reads: dict[tuple[str, str], int] = {}
        self._invite_uses: dict[str, int] = {}
        # A room's messages sit at index seq - 1: the sequence is gapless and starts at 1.
        # Retention leaves None where it deleted one.
        self._messages: dict[str, list[StoredMsg | None]] = {}
        # (sender, client id) → (room, seq): a retry finds the message in its current state.
        self._by_client_id: dict[tuple[str, str], tuple[str, int]] = {}
        # (room, seq) → (name, emoji) in the order they reacted (schema v4's reactions).
        self._reactions: dict[tuple[str, int], list[tuple[str, str]]] = {}
        self._mentions: set[tuple[str, int, str]] = set()  # (room, seq, name)
        self._moderators: dict[tuple[str, str], bool] = {}  # (room, name) → creator
        # Every message in the order it was stored, as (room, seq): search's order, and
        # its cursor is the position here plus one.
        self._stored_order: list[tuple[str, int]] = []

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        self._closed = False

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        self._closed = True

    # --- start-up snapshot ------------------------------------------------------------

    def load_users(self) -> Iterable[UserRecord]:
        return [dataclasses.replace(user) for user in self._users.values()]

    def load_rooms(self) -> Iterable[RoomRecord]:
        rooms = [
            RoomRecord(room, len(self._messages.get(room, ())), epoch)
            for room, epoch in self._epochs.items()
        ]
        rooms += [RoomRecord(room, len(msgs), "") for room, msgs in self._messages.items()
                  if msgs and room not in self._epochs]
        return rooms

    def load_members(self) -> Iterable[tuple[str, str]]:
        return [(room, user) for room, users in self._members.items() for user in users]

    def load_contacts(self) -> Iterable[ContactRecord]:
        return [dataclasses.replace(contact) for contact in self._contacts.values()]

    def load_reads(self) -> Iterable[tuple[str, str, int]]:
        return [(user, room, seq) for (user, room), seq in self._reads.items()]

    def load_invite_uses(self) -> dict[str, int]:
        return dict(self._invite_uses)

    def load_moderators(self) -> Iterable[tuple[str, str, bool]]:
        return [(room, name, creator) for (room, name), creator in self._moderators.items()]

    # --- writes ----------------------------------------------------------------------

    def _closed_error(self) -> StoreError | None:
        return StoreError("the store is closed") if self._closed else None

    def put_user(self, user: UserRecord) -> Commit:
        if error := self._closed_error():
            return _done(error)
        # A copy: the caller may keep mutating its record, the store keeps what was written.
        self._users[user.name] = dataclasses.replace(user)
        return _done()

    def put_room(self, room: RoomRecord) -> Commit:
        if error := self._closed_error():
            return _done(error)
        self._epochs[room.room] = room.epoch
        return _done()

    def add_member(self, room: str, user: str) -> Commit:
        if error := self._closed_error():
            return _done(error)
        self._members.setdefault(room, set()).add(user)
        return _done()

    def remove_member(self, room: str, user: str) -> Commit:
        if error := self._closed_error():
            return _done(error)
        users = self._members.get(room)
        if users is not None:
            users.discard(user)
            if not users:
                del self._members[room]
        return _done()

    def put_contact(self, contact: ContactRecord) -> Commit:
        if error := self._closed_error():
            return _done(error)
        key = (contact.owner, contact.name)
        if contact.in_list or contact.blocked:
            self._contacts[key] = dataclasses.replace(contact)
        else:
            self._contacts.pop(key, None)
        return _done()

    def count_invite_use(self, nonce: str) -> Commit:
        if error := self._closed_error():
            return _done(error)
        self._invite_uses[nonce] = self._invite_uses.get(nonce, 0) + 1
        return _done()

    def set_read(self, user: str, room: str, seq: int) -> Commit:
        if error := self._closed_error():
            return _done(error)
        self._reads[(user, room)] = seq
        return _done()

    def append(self, msg: StoredMsg) -> Commit:
        if error := self._closed_error():
            return _done(error)
        messages = self._messages.setdefault(msg.room, [])
        if msg.seq != len(messages) + 1:
            return _done(StoreError(
                f"message {msg.room}#{msg.seq} rejected: the room's next seq is "
                f"{len(messages) + 1}"
            ))
        if msg.id is not None:
            key = (msg.sender, msg.id)
            if key in self._by_client_id:
                return _done(StoreError(
                    f"message {msg.room}#{msg.seq} rejected: {msg.sender} already stored "
                    f"client id {msg.id!r}"
                ))
            self._by_client_id[key] = (msg.room, msg.seq)
        messages.append(msg)
        self._stored_order.append((msg.room, msg.seq))
        if msg.mentions and not msg.hidden:
            self._mentions.update((msg.room, msg.seq, name) for name in msg.mentions)
        if msg.change is not None and msg.target is not None \
                and (not msg.hidden or msg.change == ChangeKind.DELETE):
            self._apply(msg, messages)
        return _done()

    def _apply(self, change: StoredMsg, messages: list[StoredMsg | None]) -> None:
        """A change entry's change to its target (see Store.append)."""
        room, seq = change.room, change.target
        assert seq is not None
        target = messages[seq - 1] if 0 < seq <= len(messages) else None
        if target is None:
            return
        kind = change.change
        if kind == ChangeKind.EDIT:
            messages[seq - 1] = dataclasses.replace(target, text=change.text, edited=change.ts)
        elif kind == ChangeKind.DELETE:
            messages[seq - 1] = dataclasses.replace(target, text="", deleted=True, edited=None,
                                                    mentions=None)
            for i, m in enumerate(messages):
                if m is not None and m.target == seq and m.change == ChangeKind.EDIT:
                    messages[i] = dataclasses.replace(m, text="")
            self._reactions.pop((room, seq), None)
            self._mentions = {k for k in self._mentions if k[:2] != (room, seq)}
        elif kind == ChangeKind.REACT:
            mark = (change.sender, change.emoji or "")
            marks = self._reactions.setdefault((room, seq), [])
            if mark not in marks:
                marks.append(mark)
        elif kind == ChangeKind.UNREACT:
            marks = self._reactions.get((room, seq), [])
            mark = (change.sender, change.emoji or "")
            if mark in marks:
                marks.remove(mark)
            if not marks:
                self._reactions.pop((room, seq), None)

    def put_moderator(self, room: str, name: str, creator: bool) -> Commit:
        if error := self._closed_error():
            return _done(error)
        self._moderators[(room, name)] = creator
        return _done()

    def remove_moderator(self, room: str, name: str) -> Commit:
        if error := self._closed_error():
            return _done(error)
        self._moderators.pop((room, name), None)
        return _done()

    # --- reads -----------------------------------------------------------------------

    def find_message(self, sender: str, client_id: str) -> StoredMsg | None:
        where = self._by_client_id.get((sender, client_id))
        if where is None:
            return None
        room, seq = where
        return self._messages[room][seq - 1]  # None once retention deleted it, as in SQLite

    def history_before(self, room: str, before: int | None, limit: int) -> list[StoredMsg]:
        messages = self._messages.get(room, [])
        # Messages below `before` are those at indexes [0, before - 1).
        end = len(messages) if before is None else max(0, min(before - 1, len(messages)))
        kept = [m for m in messages[:end] if m is not None]
        return self._with_reactions(kept[max(0, len(kept) - max(0, limit)):])

    def get_message(self, room: str, seq: int) -> StoredMsg | None:
        messages = self._messages.get(room, [])
        msg = messages[seq - 1] if 0 < seq <= len(messages) else None
        return None if msg is None else self._with_reactions([msg])[0]

    def _with_reactions(self, msgs: list[StoredMsg]) -> list[StoredMsg]:
        out = []
        for m in msgs:
            marks = self._reactions.get((m.room, m.seq))
            if marks:
                by_emoji: dict[str, list[str]] = {}
                for name, emoji in marks:
                    by_emoji.setdefault(emoji, []).append(name)
                m = dataclasses.replace(m, reactions=tuple(
                    Reaction(emoji, tuple(names)) for emoji, names in by_emoji.items()))
            out.append(m)
        return out

    def unread_counts(self, user: str, room: str, after: int, cap: int) -> tuple[int, int]:
        unread = mentions = 0
        for m in self._messages.get(room, [])[max(0, after):]:
            if m is None or m.sender == user or m.change is not None or m.deleted \
                    or m.hidden:
                continue
            unread += 1
            mentions += (room, m.seq, user) in self._mentions
        return min(unread, cap), min(mentions, cap)

    def history_after(self, room: str, after: int, limit: int) -> list[StoredMsg]:
        messages = self._messages.get(room, [])
        start = max(0, after)
        if start < len(messages) and messages[start] is None:  # below the retention cut
            start = next((i for i in range(start, len(messages)) if messages[i] is not None),
                         len(messages))
        return self._with_reactions(
            messages[start:start + max(0, limit)])  # type: ignore[arg-type]

    def search(self, reader: str, rooms: Collection[str], words: Sequence[str],
               before: str | None, limit: int) -> list[tuple[str, StoredMsg]]:
        order = self._stored_order
        end = len(order)
        if before is not None:
            end = min(end, parse_position(before) - 1)
        wanted, readable = set(words), set(rooms)
        found: list[tuple[str, StoredMsg]] = []
        for i in range(end - 1, -1, -1):  # a plain scan, newest first
            if len(found) >= limit:
                break
            room, seq = order[i]
            if room not in readable:
                continue
            msg = self._messages[room][seq - 1]
            if msg is None or msg.change is not None or (msg.hidden and msg.sender != reader):
                continue  # a change entry is found as the message it changed
            if wanted <= set(words_of(msg.text)):
                found.append((str(i + 1), msg))
        return found

    # --- retention -------------------------------------------------------------------

    def retention_cut(self, room: str, min_ts: int | None,
                      max_bytes: int | None) -> tuple[int, int] | None:
        kept = [m for m in self._messages.get(room, []) if m is not None]
        if len(kept) < 2:
            return None
        cut = 0
        if min_ts is not None:
            cut = next((m.seq for m in kept if m.ts >= min_ts), kept[-1].seq)
        if max_bytes is not None:
            total = 0
            for m in reversed(kept):
                total += len(m.text.encode())
                if total > max_bytes:
                    cut = max(cut, m.seq + 1)
                    break
        cut = min(cut, kept[-1].seq)
        return (kept[0].seq, cut) if cut > kept[0].seq else None

    def delete_before(self, room: str, seq: int) -> Commit:
        if error := self._closed_error():
            return _done(error)
        messages = self._messages.get(room, [])
        for i in range(min(seq - 1, len(messages))):
            messages[i] = None
            self._reactions.pop((room, i + 1), None)
        self._mentions = {k for k in self._mentions if k[0] != room or k[1] >= seq}
        return _done()
