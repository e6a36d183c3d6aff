"""The messenger's domain state, fed by SDK events and testable without Textual.

:class:`ChatState` owns who we are, the people we know (contacts, room members), the
conversations, the pending "added you" requests and the connection state. ``apply``
takes one server frame and returns an :class:`Update` saying what changed and what the
user should be told; widgets only render this state.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from cfm_common import rules
from cfm_common.frames import (
    Contact,
    Error,
    Joined,
    Left,
    Member,
    Msg,
    Presence,
    Read,
    RosterEntry,
    Typing,
    Welcome,
)
from cfm_tui.conversation import Conversation

log = logging.getLogger(__name__)

Clock = Callable[[], float]


# How long after a reconnect a contact who was online before it may come back quietly.
RECONNECT_GRACE_S = 60.0

@functools.lru_cache(maxsize=4096)
def _looks(name: str) -> str:
    """What a name looks like (its skeleton), cached: labels are asked for often."""
    return rules.handle_skeleton(name)


@dataclass(slots=True)
class Person:
    name: str
    display: str = ""
    status: str = rules.Status.OFFLINE.value
    psm: str = ""
    bot: bool = False

    @property
    def label(self) -> str:
        return self.display or self.name

    @property
    def online(self) -> bool:
        return self.status != rules.Status.OFFLINE


class NoticeKind(StrEnum):
    SIGNED_IN = "signed_in"
    MESSAGE = "message"
    NUDGE = "nudge"
    MENTION = "mention"  # a message that mentions the user (@handle)
    ADDED_YOU = "added_you"
    ERROR = "error"  # a warning: a server's error frame, a request that failed
    INFO = "info"  # a plain line for the user ("bob was added to your contact list")


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should be told about (a toast, the bell, a desktop note)."""

    kind: NoticeKind
    who: str = ""
    room: str | None = None
    text: str = ""


@dataclass
class Update:
    rooms: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)
    # Conversations to show as tabs: room -> whether to switch to it (and focus it).
    opened: dict[str, bool] = field(default_factory=dict)
    roster: bool = False
    me: bool = False
    connection: bool = False
    notices: list[Notice] = field(default_factory=list)
    search: bool = False  # the search results changed
    open_search: bool = False  # show them (a new search: /search, or the screen's own)
    select: tuple[str, int] | None = None  # a message to select and show: (room, seq)

    def merge(self, other: Update) -> None:
        self.search |= other.search
        self.open_search |= other.open_search
        self.select = other.select or self.select
        self.rooms |= other.rooms
        self.closed |= other.closed
        for room, activate in other.opened.items():
            self.opened[room] = self.opened.get(room, False) or activate
        self.roster |= other.roster
        self.me |= other.me
        self.connection |= other.connection
        self.notices.extend(other.notices)


class Link(StrEnum):
    """The connection as the footer shows it (mirrors the SDK's ConnectionState)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass(slots=True)
class Connection:
    link: Link = Link.CONNECTING
    retry_in: float | None = None
    reason: str | None = None  # the SDK's, for the log
    # When the next try is due (the state's clock); the bar counts down to it.
    retry_at: float | None = None
    # CLOSED by the server for good: why, and what to do, in words for the user
    # (cfm_tui.session.ended_text); None when the user closed it, or it is not closed.
    ended: str | None = None

    def remaining(self, now: float | None) -> float | None:
        if self.link is not Link.RECONNECTING or self.retry_in is None:
            return None
        if now is None or self.retry_at is None:
            return self.retry_in
        return self.retry_at - now

    def counting_down(self, now: float | None) -> bool:
        left = self.remaining(now)
        return left is not None and left >= 0.5

    def describe(self, now: float | None = None) -> str:
        if self.link is Link.CONNECTED:
            return "Connected"
        if self.link is Link.CONNECTING:
            return "Connecting…"
        if self.link is Link.RECONNECTING:
            left = self.remaining(now)
            if left is not None and left >= 0.5:
                return f"Reconnecting in {round(left)} s…"
            return "Reconnecting…"
        return self.ended or "Disconnected"


class ChatState:
    def __init__(self, me: str = "", *, clock: Clock = time.time) -> None:
        self.me = rules.normalize_name(me)
        self.display = ""
        self.status = rules.Status.ONLINE.value
        self.psm = ""
        self.people: dict[str, Person] = {}
        self.contacts: set[str] = set()
        self.blocked: set[str] = set()
        self.added_you: list[str] = []
        # Handles whose account the server says is gone (the operator removed it): their
        # DM takes nothing more, until the handle is seen in use again (``_in_use_again``).
        self.gone: set[str] = set()
        self.conversations: dict[str, Conversation] = {}
        self.connection = Connection()
        self.clock = clock
        # Contacts online when our connection dropped: their coming back after our
        # reconnect (a server restart brings everyone back) is no "has just signed in".
        self._online_at_drop: set[str] = set()
        # The welcome last taken in: the first one comes twice (the sign-in hands it
        # over, then the SDK's Connected event), and what was joined in between must
        # not be taken for a room left while away.
        self._welcome: Welcome | None = None
        self._drop_grace_until = 0.0

    # --- lookups ---------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def person(self, name: str) -> Person:
        key = rules.normalize_name(name)
        if key not in self.people:
            self.people[key] = Person(key)
        return self.people[key]

    def label(self, name: str | None) -> str:
        """The name to show for a handle: its display name when we know one, with the
        handle after it (``Echo <echo2>``) when that name could be taken for someone
        else's: shared with another person, or another person's handle."""
        if name is None:
            return ""
        key = rules.normalize_name(name)
        shown = self._display_of(key)
        if shown is None:
            return name
        if self._confusable(key, shown):
            return f"{shown} <{key}>"
        return shown

    def _display_of(self, key: str) -> str | None:
        if key == self.me:
            return self.display or self.me
        person = self.people.get(key)
        return person.label if person else None

    def _confusable(self, key: str, shown: str) -> bool:
        """Whether ``shown`` looks like another person's display name or handle: compared
        by their skeletons (rules.handle_skeleton), so look-alike letters, invisible
        characters, case and separators do not make a name pass for another."""
        looks = _looks(shown)
        for other in (self.me, *self.people):
            if other == key or not other:
                continue
            other_shown = self._display_of(other) or other
            if _looks(other_shown) == looks or _looks(other) == looks:
                return True
        return False

    def conversation(self, room: str) -> Conversation:
        conv = self.conversations.get(room)
        if conv is None:
            conv = Conversation(room, self.me)
            self.conversations[room] = conv
        return conv

    def dm_with(self, name: str) -> Conversation:
        return self.conversation(rules.dm_room(self.me, name))

    def contact_people(self) -> list[Person]:
        return sorted((self.person(n) for n in self.contacts - self.blocked),
                      key=lambda p: (p.label.lower(), p.name))

    def group_rooms(self) -> list[str]:
        return sorted(r for r in self.conversations if rules.is_group_room(r))

    def unread_for(self, name: str) -> int:
        conv = self.conversations.get(rules.dm_room(self.me, name))
        return conv.unread() if conv else 0

    def mentions_for(self, room: str) -> int:
        conv = self.conversations.get(room)
        return conv.unread_mentions() if conv else 0

    # --- connection events (from the SDK, not frames) --------------------------------

    def on_welcome(self, welcome: Welcome) -> Update:
        """A (re)connect: who we are, our contacts and rooms, as the server sees them."""
        self.me = rules.normalize_name(welcome.name)
        self.display = welcome.display
        self.status = welcome.status
        self.psm = welcome.psm
        self.contacts.clear()
        self.blocked.clear()
        for entry in welcome.contacts:
            self._remember(entry)
            # The server keeps "in my list" and "blocked" apart, but a roster entry only
            # says blocked: a blocked entry counts as listed, shown under Blocked.
            self.contacts.add(entry.name)
            if entry.blocked:
                self.blocked.add(entry.name)
        # Group rooms we are no longer in (left from another session, or the room is
        # gone while we were away: their `left` never reached us) close as on `left`.
        again, self._welcome = welcome is self._welcome, welcome
        present = {rs.room for rs in welcome.rooms}
        gone = set() if again else {room for room, conv in self.conversations.items()
                                    if conv.is_group and room not in present}
        for room in gone:
            del self.conversations[room]
        # A DM room we were a member of no longer listed: a DM has no leave, so its
        # other account was removed while we were away (docs/protocol.md, "A removed
        # account"). A member: its epoch came with a welcome or a `joined`, or a message
        # with a seq did (a DM started in this session, by either side, is in neither).
        # One already superseded is the old account's: told once.
        vanished = [] if again else [
            conv for room, conv in self.conversations.items()
            if conv.peer is not None and room not in present and not conv.superseded
            and (conv.epoch is not None or conv.latest_seq > 0)]
        removed = Update()
        for conv in vanished:
            conv.epoch = None
            removed.merge(self.account_gone(conv.peer or ""))
        for conv in self.conversations.values():
            conv.me = self.me
            if conv.members is not None and not again:
                # Whoever joined or left while we were away was never told us: the
                # list is unknown until asked again (ChatController.on_event does).
                conv.members_before, conv.members = conv.members, None
        for rs in welcome.rooms:
            conv = self.conversation(rs.room)
            if conv.superseded:  # the handle's new account's DM, listed: a new room
                conv.start_over(self.now_ms())
            if conv.epoch is not None and conv.epoch != rs.epoch:
                conv.reset(rs.epoch)
            conv.epoch = rs.epoch
            conv.latest_seq = max(conv.latest_seq, rs.seq)
            conv.read_mark = max(conv.read_mark, rs.read)
            conv.set_server_counts(rs.read, rs.seq, rs.unread, rs.mentions)
        self.connection = Connection(Link.CONNECTED)
        self._drop_grace_until = self.clock() + RECONNECT_GRACE_S
        update = Update(rooms=set(self.conversations), closed=gone, roster=True, me=True,
                        connection=True)
        update.merge(removed)
        return update

    def rooms_to_refresh(self) -> list[str]:
        """Group rooms whose member list a reconnect made unknown after it was shown."""
        return sorted(room for room, conv in self.conversations.items()
                      if conv.members_before is not None)

    @property
    def presence_stale(self) -> bool:
        """Whether contacts' statuses are only the last known: the connection is down."""
        return self.connection.link in (Link.RECONNECTING, Link.CLOSED)

    @property
    def shown_status(self) -> str:
        """Our status as the header shows it: offline while the connection is down
        (nobody sees the one chosen until it is back), else the one chosen."""
        return rules.Status.OFFLINE.value if self.presence_stale else self.status

    def on_connection(self, link: str, retry_in: float | None = None,
                      reason: str | None = None, ended: str | None = None) -> Update:
        """The SDK's connection state; ``ended``: the server ended the session for good,
        and why (a notice too, besides the connection bar)."""
        was_stale = self.presence_stale
        new = Link(link.lower())
        if self.connection.link is Link.CONNECTED and new is not Link.CONNECTED:
            self._online_at_drop = {name for name in self.contacts
                                    if name in self.people and self.people[name].online}
        retry_at = self.clock() + retry_in if retry_in is not None else None
        ended = ended if new is Link.CLOSED else None
        self.connection = Connection(new, retry_in, reason, retry_at, ended)
        # Going down or coming back: the dots (the buddy list's, our own, the
        # conversations' headers and member lists) turn grey or show again.
        flipped = self.presence_stale != was_stale
        notices = [Notice(NoticeKind.ERROR, text=ended)] if ended else []
        return Update(connection=True, roster=flipped, me=flipped, notices=notices,
                      rooms=set(self.conversations) if flipped else set())

    # --- server frames ---------------------------------------------------------------

    def apply(self, frame: object) -> Update:
        handler = self._handlers.get(type(frame))
        if handler is None:
            return Update()
        return handler(self, frame)

    def _on_msg(self, msg: Msg) -> Update:
        conv = self.conversation(msg.room)
        if not conv.add_message(msg):
            return Update()
        update = Update(rooms={msg.room}, roster=True)
        if msg.change is not None:
            return update  # an edit, a delete, a reaction: shown in place, no toast
        if msg.sender != self.me:
            if conv.peer == rules.normalize_name(msg.sender):  # not an old group message
                self._in_use_again(conv.peer)
            kind = NoticeKind.NUDGE if msg.kind == rules.MsgKind.NUDGE else NoticeKind.MESSAGE
            if kind is NoticeKind.MESSAGE and self.me in (msg.mentions or ()):
                kind = NoticeKind.MENTION
            update.notices.append(Notice(kind, msg.sender, msg.room, msg.text))
        return update

    def _on_presence(self, p: Presence) -> Update:
        name = rules.normalize_name(p.name)
        if name == self.me:
            self.display, self.status, self.psm = p.display, p.status, p.psm
            return Update(me=True)
        known = self.people.get(name)
        was_online = known.online if known else False
        person = self.person(name)
        person.display, person.status, person.psm, person.bot = p.display, p.status, p.psm, p.bot
        if person.online:
            self._in_use_again(name)
        update = Update(roster=True, rooms=self._rooms_with(name))
        signed_in = person.online and not was_online
        if signed_in and name in self.contacts and name not in self.blocked \
                and not self._back_after_drop(name):
            update.notices.append(Notice(NoticeKind.SIGNED_IN, name))
        return update

    def _back_after_drop(self, name: str) -> bool:
        """Whether ``name`` was online when we dropped and is back soon after (once)."""
        if name not in self._online_at_drop:
            return False
        self._online_at_drop.discard(name)
        return self.clock() < self._drop_grace_until

    def _on_typing(self, t: Typing) -> Update:
        if rules.normalize_name(t.sender) == self.me:
            return Update()
        self.conversation(t.room).set_typing(t.sender, self.clock())
        return Update(rooms={t.room})

    def _on_read(self, r: Read) -> Update:
        conv = self.conversation(r.room)
        if rules.normalize_name(r.name) == self.me:
            conv.read_mark = max(conv.read_mark, r.seq)
            return Update(rooms={r.room}, roster=True)
        conv.peer_read = max(conv.peer_read, r.seq)
        return Update(rooms={r.room})

    def _on_joined(self, j: Joined) -> Update:
        conv = self.conversation(j.room)
        if j.reset or (conv.epoch is not None and conv.epoch != j.epoch):
            conv.reset(j.epoch)
        conv.epoch = j.epoch
        conv.latest_seq = max(conv.latest_seq, j.seq)
        for entry in j.members:
            self._remember(entry)
        if conv.is_group:
            conv.members = {e.name for e in j.members}
            before, conv.members_before = conv.members_before, None
            if before is not None and j.count is None:  # count: the list is cut short
                self._note_changes(conv, before, conv.members)
        return Update(rooms={j.room}, roster=True)

    def _note_changes(self, conv: Conversation, before: set[str], now: set[str]) -> None:
        """Who joined or left a room while we were disconnected, as the live
        ``member`` frames would have said it."""
        for name in sorted(now - before):
            conv.note(f"{self.label(name)} has joined the conversation.", self.now_ms())
        for name in sorted(before - now):
            conv.note(f"{self.label(name)} has left the conversation.", self.now_ms())

    def _on_left(self, left: Left) -> Update:
        self.conversations.pop(left.room, None)
        return Update(closed={left.room}, roster=True)

    def _on_member(self, m: Member) -> Update:
        pair = rules.dm_members(m.room)
        if pair is not None:  # a DM has no leave: the other account was removed
            name = rules.normalize_name(m.name)
            gone = m.op == rules.MemberOp.LEAVE and name in pair and name != self.me
            return self.account_gone(name) if gone else Update()
        conv = self.conversation(m.room)
        # Members still unknown (no `joined` yet, the app asks for it): one change is
        # not the list, so it stays unknown rather than "1 member".
        members = conv.members
        who = self.label(m.name)
        # Told now: the list asked for after a reconnect must not say it again.
        lists = [names for names in (members, conv.members_before) if names is not None]
        if m.op == rules.MemberOp.JOIN:
            if members is None or m.name not in members:
                conv.note(f"{who} has joined the conversation.", self.now_ms())
            for names in lists:
                names.add(m.name)
            self.person(m.name)
        else:
            for names in lists:
                names.discard(m.name)
            conv.note(f"{who} has left the conversation.", self.now_ms())
        return Update(rooms={m.room})

    def _on_contact(self, c: Contact) -> Update:
        name = rules.normalize_name(c.name)
        if c.display is not None:
            person = self.person(name)
            person.display = c.display
            if c.status is not None:
                person.status = c.status
            if c.psm is not None:
                person.psm = c.psm
            if c.bot is not None:
                person.bot = c.bot
        # A name shown in a conversation's header and lines too, not only in the list.
        update = Update(roster=True,
                        rooms=self._rooms_with(name) if c.display is not None else set())
        op = rules.ContactOp(c.op)
        if op is rules.ContactOp.ADD:
            self.contacts.add(name)
            self._forget_request(name)
        elif op is rules.ContactOp.REMOVE:
            self.contacts.discard(name)
            # Also the withdrawal of their request (an account removed: nobody to answer).
            self._forget_request(name)
        elif op is rules.ContactOp.BLOCK:
            self.blocked.add(name)
            self._forget_request(name)
        elif op is rules.ContactOp.UNBLOCK:
            self.blocked.discard(name)
        elif op is rules.ContactOp.ADDED_YOU:
            self._in_use_again(name)
            if name not in self.contacts and name not in self.blocked \
                    and name not in self.added_you:
                self.added_you.append(name)
            update.notices.append(Notice(NoticeKind.ADDED_YOU, name))
        return update

    def _on_error(self, e: Error) -> Update:
        return Update(notices=[Notice(NoticeKind.ERROR, text=e.msg or e.code)])

    _handlers: ClassVar[dict[type, Callable[[ChatState, Any], Update]]] = {
        Msg: _on_msg,
        Presence: _on_presence,
        Typing: _on_typing,
        Read: _on_read,
        Joined: _on_joined,
        Left: _on_left,
        Member: _on_member,
        Contact: _on_contact,
        Error: _on_error,
    }

    # --- helpers ---------------------------------------------------------------------

    def dismiss_request(self, name: str) -> Update:
        self._forget_request(rules.normalize_name(name))
        return Update(roster=True)

    def account_gone(self, name: str) -> Update:
        """The server says ``name`` has no account (removed by the operator: a DM
        ``member{op:leave}``, a DM room gone from ``welcome``, ``no_such_user``): their
        request goes, they show offline, and their DM says so once and takes nothing
        more (the controller refuses to send there)."""
        key = rules.normalize_name(name)
        if not key or key in self.gone:
            return Update()
        self.gone.add(key)
        self._forget_request(key)
        person = self.person(key)
        person.status, person.psm = rules.Status.OFFLINE.value, ""
        room = rules.dm_room(self.me, key)
        conv = self.conversations.get(room)
        if conv is None:
            return Update(roster=True)
        conv.typing.clear()
        conv.superseded = True
        conv.note(f"{self.label(key)} no longer has an account on this server: nothing "
                  "more can be sent here.", self.now_ms())
        return Update(rooms={room}, roster=True)

    def _in_use_again(self, name: str) -> None:
        """``name`` is in use again (a new account with the handle signed in, wrote or
        added us): their DM takes messages again."""
        self.gone.discard(name)

    def _forget_request(self, name: str) -> None:
        if name in self.added_you:
            self.added_you.remove(name)

    def _remember(self, entry: RosterEntry) -> None:
        person = self.person(entry.name)
        person.display, person.status = entry.display, entry.status
        person.psm, person.bot = entry.psm, entry.bot

    def _rooms_with(self, name: str) -> set[str]:
        return {room for room, conv in self.conversations.items()
                if conv.peer == name or (conv.members is not None and name in conv.members)}
