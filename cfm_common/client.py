"""The cfm client SDK: one connection that stays up, and every message once, in order.

    client = Client("ws://127.0.0.1:7878/ws", "alice")
    await client.connect()
    async for event in client: ...          # Connected, StateChanged, frames.Msg, ...
    await client.say("hi", room="#lobby")   # -> frames.Ack
    await client.react("#lobby", 41, "👍")   # edit, delete, react, search: _changes.py

This module is the asyncio shell: it opens sockets (:mod:`cfm_common._connect`), sleeps,
and moves bytes between the socket and :class:`cfm_common._core.ClientCore`, which
decides everything else without I/O — reply matching, retries, pacing, resume and gap
filling (docs/bots.md, "How the SDK is built", says which module decides what). One
background task owns the connection: it reads frames into the core, and when the
connection drops it reconnects on the schedule of :mod:`cfm_common._reconnect`. One
writer task per connection writes what the core lets out, when it lets it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
import uuid
from pathlib import Path
from typing import Any

from cfm_common import PROTOCOL_VERSION, rules
from cfm_common import frames as f
from cfm_common._backoff import Backoff
from cfm_common._changes import MessageChanges
from cfm_common._core import ClientCore
from cfm_common._handling import watch_send
from cfm_common._link import Link
from cfm_common._outbox import ChangeFrame, Outgoing, Reply
from cfm_common._persist import SeenFile, TokenFile
from cfm_common._reconnect import Reconnect
from cfm_common._states import Connected, ConnectionState, Event, StateChanged
from cfm_common.errors import (
    ClientError,
    ConnectCause,
    ConnectFailed,
    ConnectionClosed,
    LocalRefusal,
    ServerRefused,
    TimedOut,
)
from cfm_common.servers import ServerList, Servers, parse_servers, split_servers

log = logging.getLogger(__name__)

# ClientError and its kinds live in cfm_common.errors; imported from here they keep
# working for code written before the tree.
__all__ = [
    "Client", "ClientError", "ConnectCause", "ConnectFailed", "Connected", "ConnectionClosed",
    "ConnectionState", "Event", "LocalRefusal", "ServerRefused", "StateChanged", "TimedOut",
]
EVENT_BACKLOG_WARNING = 10_000
_END = object()


class Client(MessageChanges):
    """A cfm connection that reconnects, resumes and delivers each message once.

    Message changes arrive as :class:`~cfm_common.frames.Msg` events with ``is_change``
    true (``change``, ``target``): apply them to the message they name, do not show
    them as messages (docs/bots.md, "Edits, deletes, reactions")."""

    def __init__(
        self, url: Servers, name: str, *, token: str | None = None,
        token_file: str | Path | bool | None = None, seen_file: str | Path | None = None,
        status: str = "online", display: str | None = None, psm: str | None = None,
        bot: bool = False, client_name: str = "cfm-sdk/0.1", reconnect: bool = True,
        request_timeout: float = 10.0, backoff: Backoff | None = None, quiet: bool = False,
        ssl: ssl_module.SSLContext | None = None, invite: str | None = None,
        manual_seen: bool = False,
    ) -> None:
        # One URL is taken as given and checked when connecting (a ClientError, as it
        # always was); several are checked here, so that a bad one is not skipped quietly.
        several = not isinstance(url, str) or len(split_servers(url)) > 1
        servers = ServerList(parse_servers(url) if several else (url,))
        self._reconnect = Reconnect(servers, backoff or Backoff())
        # With a seen file: a message counts as seen when the program says so
        # (mark_seen), not when the iterator hands it over (Bot: when it is handled).
        self._manual_seen = manual_seen
        self._invite = invite  # sent only while we have no token: to claim a new handle
        self._quiet = quiet  # hello.quiet: no member frames, less presence
        self._name, self._bot, self._client_name = name, bot, client_name
        self._tokens = TokenFile(self.urls, name, token, token_file)
        self._seen = SeenFile(seen_file)
        self._core = ClientCore(name, emit=self._emit, handed=self._seen.rooms, status=status,
                                display=display, psm=psm, request_timeout=request_timeout)
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._backlog_warned = False
        self._futures: dict[int, asyncio.Future[Any]] = {}  # outbox slot → its caller's
        # For wss:// only, ssl=None: the system's CAs (and $SSL_CERT_FILE, if set).
        self._link = Link(self._core, self._reconnect, self._tokens, hello=self._hello,
                          ended=self._ended, reconnect=reconnect, ssl=ssl)
        self._kick = self._link.kick
        self._page_locks: dict[tuple[str, str], asyncio.Lock] = {}

    # --- properties -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server URL in use: the one connected to, or the next one to try."""
        return self._reconnect.servers.current

    @property
    def urls(self) -> tuple[str, ...]:
        """Every server URL given, in the order they are tried."""
        return self._reconnect.servers.urls

    @property
    def name(self) -> str:
        """Our handle as the server spells it (lower-cased) once connected."""
        return self._core.name

    @property
    def token(self) -> str | None:
        return self._tokens.token

    @property
    def welcome(self) -> f.Welcome | None:
        """The latest ``welcome``."""
        return self._core.welcome

    @property
    def state(self) -> ConnectionState:
        return self._core.state

    @property
    def pending(self) -> int:
        """Frames sent or queued that have no answer yet."""
        return len(self._core.outbox)

    @property
    def backlog(self) -> int:
        """Frames waiting to be written on this connection (paced to the server's limits):
        unwritten sends and requests, read marks, a presence change."""
        return self._core.sendq.backlog()

    @property
    def request_timeout(self) -> float:
        return self._core.request_timeout

    @request_timeout.setter
    def request_timeout(self, seconds: float) -> None:
        self._core.request_timeout = seconds

    @property
    def _backoff(self) -> Backoff:
        return self._reconnect.backoff

    @_backoff.setter
    def _backoff(self, backoff: Backoff) -> None:
        self._reconnect.backoff = backoff

    @property
    def _read_marks(self) -> dict[str, int]:
        return self._core.read_marks

    # --- life cycle -----------------------------------------------------------------

    async def connect(self, *, wait: bool = False) -> f.Welcome:
        """Connect and sign in; raises :class:`ClientError` if that fails.

        With several URLs each is tried in turn, at once, and this raises only when all
        of them failed (the error names each). With ``wait=True`` servers that cannot be
        reached yet (``connect_failed``) are tried again with the reconnect back-off until
        one answers or :meth:`close` is called; a refusal (``bad_token``,
        ``name_taken``…) still raises at once. Afterwards a background task keeps the
        connection alive until :meth:`close`.
        """
        if self._link.task is not None or self._core.closed:
            raise RuntimeError("connect() may be called once per Client")
        return await self._link.connect(wait=wait)

    async def close(self) -> None:
        """Close the connection and stop every task; pending requests fail with ``closed``."""
        await self._link.close()

    def reconnect_now(self) -> None:
        """While waiting to reconnect, try at once (a person pressed "reconnect now");
        the back-off starts again from its first step. Does nothing when connected."""
        self._link.reconnect_now()

    def _hello(self) -> f.Hello:
        core, token = self._core, self._tokens.token
        claiming = token is None
        return f.Hello(
            v=PROTOCOL_VERSION, name=self._name, token=token, status=core.status,
            display=core.display, psm=core.psm, client=self._client_name,
            bot=True if self._bot else None, quiet=True if self._quiet else None,
            invite=self._invite if claiming else None,
            claim=self._tokens.claim() if claiming else None,
        )

    def _ended(self) -> None:
        self._seen.save()
        self._events.put_nowait(_END)

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- events ---------------------------------------------------------------------

    def __aiter__(self) -> Client:
        return self

    async def __anext__(self) -> Event:
        while True:
            item = await self._events.get()
            if item is _END:
                self._events.put_nowait(_END)  # every other iterator ends too
                raise StopAsyncIteration
            event, epoch = item
            if isinstance(event, f.Msg) and not self._manual_seen:
                self._seen.rooms[event.room] = (event.seq, epoch)
                # Read after close(): the program may exit any moment now.
                self._seen.changed(now=self._core.closed)
            if isinstance(event, f.Msg) and event.hidden:
                # A placeholder for a message from someone this user blocked: it keeps
                # the room gapless here; the program has nothing to show.
                continue
            if self._backlog_warned and self._events.qsize() < EVENT_BACKLOG_WARNING // 2:
                self._backlog_warned = False
            return event

    def mark_seen(self, room: str, seq: int) -> None:
        """With ``manual_seen=True``: every message of ``room`` up to ``seq`` is done with,
        and the seen file may say so (a restart resumes after it)."""
        epoch = self._core.resume.epoch(room)
        done = self._seen.rooms.get(room)
        if done is not None and seq <= done[0] and done[1] == epoch:
            return  # never back, unless the room's history was reset
        self._seen.rooms[room] = (seq, epoch)
        self._seen.changed(now=self._core.closed)

    def _emit(self, event: Event, epoch: str | None) -> None:
        self._events.put_nowait((event, epoch))
        if not self._backlog_warned and self._events.qsize() > EVENT_BACKLOG_WARNING:
            self._backlog_warned = True
            log.warning("%s: more than %d events wait to be read (iterate the client)",
                        self.name, EVENT_BACKLOG_WARNING)

    # --- sending --------------------------------------------------------------------

    async def say(
        self, text: str, room: str | None = None, to: str | None = None, id: str | None = None,
        *, reply: int | None = None,
    ) -> f.Ack:
        """Send a message to a room or (``to``) a user; returns its ``ack``. ``reply``:
        the seq, in the same room, of the message this one answers.

        Queued while disconnected and sent again with the same id until acknowledged;
        cancelling the call does not withdraw the message.
        """
        if text == "":
            raise LocalRefusal(rules.ErrorCode.BAD_FRAME, "an empty message: say needs some text")
        return await self._send_message(f.Say(text=text, id=id or uuid.uuid4().hex, room=room,
                                              to=to, reply=reply), "say")

    async def nudge(self, to: str, id: str | None = None) -> f.Ack:
        """Nudge a user (stored as a ``msg`` of kind ``nudge`` in the DM room)."""
        frame = f.Nudge(to=to, id=id or uuid.uuid4().hex)
        if self._core.outbox.find(frame.id) is None:
            self._core.check(frame)
            self._core.check_nudge(to, asyncio.get_running_loop().time())
        return await self._send_message(frame, "nudge")

    async def typing(self, room: str | None = None, to: str | None = None) -> None:
        """Tell the room we are typing; dropped while disconnected (it would be stale),
        and when the server's typing budget is used up (it would be refused)."""
        self._core.typing(f.SendTyping(room=room, to=to), asyncio.get_running_loop().time())
        self._kick()

    async def set_presence(
        self, status: str | None = None, display: str | None = None, psm: str | None = None
    ) -> None:
        """Change status, display name or personal message; kept across reconnects."""
        self._core.set_presence(status, display, psm)
        self._kick()

    async def join(self, room: str, members_limit: int | None = None) -> f.Joined:
        """Join a group room; messages we lack are replayed as events.

        ``members_limit`` caps ``joined.members`` (the first names in order) and makes
        the server send ``joined.count``; page the rest with :meth:`members`.
        """
        return await self._request(self._core.join_frame(room, members_limit), "join", room)

    async def members(
        self, room: str, after: str | None = None, limit: int = 100
    ) -> f.MembersPage:
        """A page of a group room's members sorted by name, each after ``after``."""
        return await self._paged(f.GetMembers(room=room, after=after, limit=limit),
                                 "members", room)

    async def leave(self, room: str) -> f.Left:
        return await self._request(f.Leave(room=room), "leave", room)

    async def history(
        self, room: str, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> f.History:
        """A page of a room's stored messages (returned, not emitted as events)."""
        frame = f.GetHistory(room=room, before=before, after=after, limit=limit)
        return await self._paged(frame, "history", room)

    async def _paged(self, frame: f.ClientFrame, kind: str, room: str) -> Any:
        """One ``history`` (or ``members``) request per room at a time, as before
        request ids (tests/sdk/test_budget_resend.py holds the SDK to it): ids would
        match two in flight, but a program paging a room gains nothing from it."""
        lock = self._page_locks.setdefault((kind, room), asyncio.Lock())
        async with lock:
            return await self._request(frame, kind, room)

    async def mark_read(self, room: str, seq: int) -> None:
        """Move our read mark; remembered and re-sent after a reconnect if still ahead.

        Coalesced: marks of one room that wait for the server's budget go out as one,
        the newest.
        """
        self._core.mark_read(room, seq, asyncio.get_running_loop().time())
        self._kick()

    async def contact(self, op: str, name: str) -> f.Contact:
        """``add``, ``remove``, ``block`` or ``unblock`` a user; returns the echo."""
        frame = f.ContactRequest(op=op, name=name)
        return await self._request(frame, "contact", (op, rules.normalize_name(name)))

    # --- waiting for answers --------------------------------------------------------

    def _future(self, entry: Outgoing) -> asyncio.Future[Any]:
        """The future the callers of ``entry`` wait on, settled with its reply."""
        future = self._futures.get(entry.slot)
        if future is not None:
            return future
        future = self._futures[entry.slot] = asyncio.get_running_loop().create_future()
        # A say whose caller gave up may still fail later: nobody needs to be told.
        future.add_done_callback(lambda fut: fut.cancelled() or fut.exception())

        def settled(reply: Reply) -> None:
            self._futures.pop(entry.slot, None)
            if future.done():
                return
            if reply.error is not None:
                future.set_exception(reply.error)
            elif reply.withdrawn:
                future.cancel()
            else:
                future.set_result(reply.value)

        entry.reply.on_settled = settled
        self._kick()
        return future

    async def _send_message(self, frame: f.Say | f.Nudge | ChangeFrame, kind: str) -> f.Ack:
        future = self._future(self._core.message(frame, kind))
        watch_send(future)  # a Bot handler waits for its sends' acks
        # Shielded: a caller that gives up does not take the message back.
        return await asyncio.shield(future)

    async def _request(self, frame: f.ClientFrame, kind: str, key: Any) -> Any:
        """Send a request and wait for its answer, matched by its request id, at most
        ``request_timeout`` seconds — not counting the time it waits, connected, for the
        rate budget (:func:`cfm_common._retry.answer_deadline`)."""
        entry = self._core.request(frame, kind, key)
        future = self._future(entry)
        loop = asyncio.get_running_loop()
        deadline: float | None = loop.time() + self.request_timeout
        try:
            while deadline is not None:
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(future),
                                                  max(0.0, deadline - loop.time()))
                deadline = self._core.answer_deadline(entry, loop.time())
            raise TimedOut(frame.T, self.request_timeout)
        finally:
            self._core.outbox.withdraw(entry)  # answered (no-op), timed out or given up

