"""What a user is told, after their next ``welcome``, of an account the operator removed
while they were not online (a single node's ``cfm admin remove-user``; schema v5).

A cluster's nodes tell their sessions at once (domain/removal.py); a single node's
removal may run while the server is stopped, and a user may be away while it runs, so
the database keeps what each of those users would have been told, and the server tells
it right after their next ``welcome``, with the same frames (docs/protocol.md, "A
removed account"):

- the target of the removed account's pending request (an ``added_you`` they had not
  answered): ``contact{op: remove}`` of it, which withdraws the request (a client that
  still shows it from before a restart drops it);
- its DM partner: ``member{op: leave}`` of it in the DM room, which is gone (not in the
  ``welcome``): the conversation shown from before has nobody left to write to.

A notice is told once, to the first session that signs in, and then dropped; also
when someone new has claimed the handle by then. The withdrawal cannot touch the
newcomer's own request (told live only: this session has not seen one), and it must
reach a client still showing the old one's request, whose "accept" would add the
newcomer. The DM's leave too makes a client forget the old DM's seqs, so that the
newcomer's new DM is not taken for messages seen; but not when the user is in a DM of
that name again (the newcomer's, in the ``welcome`` with its new epoch), which the
leave would seem to end.
"""

from __future__ import annotations

from cfm_common.codec import encode
from cfm_common.frames import Contact, Member
from cfm_common.rules import ContactOp, MemberOp, Status
from cfm_server.domain.ports import Connection
from cfm_server.domain.world import World
from cfm_server.store import NoticeRecord


class Notices:
    def __init__(self, world: World) -> None:
        self.world = world
        self.pending: dict[str, list[NoticeRecord]] = {}

    def load(self, records: list[NoticeRecord]) -> None:
        """What the store keeps, in place of what was held (at the start, and once a
        removal on the running server has added to it)."""
        self.pending = {}
        for record in records:
            self.pending.setdefault(record.name, []).append(record)

    def after_welcome(self, session: Connection) -> None:
        """Tell ``session``'s user what is kept for them, then drop it."""
        user = session.user
        if user is None or not self.pending:
            return
        records = self.pending.pop(user.name, None)
        if records is None:
            return
        metrics = self.world.metrics
        for record in records:
            if record.room:
                if record.room in user.rooms:
                    continue  # a new DM with the handle's next holder
                session.send(encode(Member(record.room, record.subject,
                                           MemberOp.LEAVE.value)))
                metrics.count_out("member")
            else:
                session.send(encode(Contact(
                    ContactOp.REMOVE.value, name=record.subject, display=record.display,
                    status=Status.OFFLINE.value, psm="", bot=record.bot, blocked=False)))
                metrics.count_out("contact")
        self.world.writes.drop_notices(user.name)
