"""Contacts: a user's own list, add requests, and private blocking.

Adding someone tells them (``contact{op: added_you}``) unless they blocked the adder.
Blocking is private: the blocked user is not told, just sees the blocker go offline.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cfm_common import rules
from cfm_common.codec import encode
from cfm_common.errors import ProtocolError
from cfm_common.frames import Contact, ContactRequest, RosterEntry
from cfm_common.rules import ContactOp, ErrorCode
from cfm_server.domain.delivery import Delivery
from cfm_server.domain.durable import Settle, confirm
from cfm_server.domain.ports import Connection
from cfm_server.domain.presence import PresenceHandler
from cfm_server.domain.world import World
from cfm_server.state import User
from cfm_server.store import Commit, ContactRecord

BLOCKS = frozenset({ContactOp.BLOCK, ContactOp.UNBLOCK})
LISTING = frozenset({ContactOp.ADD, ContactOp.REMOVE})


class ContactHandler:
    def __init__(self, world: World, delivery: Delivery, presence: PresenceHandler) -> None:
        self.world = world
        self.delivery = delivery
        self.presence = presence

    def contact(self, session: Connection, frame: ContactRequest) -> None:
        world = self.world
        user = world.user_of(session)
        world.admission.charge(user, "contact", "contact")
        name = rules.normalize_name(frame.name)
        if name == user.name:
            raise ProtocolError(ErrorCode.BAD_FRAME, "you cannot be your own contact")
        target = world.users.get(name)
        if target is None:
            raise ProtocolError(ErrorCode.NO_SUCH_USER, f"no user {name!r}")
        current = user.contacts.get(name)
        in_list = current is not None and current.in_list
        blocked = current is not None and current.blocked
        op = ContactOp(frame.op)
        newly_added = op is ContactOp.ADD and not in_list
        now_blocked = op is ContactOp.BLOCK if op in BLOCKS else blocked
        now_listed = op is ContactOp.ADD if op in LISTING else in_list
        commit, settle = self.put_contact(user, name, in_list=now_listed, blocked=now_blocked)
        # What the change tells, worked out now (on the state it was made on) and sent
        # once it is durable (durable.py): nobody hears of a change the store lost.
        block_seen = None
        if now_blocked != blocked and target.online and self.delivery.is_watcher(user, name):
            # The blocked user sees the blocker go offline; an unblocked one sees them back
            # (a quiet session only if it watches through its contact list). On a
            # cluster the target's sessions may be on other nodes (``online``).
            listed = name in world.listed_by.get(user.name, ())
            block_seen = (self.presence.frame(user, user.status_for(name)), not listed)
        tell_target = newly_added and not target.has_blocked(user.name)

        def told() -> None:
            # The entries as they are now, not when the frame came: a presence change
            # meanwhile has gone to the user already (the contact counted at once), and
            # an echo with the status from before would undo it on the client's roster.
            entry = self.presence.roster_entry(name, user.name, blocked=user.has_blocked(name))
            echo = Contact(op.value, **entry_keys(entry))
            notice = None
            if tell_target:
                mine = self.presence.roster_entry(user.name, name)
                notice = encode(Contact(ContactOp.ADDED_YOU.value, **entry_keys(mine)))
            if block_seen is not None:
                self.delivery.block_presence(target, block_seen[0], loud_only=block_seen[1])
            if frame.id is None:
                self.delivery.to_user(user, encode(echo), "contact")
            else:  # the asking session's copy carries the request's id (request ids)
                session.send(encode(dataclasses.replace(echo, ref=frame.id)))
                world.metrics.count_out("contact")
                self.delivery.to_user(user, encode(echo), "contact", skip=session)
            if notice is not None:
                self.delivery.to_user(target, notice, "contact")

        confirm(session, frame.id or frame.T, commit, world.metrics, told, settle)

    def put_contact(
        self, user: User, name: str, *, in_list: bool, blocked: bool = False
    ) -> tuple[Commit, Settle]:
        """Set ``user``'s contact entry for ``name`` (none when neither listed nor
        blocked); the write, and what puts the stored entry back if it fails (for
        ``confirm`` or ``settled``)."""
        world = self.world
        before = user.contacts.get(name) or ContactRecord(user.name, name, False, False)
        record = ContactRecord(user.name, name, in_list, blocked)
        world.set_contact(record)
        commit = world.writes.put_contact(record)
        return commit, world.unsettled.track(("contact", user.name, name), before, record,
                                             self._restore)

    def _restore(self, record: ContactRecord) -> None:
        if record.owner in self.world.users:
            self.world.set_contact(record)


def entry_keys(entry: RosterEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "display": entry.display,
        "status": entry.status,
        "psm": entry.psm,
        "bot": entry.bot,
        "blocked": entry.blocked,
    }
