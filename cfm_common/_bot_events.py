"""Which decorator of :class:`~cfm_common.bot.Bot` an event goes to, and the decorators
for the typed ones: unsolicited frames (presence, typing, read marks, members, contact
edits) and change entries (reactions, edits, deletes), which never reach ``on_message``.

A mixin so that bot.py keeps to running handlers; the Bot dispatches by these tables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cfm_common import frames as f

H = TypeVar("H", bound=Callable[..., Awaitable[Any]])
Handlers = dict[str, list[Callable[[Any], Awaitable[None]]]]

# Which typed decorator each unsolicited frame goes to.
TYPED_EVENTS: dict[type, str] = {
    f.Presence: "presence", f.Typing: "typing", f.Read: "read", f.Member: "member",
    f.Contact: "contact",
}
# Which decorator each kind of change entry goes to (never to on_message).
CHANGE_EVENTS: dict[str, str] = {
    "react": "reaction", "unreact": "reaction", "edit": "edit", "delete": "delete"}


def typed_handlers() -> Handlers:
    """An empty handler list for each typed decorator."""
    return {kind: [] for kind in (*TYPED_EVENTS.values(), *CHANGE_EVENTS.values())}


class TypedDecorators:
    """``@bot.on_presence`` … ``@bot.on_delete``: each adds to one list of handlers."""

    _typed_handlers: Handlers

    def on_presence(self, handler: H) -> H:
        """``async def handler(p: Presence)``: a contact's or room mate's presence."""
        self._typed_handlers["presence"].append(handler)
        return handler

    def on_typing(self, handler: H) -> H:
        """``async def handler(t: Typing)``: someone is typing in ``t.room``."""
        self._typed_handlers["typing"].append(handler)
        return handler

    def on_read(self, handler: H) -> H:
        """``async def handler(r: Read)``: ``r.name`` read ``r.room`` up to ``r.seq``."""
        self._typed_handlers["read"].append(handler)
        return handler

    def on_member(self, handler: H) -> H:
        """``async def handler(m: Member)``: ``m.name`` joined or left (``m.op``) ``m.room``."""
        self._typed_handlers["member"].append(handler)
        return handler

    def on_contact(self, handler: H) -> H:
        """``async def handler(c: Contact)``: every ``contact`` frame (``c.op``: ``add``,
        ``remove``, ``block``, ``unblock`` from any of the bot's sessions, ``added_you``)."""
        self._typed_handlers["contact"].append(handler)
        return handler

    def on_reaction(self, handler: H) -> H:
        """``async def handler(change: Msg)``: ``change.sender`` put (``change.change ==
        "react"``) or took back (``"unreact"``) ``change.emoji`` on message
        ``change.target`` of ``change.room`` (:meth:`target_of` fetches it)."""
        self._typed_handlers["reaction"].append(handler)
        return handler

    def on_edit(self, handler: H) -> H:
        """``async def handler(change: Msg)``: message ``change.target`` now reads
        ``change.text``."""
        self._typed_handlers["edit"].append(handler)
        return handler

    def on_delete(self, handler: H) -> H:
        """``async def handler(change: Msg)``: message ``change.target`` was deleted (by
        its author, or by a moderator: ``change.sender``)."""
        self._typed_handlers["delete"].append(handler)
        return handler
