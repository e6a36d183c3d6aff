"""What the user does to messages already sent: edit, delete, react, and what replies
need (the answered line, fetched when not held). Part of the controller, kept apart so
that controller.py stays small; like it, no Textual here.

A change is applied to the transcript once the server acknowledged it, as the change
entry the server stored (the same ``msg`` the user's other sessions receive), so the
entry echoed back by the SDK later finds it applied already (entries are idempotent).
"""

from __future__ import annotations

import logging
from typing import Protocol

from cfm_common import rules
from cfm_common.errors import ClientError
from cfm_common.frames import Msg
from cfm_tui.changes import reacted
from cfm_tui.outcome import Outcome
from cfm_tui.session import ChatSession, friendly_error
from cfm_tui.state import ChatState, Update


class Host(Protocol):
    """What these parts use of :class:`~cfm_tui.controller.Host` (named here,
    not imported: the controller imports this module)."""

    state: ChatState
    session: ChatSession | None

    def note(self, room: str, text: str) -> Outcome: ...

    def text_refusal(self, text: str) -> str | None: ...

log = logging.getLogger(__name__)



# Why the server refused a change, by change and code (its own words are not read).
REFUSED = {
    ("edit", rules.ErrorCode.FORBIDDEN): "You can only edit your own messages.",
    ("edit", rules.ErrorCode.BAD_FRAME): "That message cannot be edited.",
    ("delete", rules.ErrorCode.FORBIDDEN): "You can only delete your own messages "
                                           "(and, as a room's moderator, others' there).",
    ("react", rules.ErrorCode.FORBIDDEN): "That reaction is already there, or that "
                                          "message can no longer take reactions.",
    ("unreact", rules.ErrorCode.FORBIDDEN): "That reaction is not yours to take back.",
}


class MessageActions:
    """Edits, deletes, reactions and reply quotes, for :class:`Host`."""

    def __init__(self, ctl: Host) -> None:
        self.ctl = ctl
        self._quotes_asked: set[tuple[str, int]] = set()

    # --- edit and delete -------------------------------------------------------------

    def edit(self, room: str, target: int, text: str) -> Outcome:
        """Replace the text of one of the user's messages (``ok`` False: keep the draft)."""
        ctl = self.ctl
        conv = ctl.state.conversation(room)
        msg = conv.message(target)
        text = text.replace("\r\n", "\n")
        if msg is not None and msg.text == text:
            return Outcome()  # nothing changed: nothing to send
        refusal = ctl.text_refusal(text)
        if not text.strip():
            refusal = "An edited message cannot be empty: delete it instead (F7, then d)."
        if refusal is not None:
            out = ctl.note(room, refusal)
            out.ok = False
            return out
        return Outcome(jobs=[lambda: self._change(room, "edit", target, text=text)])

    def delete(self, room: str, target: int) -> Outcome:
        """Take a message back (the screen has asked first)."""
        return Outcome(jobs=[lambda: self._change(room, "delete", target)])

    def react(self, room: str, target: int, emoji: str) -> Outcome:
        """Put ``emoji`` on a message, or take it off if the user had put it there."""
        conv = self.ctl.state.conversation(room)
        msg = conv.message(target)
        change = "unreact" if msg is not None and reacted(msg, emoji, self.ctl.state.me) \
            else "react"
        return Outcome(jobs=[lambda: self._change(room, change, target, emoji=emoji)])

    async def _change(self, room: str, change: str, target: int, *, text: str = "",
                      emoji: str | None = None) -> Outcome:
        ctl = self.ctl
        state, session = ctl.state, ctl.session
        if session is None:
            return Outcome()
        conv = state.conversation(room)
        try:
            if change == "edit":
                ack = await session.edit(room, target, text)
            elif change == "delete":
                ack = await session.delete(room, target)
            else:
                assert emoji is not None
                ack = await session.react(room, target, emoji, add=change == "react")
        except ClientError as exc:
            reason = REFUSED.get((change, exc.code)) or friendly_error(exc, conv.peer or room)
            return ctl.note(room, reason)
        shown = emoji if change == "react" else text
        conv.add_message(Msg(room, ack.seq, state.me, shown or "", ack.ts,
                             rules.MsgKind.TEXT.value, ack.id, change=change, target=target,
                             emoji=emoji))
        return Outcome(Update(rooms={room}))

    # --- replies: the answered line --------------------------------------------------

    def fetch_quotes(self, room: str) -> Outcome:
        """Fetch each answered message the conversation does not hold (once each)."""
        conv = self.ctl.state.conversations.get(room)
        if conv is None or self.ctl.session is None:
            return Outcome()
        wanted = sorted(seq for seq in conv.missing_quotes()
                        if (room, seq) not in self._quotes_asked)
        self._quotes_asked.update((room, seq) for seq in wanted)
        return Outcome(jobs=[lambda seq=seq: self._fetch_quote(room, seq) for seq in wanted])

    async def _fetch_quote(self, room: str, seq: int) -> Outcome:
        session = self.ctl.session
        conv = self.ctl.state.conversations.get(room)
        if session is None or conv is None:
            return Outcome()
        try:
            stored = await session.client.get_message(room, seq)
        except ClientError as exc:
            log.info("the message %s answered in %s: %s", seq, room, exc)
            return Outcome()
        if stored is None:
            return Outcome()  # removed by retention: the quote says "an earlier message"
        conv.quotes[seq] = Msg.from_stored(stored)
        return Outcome(Update(rooms={room}))

    # --- picking a message -----------------------------------------------------------

    def last_own(self, room: str) -> tuple[int, str] | None:
        """Up-arrow in an empty composer: the seq and text of the message to edit."""
        conv = self.ctl.state.conversations.get(room)
        msg = conv.last_own() if conv is not None else None
        return (msg.seq, msg.text) if msg is not None else None
