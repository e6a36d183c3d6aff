"""The :class:`~cfm_common.client.Client` calls of the message-changes and search
extensions (docs/protocol.md, "Message changes" and "Search"): edit, delete, react,
unreact, moderators, search.

A mixin so that client.py stays one screenful of shell: each call builds its frame and
hands it to the client's one door for messages (acked, queued while disconnected and
sent again with the same id until acked, like a say) or for requests (answered by
request id, within ``request_timeout``). The rules — retries, matching, our own entry
once acked — are the core's (:mod:`cfm_common._core`).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from cfm_common import frames as f
from cfm_common import rules
from cfm_common.errors import LocalRefusal

if TYPE_CHECKING:
    from cfm_common._outbox import ChangeFrame


class MessageChanges:
    """Changing messages already sent, and finding stored ones."""

    if TYPE_CHECKING:  # provided by Client
        async def _send_message(self, frame: f.Say | f.Nudge | ChangeFrame,
                                kind: str) -> f.Ack: ...

        async def _request(self, frame: f.ClientFrame, kind: str, key: Any) -> Any: ...

        async def history(self, room: str, before: int | None = None,
                          after: int | None = None, limit: int = 50) -> f.History: ...

    async def edit(self, room: str, target: int, text: str, id: str | None = None) -> f.Ack:
        """Replace the text of our message ``target`` (its seq) in ``room``; returns the
        ``ack`` of the change entry. Only the author may (``forbidden``)."""
        if text == "":
            raise LocalRefusal(rules.ErrorCode.BAD_FRAME,
                               "an empty edit: delete the message instead")
        frame = f.Edit(room=room, target=target, text=text, id=id or uuid.uuid4().hex)
        return await self._send_message(frame, frame.T)

    async def delete(self, room: str, target: int, id: str | None = None) -> f.Ack:
        """Delete message ``target`` of ``room``: our own, or anyone's in a group room we
        moderate. Its text is erased on the server; it stays as a tombstone."""
        frame = f.Delete(room=room, target=target, id=id or uuid.uuid4().hex)
        return await self._send_message(frame, frame.T)

    async def react(self, room: str, target: int, emoji: str, id: str | None = None) -> f.Ack:
        """Put ``emoji`` on message ``target``; once per emoji and user (a second time:
        ``forbidden``). A retry with the same id is stored once."""
        frame = f.React(room=room, target=target, emoji=emoji, id=id or uuid.uuid4().hex)
        return await self._send_message(frame, frame.T)

    async def unreact(self, room: str, target: int, emoji: str,
                      id: str | None = None) -> f.Ack:
        """Take our ``emoji`` off message ``target``."""
        frame = f.Unreact(room=room, target=target, emoji=emoji, id=id or uuid.uuid4().hex)
        return await self._send_message(frame, frame.T)

    async def get_message(self, room: str, seq: int) -> f.StoredMsg | None:
        """Message ``seq`` of ``room`` as it is now (edited, a tombstone, its reactions):
        the one a reply answers or a change changes. None if the server no longer has it
        (removed by retention)."""
        page = await self.history(room, before=seq + 1, limit=1)
        return next((m for m in page.msgs if m.seq == seq), None)

    async def moderators(self, room: str, *, add: str | None = None,
                         remove: str | None = None) -> f.Moderators:
        """A group room's moderators; with ``add`` or ``remove`` (the creator only) a
        change first. The answer names them all, the creator included."""
        frame = f.SetModerators(room=room, add=add, remove=remove)
        return await self._request(frame, frame.T, room)

    async def search(self, text: str, room: str | None = None, before: str | None = None,
                     limit: int = 20) -> f.SearchResults:
        """Stored messages holding every word of ``text``, newest first, from the rooms
        and DMs we are in (or only ``room``); returned, not emitted as events. For the
        next page pass the answer's ``next`` as ``before`` (while ``more``). The index is
        built behind the writes: ``behind`` counts what it does not hold yet."""
        if f.Search.T not in f.CLIENT_FRAMES:
            raise LocalRefusal(rules.ErrorCode.BAD_FRAME,
                               "search is not in this protocol version yet")
        frame = f.Search(text=text, room=room, before=before, limit=limit)
        return await self._request(frame, frame.T, (text, room, before))
