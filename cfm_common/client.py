"""The cfm client SDK: one connection that stays up, and every message once, in order.

    client = Client("ws://127.0.0.1:7878/ws", "alice")
    await client.connect()
    async for event in client: ...          # Connected, StateChanged, frames.Msg, ...
    await client.say("hi", room="#lobby")   # -> frames.Ack

How the promises are kept:

- One background task owns the connection: it reads frames, and when the connection
  drops it reconnects with jittered exponential back-off (:mod:`cfm_common._backoff`),
  sends ``hello`` with the saved token and resumes. Given several URLs (the nodes of a
  cluster, :mod:`cfm_common.servers`), it moves to the next one at once on a failure
  and backs off only after a whole round of them failed. Close codes 4002/4003/4004 (and the
  matching hello errors) are final: the client goes CLOSED instead of looping.
- Every room's messages pass through :class:`cfm_common._resume.Resume`, which hands
  them on in ``seq`` order exactly once, whether they come live, from a ``join`` replay,
  from a ``history`` page fetched after a reconnect, or from this client's own ``ack``.
- Every ``say``/``nudge`` stays in the outbox until its ``ack``; after a reconnect the
  outbox is sent again in order with the same ids, which the server stores once.
  Requests (``join``, ``history``, ``contact``, ``leave``) wait in the same outbox, so
  nothing is dropped while the connection is down and nothing is sent twice on one.
- Frames are written by one writer task per connection, in the order they were queued,
  each when its kind's copy of the server's token bucket (:mod:`cfm_common._pacing`,
  from ``welcome.limits``) has a token: the client paces itself instead of collecting
  ``rate_limited`` refusals (which the server counts toward a 4008 close). Read marks,
  presence and typing travel in a side lane that never waits behind the outbox; read
  marks are coalesced per room (only the newest goes out).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl as ssl_module
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cfm_common import PROTOCOL_VERSION, SUBPROTOCOL, codec, rules, tokens
from cfm_common import frames as f
from cfm_common._backoff import Backoff
from cfm_common._handling import watch_send
from cfm_common._pacing import Pacer
from cfm_common._resume import Resume
from cfm_common._sendqueue import Outgoing, SendQueue
from cfm_common.errors import ProtocolError
from cfm_common.rules import RATE_KIND
from cfm_common.servers import ServerList, Servers, check_url, parse_servers, split_servers

log = logging.getLogger(__name__)

# Close codes after which reconnecting cannot help: the server refused the identity.
FATAL_CLOSES = frozenset({
    rules.CloseCode.NAME_TAKEN, rules.CloseCode.BAD_TOKEN, rules.CloseCode.UNSUPPORTED_VERSION,
})
FATAL_HELLO_ERRORS = frozenset({
    rules.ErrorCode.NAME_TAKEN, rules.ErrorCode.BAD_TOKEN, rules.ErrorCode.UNSUPPORTED_VERSION,
    rules.ErrorCode.NAME_INVALID,
    rules.ErrorCode.FORBIDDEN,  # a new handle refused: registration closed, or a bad invite
})
# What connect(wait=True) tries again; anything else (a refusal, an untrusted
# certificate) needs a person.
WAIT_RETRIES = frozenset({"connect_failed", rules.ErrorCode.INTERNAL})
HISTORY_PAGE = rules.MAX_HISTORY_LIMIT
# A connection that lived this long was a good one: the back-off starts again from 0.5 s.
STABLE_AFTER = 10.0
# After a 1012 close (the server is restarting) the back-off stops growing at 4 s for a
# minute: a restart takes seconds, and 16 s waits after it would feel like an outage.
RESTART_CLOSE = 1012
RESTART_CAP = 4.0
RESTART_WINDOW = 60.0
# A server frame can hold a history page of 200 long messages; the server's own limit
# (limits.max_frame) is about what clients send.
MAX_INCOMING = 16 * 1024 * 1024
EVENT_BACKLOG_WARNING = 10_000
# A gap right behind our own unacked say is usually that say: give its ack a moment.
OWN_ACK_GRACE = 2.0
# A say or nudge the server could not store (``internal``: its disk is full, say) is sent
# again with the same id, after 0.5, 1, 2, 4, 8 and 8 s, before its call fails.
INTERNAL_RETRIES = 6
INTERNAL_BACKOFF = (0.5, 8.0)
# How long close() lets queued read marks and presence go out.
CLOSE_FLUSH = 2.0


class ConnectionState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The connection moved to ``state``; ``retry_in`` is the wait before the next try."""

    state: ConnectionState
    retry_in: float | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Connected:
    """A (re)connection succeeded; comes after every ``welcome``."""

    welcome: f.Welcome


Event = Connected | StateChanged | f.ServerFrame


class ClientError(Exception):
    """A request failed: the server's ``error`` code, or ``timeout``, ``closed``,
    ``connect_failed``, ``disconnected`` from the SDK itself.

    ``final`` is true for a ``connect_failed`` that trying again cannot mend (an
    ``http://`` URL, a path the server answers 404 for, a server that does not speak
    cfm): ``connect(wait=True)`` raises it at once instead of waiting.

    ``by_url`` is set when connecting to several URLs failed: each URL tried and its own
    error (``msg`` says them all in one line).
    """

    def __init__(
        self, code: str, msg: str, retry_ms: int | None = None, *, final: bool = False,
        by_url: Mapping[str, ClientError] | None = None,
    ) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = str(code)
        self.msg = msg
        self.retry_ms = retry_ms
        self.final = final
        self.by_url: dict[str, ClientError] = dict(by_url or {})

    def __repr__(self) -> str:
        return f"ClientError({self.code!r}, {self.msg!r}, retry_ms={self.retry_ms!r})"


_END = object()


def bad_url_message(url: str, exc: Exception) -> str:
    if url.split(":", 1)[0].lower() in ("http", "https"):
        return check_url(url) or str(exc)
    return f"bad server URL {url!r}: {exc} (want ws://host:port/ws or wss://…)"


def round_error(errors: dict[str, ClientError]) -> ClientError:
    """One error for a round of failed connects: the error itself for one URL, else
    every URL's own words in one line (and ``by_url``), final only if each is."""
    if len(errors) == 1:
        return next(iter(errors.values()))
    codes = {exc.code for exc in errors.values()}
    code = codes.pop() if len(codes) == 1 else "connect_failed"
    msg = f"none of the {len(errors)} servers answered: " + "; ".join(
        exc.msg if url in exc.msg else f"{url}: {exc.msg}" for url, exc in errors.items())
    retry = [exc.retry_ms for exc in errors.values() if exc.retry_ms is not None]
    return ClientError(code, msg, min(retry) if retry else None,
                       final=all(exc.final for exc in errors.values()), by_url=errors)


def retryable(exc: ClientError) -> bool:
    """What connect(wait=True) tries again."""
    return exc.code in WAIT_RETRIES and not exc.final


def status_message(url: str, status: int) -> str:
    if status == 429:
        return f"refused: too many connections from your address ({url} answered HTTP 429)"
    if status == 404:
        return f"{url} answered HTTP 404: no cfm server at this path (cfm listens at /ws)"
    if status in (400, 426):  # what a WebSocket server answers to a subprotocol it lacks
        return (f"{url} refused the WebSocket handshake (HTTP {status}): it does not speak"
                f" {SUBPROTOCOL} (is it a cfm server?)")
    return f"cannot reach {url}: it answered HTTP {status} instead of a WebSocket handshake"


def status_is_final(status: int) -> bool:
    """A person must change something: a 4xx other than "too many" or "too slow"."""
    return 400 <= status < 500 and status not in (408, 429)


class Client:
    """A cfm connection that reconnects, resumes and delivers each message once."""

    def __init__(
        self,
        url: Servers,
        name: str,
        *,
        token: str | None = None,
        token_file: str | Path | bool | None = None,
        seen_file: str | Path | None = None,
        status: str = "online",
        display: str | None = None,
        psm: str | None = None,
        bot: bool = False,
        client_name: str = "cfm-sdk/0.1",
        reconnect: bool = True,
        request_timeout: float = 10.0,
        backoff: Backoff | None = None,
        quiet: bool = False,
        ssl: ssl_module.SSLContext | None = None,
        invite: str | None = None,
        manual_seen: bool = False,
    ) -> None:
        # One URL is taken as given and checked when connecting (a ClientError, as it
        # always was); several are checked here, so that a bad one is not skipped quietly.
        several = not isinstance(url, str) or len(split_servers(url)) > 1
        self._servers = ServerList(parse_servers(url) if several else (url,))
        # With a seen file: a message counts as seen when the program says so
        # (mark_seen), not when the iterator hands it over (Bot: when it is handled).
        self._manual_seen = manual_seen
        # For wss:// only; None: the system's CAs (and $SSL_CERT_FILE, if set).
        self._ssl = ssl
        # Sent only while we have no token: it is for claiming a new handle.
        self._invite = invite
        # hello.quiet: no member frames, no presence heard only through a shared group room.
        self._quiet = quiet
        self._name = name
        self._status = status
        self._display = display
        self._psm = psm
        self._bot = bot
        self._client_name = client_name
        self._reconnect = reconnect
        self.request_timeout = request_timeout
        self._backoff = backoff or Backoff()

        if token_file is False:
            self._token_path: Path | None = None
        elif token_file is None or token_file is True:
            # Under the first URL: the same file whichever node we are on (tokens.py).
            self._token_path = tokens.default_token_file(self.urls, name)
        else:
            self._token_path = Path(token_file)
        self._saved_token = tokens.read_token(self._token_path) if self._token_path else None
        found = self._saved_token
        if found is None and token_file in (None, True):
            # The same cluster listed in another order before: its token is under another
            # URL; the welcome then writes it under the first one.
            found = tokens.read_any_token(self.urls[1:], name)
        self._token = token if token is not None else found

        self._seen_path = Path(seen_file) if seen_file is not None else None
        saved = tokens.read_seen(self._seen_path) if self._seen_path else {}
        self._resume = Resume(saved)
        self._handed: dict[str, tuple[int, str | None]] = dict(saved)
        self._seen_save: asyncio.TimerHandle | None = None

        self._state = ConnectionState.CLOSED
        self._welcome: f.Welcome | None = None
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._backlog_warned = False
        self._outbox: dict[int, Outgoing] = {}  # insertion order = send order
        # say/nudge by their id, requests by their request id (the answer's ref).
        self._by_id: dict[str, Outgoing] = {}
        self._next_slot = 0
        self._next_request = 0
        # This connection's server gives request ids back (seen an answer with a ref):
        # an answer without one is then a copy meant for another of the user's sessions.
        self._server_refs = False
        self._read_marks: dict[str, int] = {}
        # What the writer of this connection has still to write, paced (_sendqueue).
        self._sendq = SendQueue(codec.encode)
        self._kick = asyncio.Event()  # wakes the writer: something was queued
        self._ready = False  # a live, flushed connection: new frames go straight out
        self._generation = 0
        self._ws: Any = None
        self._connected_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._fills: dict[str, asyncio.Task[None]] = {}
        self._refill: set[str] = set()
        self._budget_retry: asyncio.TimerHandle | None = None
        # Says wait while the server could not store one (see _hold_says).
        self._held = False
        self._held_retry: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()  # cuts a back-off wait short (reconnect_now, close)
        self._page_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._closed = False

    # --- properties -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server URL in use: the one connected to, or the next one to try."""
        return self._servers.current

    @property
    def urls(self) -> tuple[str, ...]:
        """Every server URL given, in the order they are tried."""
        return self._servers.urls

    @property
    def name(self) -> str:
        """Our handle as the server spells it (lower-cased) once connected."""
        return self._welcome.name if self._welcome else self._name

    @property
    def token(self) -> str | None:
        return self._token

    @property
    def welcome(self) -> f.Welcome | None:
        """The latest ``welcome``."""
        return self._welcome

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def pending(self) -> int:
        """Frames sent or queued that have no answer yet."""
        return len(self._outbox)

    @property
    def backlog(self) -> int:
        """Frames waiting to be written on this connection (paced to the server's limits):
        unwritten sends and requests, read marks, a presence change."""
        return self._sendq.backlog()

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
        if self._task is not None or self._closed:
            raise RuntimeError("connect() may be called once per Client")
        self._set_state(ConnectionState.CONNECTING)
        try:
            failures: dict[str, ClientError] = {}
            while True:
                url = self.url
                try:
                    ws, welcome = await self._open()
                    break
                except ClientError as exc:
                    # A refusal of who we are: every node of the server says the same.
                    if exc.code in FATAL_HELLO_ERRORS or self._closed:
                        raise
                    failures[url] = exc
                    if not self._servers.failed():
                        log.info("%s: %s; trying %s", self._name, exc.msg, self.url)
                        continue
                    # Not up yet, or up but unable to store a new account: try again.
                    again = any(retryable(e) for e in failures.values())
                    error, failures = round_error(failures), {}
                    if not wait or not again:
                        if error is exc:
                            raise
                        raise error from exc
                    delay = self._backoff.next()
                    log.warning("%s: %s; trying again in %.1f s", self._name, error.msg, delay)
                    self._set_state(ConnectionState.RECONNECTING, retry_in=delay,
                                    reason=error.msg)
                    await self._nap(delay)
                    if self._closed:
                        raise ClientError("closed", "the client was closed while connecting") \
                            from None
                    self._set_state(ConnectionState.CONNECTING)
        except ClientError as exc:
            if not self._closed:
                self._end(exc)
            raise
        except BaseException:  # cancelled: this client will not connect any more
            self._end(ClientError("closed", "connect() was cancelled"))
            raise
        if self._closed:  # close() was called while we were signing in
            await ws.close()
            raise ClientError("closed", "the client was closed while connecting")
        self._on_welcome(ws, welcome)
        self._task = asyncio.create_task(self._supervise(ws), name=f"cfm-client-{self.name}")
        return welcome

    async def close(self) -> None:
        """Close the connection and stop every task; pending requests fail with ``closed``."""
        if self._closed:
            if self._task is not None:
                await asyncio.gather(self._task, return_exceptions=True)
            return
        self._closed = True
        self._wake.set()
        self._cancel_fills()
        if self._ready:
            # Read marks and a presence change still queued go out before the close, as
            # far as the server's limits let them in a moment.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CLOSE_FLUSH
            while self._ready and self._sendq.side_busy() and loop.time() < deadline:
                await asyncio.sleep(0.02)
        self._ready = False
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 3)
        self._fail_all(ClientError("closed", "the client was closed"))
        self._save_seen()
        self._set_state(ConnectionState.CLOSED, reason="closed by the client")
        self._events.put_nowait(_END)

    def reconnect_now(self) -> None:
        """While waiting to reconnect, try at once (a person pressed "reconnect now");
        the back-off starts again from its first step. Does nothing when connected."""
        self._backoff.reset()
        self._wake.set()

    async def _nap(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if :meth:`reconnect_now` or close() is called."""
        self._wake.clear()
        if self._closed:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

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
                self._handed[event.room] = (event.seq, epoch)
                if self._closed:
                    # Events read after close(): the program may exit any moment now.
                    self._save_seen()
                else:
                    self._schedule_seen_save()
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
        done = self._handed.get(room)
        if done is not None and seq <= done[0] and done[1] == self._resume.epoch(room):
            return  # never back, unless the room's history was reset
        self._handed[room] = (seq, self._resume.epoch(room))
        if self._closed:
            self._save_seen()
        else:
            self._schedule_seen_save()

    def _emit(self, event: Event, epoch: str | None = None) -> None:
        self._events.put_nowait((event, epoch))
        if not self._backlog_warned and self._events.qsize() > EVENT_BACKLOG_WARNING:
            self._backlog_warned = True
            log.warning("%s: more than %d events wait to be read (iterate the client)",
                        self.name, EVENT_BACKLOG_WARNING)

    def _set_state(
        self, state: ConnectionState, *, retry_in: float | None = None, reason: str | None = None
    ) -> None:
        self._state = state
        self._emit(StateChanged(state, retry_in, reason))

    # --- sending --------------------------------------------------------------------

    async def say(
        self, text: str, room: str | None = None, to: str | None = None, id: str | None = None
    ) -> f.Ack:
        """Send a message to a room or (``to``) a user; returns its ``ack``.

        Queued while disconnected and sent again with the same id until acknowledged;
        cancelling the call does not withdraw the message.
        """
        if text == "":
            raise ClientError("bad_frame", "an empty message: say needs some text")
        frame = f.Say(text=text, id=id or uuid.uuid4().hex, room=room, to=to)
        return await self._send_tracked(frame, "say")

    async def nudge(self, to: str, id: str | None = None) -> f.Ack:
        """Nudge a user (stored as a ``msg`` of kind ``nudge`` in the DM room)."""
        frame = f.Nudge(to=to, id=id or uuid.uuid4().hex)
        assert frame.id is not None
        if frame.id not in self._by_id:
            self._check(frame)
            # The server lets one nudge per interval through to the same user; a second
            # one is refused here, so that it never counts against us there.
            peer = rules.normalize_name(to)
            now = asyncio.get_running_loop().time()
            wait = self._sendq.pacer.nudge_wait(peer, now)
            if wait > 0:
                raise ClientError("rate_limited", f"one nudge to {peer} at a time; wait a moment",
                                  max(1, int(wait * 1000) + 1))
            self._sendq.pacer.note_nudge(peer, now)
        return await self._send_tracked(frame, "nudge")

    async def typing(self, room: str | None = None, to: str | None = None) -> None:
        """Tell the room we are typing; dropped while disconnected (it would be stale),
        and when the server's typing budget is used up (it would be refused)."""
        frame = f.SendTyping(room=room, to=to)
        self._check(frame)
        if self._ready and self._sendq.add_typing(frame, asyncio.get_running_loop().time()):
            self._kick.set()

    async def set_presence(
        self, status: str | None = None, display: str | None = None, psm: str | None = None
    ) -> None:
        """Change status, display name or personal message; kept across reconnects."""
        frame = f.SetPresence(status=status, display=display, psm=psm)
        self._check(frame)
        self._status = status if status is not None else self._status
        self._display = display if display is not None else self._display
        self._psm = psm if psm is not None else self._psm
        if self._ready:
            # Coalesced: the writer sends what is current when the budget allows.
            self._sendq.presence = True
            self._kick.set()
        # Otherwise the next hello carries it.

    async def join(self, room: str, members_limit: int | None = None) -> f.Joined:
        """Join a group room; messages we lack are replayed as events.

        ``members_limit`` caps ``joined.members`` (the first names in order) and makes
        the server send ``joined.count``; page the rest with :meth:`members`.
        """
        since, epoch = self._resume.join_since(room)
        frame = f.Join(room=room, since=since, epoch=epoch, members_limit=members_limit)
        return await self._request(frame, "join", room)

    async def members(
        self, room: str, after: str | None = None, limit: int = 100
    ) -> f.MembersPage:
        """A page of a group room's members sorted by name, each after ``after``."""
        frame = f.GetMembers(room=room, after=after, limit=limit)
        return await self._paged(frame, "members", room)

    async def leave(self, room: str) -> f.Left:
        return await self._request(f.Leave(room=room), "leave", room)

    async def history(
        self, room: str, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> f.History:
        """A page of a room's stored messages (returned, not emitted as events)."""
        frame = f.GetHistory(room=room, before=before, after=after, limit=limit)
        return await self._paged(frame, "history", room)

    async def search(self, text: str, room: str | None = None, before: str | None = None,
                     limit: int = 20) -> f.SearchResults:
        """Stored messages holding every word of ``text``, newest first, from the rooms
        and DMs we are in (or only ``room``); returned, not emitted as events. For the
        next page pass the answer's ``next`` as ``before`` (while ``more``)."""
        frame = f.Search(text=text, room=room, before=before, limit=limit)
        return await self._request(frame, "search", (text, room, before))

    async def _paged(self, frame: f.ClientFrame, kind: str, room: str) -> Any:
        """One ``history`` (or ``members``) request per room at a time: an answer names
        only its room, so two in flight could be taken for each other's after one of
        them is re-sent (a frame dropped over the byte budget)."""
        lock = self._page_locks.setdefault((kind, room), asyncio.Lock())
        async with lock:
            return await self._request(frame, kind, room)

    async def mark_read(self, room: str, seq: int) -> None:
        """Move our read mark; remembered and re-sent after a reconnect if still ahead.

        Coalesced: marks of one room that wait for the server's budget go out as one,
        the newest.
        """
        frame = f.MarkRead(room=room, seq=seq)
        self._check(frame)
        if seq <= self._read_marks.get(room, -1):
            return
        self._read_marks[room] = seq
        if self._ready:
            self._sendq.mark(room, asyncio.get_running_loop().time())
            self._kick.set()

    async def contact(self, op: str, name: str) -> f.Contact:
        """``add``, ``remove``, ``block`` or ``unblock`` a user; returns the echo."""
        frame = f.ContactRequest(op=op, name=name)
        return await self._request(frame, "contact", (op, rules.normalize_name(name)))

    # --- the outbox -----------------------------------------------------------------

    def _check(self, frame: f.ClientFrame) -> None:
        """Refuse locally what the server would refuse: an error now, not a retry loop."""
        max_text = rules.DEFAULT_MAX_TEXT
        if self._welcome is not None:
            max_text = int(self._welcome.limits.get("max_text", max_text))
        try:
            codec.frame_from_map(codec.to_map(frame), max_text=max_text)
        except ProtocolError as exc:
            raise ClientError(exc.code.value, exc.msg) from None

    def _queue(self, frame: f.ClientFrame, kind: str, key: Any) -> Outgoing:
        if self._closed:
            raise ClientError("closed", "the client is closed")
        self._check(frame)
        self._next_slot += 1
        slot = self._next_slot
        entry = Outgoing(frame, kind, key, asyncio.get_running_loop().create_future(), slot)
        self._outbox[slot] = entry
        entry.future.add_done_callback(lambda _: self._outbox.pop(slot, None))
        # A say whose caller gave up may still fail later: nobody needs to be told.
        entry.future.add_done_callback(lambda fut: fut.cancelled() or fut.exception())
        if self._ready:
            self._write_entry(entry)
        return entry

    def _connect_failure(self, exc: BaseException) -> str:
        """Why connecting failed, never an empty string (a reset has no text of its own).

        A plain (ws://) server answers a TLS handshake by closing the connection or with
        bytes that are not TLS: for a wss:// URL that is what to say, with the fix.
        """
        reason = str(exc) or ("the connection was reset" if isinstance(exc, ConnectionResetError)
                              else type(exc).__name__)
        if self.url.lower().startswith("wss:") and isinstance(
                exc, ssl_module.SSLError | ConnectionResetError | EOFError):
            plain = "ws:" + self.url[len("wss:"):]
            return (f"the TLS handshake failed ({reason}): the server may not use TLS, "
                    f"try {plain}")
        return reason

    async def _send_tracked(self, frame: f.Say | f.Nudge, kind: str) -> f.Ack:
        assert frame.id is not None
        entry = self._by_id.get(frame.id)
        if entry is None:
            entry = self._queue(frame, kind, frame.id)
            self._by_id[frame.id] = entry
            ident = frame.id
            entry.future.add_done_callback(lambda _: self._by_id.pop(ident, None))
        watch_send(entry.future)  # a Bot handler waits for its sends' acks
        # Shielded: a caller that gives up does not take the message back.
        return await asyncio.shield(entry.future)

    async def _request(self, frame: f.ClientFrame, kind: str, key: Any) -> Any:
        """Send a request and wait for its answer, at most ``request_timeout`` seconds —
        not counting the time it waits, connected, for the server's rate budget (a
        request queued behind a hundred others is not the server being slow).

        The request carries a request id; a server that gives it back as the answer's
        ``ref`` (docs/protocol.md, "Request ids") has its answers and errors matched by
        it alone. An older server's answers are matched by type and room (``key``)."""
        frame, rid = self._with_request_id(frame)
        entry = self._queue(frame, kind, key)
        self._by_id[rid] = entry
        entry.future.add_done_callback(lambda _: self._by_id.pop(rid, None))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        try:
            while True:
                try:
                    return await asyncio.wait_for(asyncio.shield(entry.future),
                                                  max(0.0, deadline - loop.time()))
                except TimeoutError:
                    if entry.unsent and self._ready:  # paced, not lost: still queued
                        deadline = loop.time() + self.request_timeout
                    elif self._ready and entry.writes and \
                            entry.written_at + self.request_timeout > loop.time():
                        deadline = entry.written_at + self.request_timeout  # written late
                    else:
                        raise
        except TimeoutError:
            raise ClientError(
                "timeout", f"no answer to {frame.T} within {self.request_timeout:g} s"
            ) from None
        finally:
            entry.future.cancel()  # answered (no-op), timed out or given up: withdrawn

    def _with_request_id(self, frame: f.ClientFrame) -> tuple[f.ClientFrame, str]:
        """The frame with a request id of its own (``~q<n>``: no say of this client's
        uses one, or it is skipped)."""
        while True:
            self._next_request += 1
            rid = f"~q{self._next_request}"
            if rid not in self._by_id:
                return replace(frame, id=rid), rid  # type: ignore[type-var]

    def _answer(self, ref: str | None, kind: str, key: Any, frame: Any) -> bool:
        """Resolve the request a frame answers: by its ref, else (an older server, or a
        copy meant for another of the user's sessions) by type and key."""
        if ref is not None:
            self._server_refs = True
            entry = self._by_id.get(ref)
            if entry is not None and entry.kind == kind:
                if not entry.future.done():
                    entry.future.set_result(frame)
                return True
            return False
        return False if self._server_refs else self._resolve(kind, key, frame)

    def _write_entry(self, entry: Outgoing) -> None:
        """Queue an outbox entry for this connection's writer, in its place in the send
        order."""
        if self._sendq.add(entry):
            self._kick.set()

    def _next_frame(self, now: float) -> tuple[bytes | None, float | None]:
        return self._sendq.next_frame(
            now, held=self._held, generation=self._generation, read_marks=self._read_marks,
            presence=lambda: f.SetPresence(status=self._status, display=self._display,
                                           psm=self._psm))

    def _on_rate_limited(self, ref: str | None, retry_ms: int | None) -> bool:
        """The server refused one of our frames for its rate: teach the pacer, queue the
        frame again in its place. True if handled (nobody else needs to hear of it)."""
        now = asyncio.get_running_loop().time()
        pacer = self._sendq.pacer
        entry = self._by_id.get(ref) if ref is not None else None
        if entry is not None:
            if entry.future.done():
                return True
            if entry.kind == "nudge":
                return False  # the per-pair interval (another session nudged): caller decides
            pacer.penalize(RATE_KIND[entry.frame.T], retry_ms, now)
            self._write_entry(entry)
            return True
        if ref in ("join", "leave", "history", "members", "contact"):
            pacer.penalize(RATE_KIND[ref], retry_ms, now)
            for entry in self._outbox.values():
                if (entry.kind == ref and entry.sent_on == self._generation
                        and not entry.unsent and not entry.future.done()):
                    self._write_entry(entry)  # the oldest one written: the one refused
                    return True
            return True
        if ref == "read":
            self._sendq.read_refused(retry_ms, now)
            self._kick.set()
            return True
        if ref == "typing":
            pacer.penalize("typing", retry_ms, now)
            return True  # stale by the time it could go: dropped
        if ref == "presence":
            pacer.penalize("presence", retry_ms, now)
            self._sendq.presence = True
            self._kick.set()
            return True
        return False

    def _resend_unacked_later(self, delay: float) -> None:
        """Write everything of this connection still unanswered again after ``delay``.

        The server dropped a frame unread and cannot say which, so every say/nudge not
        yet acked goes again (their ids make a repeat harmless: the server stores and acks
        each id once), and so does every request written on this connection and still
        unanswered but ``contact``: join, leave, history and members are safe to repeat,
        and by then the ones the server did read have long been answered. One pending
        pass at a time keeps a burst of refusals from multiplying the traffic.
        """
        if self._budget_retry is not None:
            return
        generation = self._generation

        def resend() -> None:
            self._budget_retry = None
            if not self._ready or self._generation != generation:
                return  # a reconnect sends the whole outbox again anyway
            for entry in list(self._outbox.values()):
                if entry.future.done():
                    continue
                if entry.kind in ("say", "nudge"):
                    self._write_entry(entry)  # held says wait in the queue until released
                elif entry.sent_on == generation and entry.kind != "contact":
                    # A contact request is left out: read twice it would tell the other
                    # side twice ("added you"); it times out instead.
                    self._write_entry(entry)

        self._budget_retry = asyncio.get_running_loop().call_later(delay, resend)

    def _hold_says(self, delay: float) -> None:
        """After a say the server could not store: write no new says for ``delay``, then
        every unacked say/nudge again in the order they were made, so that a later
        message is not stored before the refused one. One pending pass at a time."""
        self._held = True
        if self._held_retry is not None:
            return
        generation = self._generation

        def release() -> None:
            self._held_retry = None
            self._held = False
            if not self._ready or self._generation != generation:
                return  # a reconnect sends the whole outbox again, in order
            for entry in list(self._outbox.values()):
                if entry.kind in ("say", "nudge") and not entry.future.done():
                    self._write_entry(entry)
            self._kick.set()  # the held ones that were queued already may go now

        self._held_retry = asyncio.get_running_loop().call_later(delay, release)

    def _resolve(self, kind: str, key: Any, value: Any) -> bool:
        for entry in self._outbox.values():
            if entry.kind == kind and entry.key == key and not entry.future.done():
                entry.future.set_result(value)
                return True
        return False

    def _fail_oldest(self, kind: str, exc: ClientError) -> bool:
        for entry in self._outbox.values():
            if entry.kind == kind and entry.sent_on == self._generation \
                    and not entry.unsent and not entry.future.done():
                entry.future.set_exception(exc)
                return True
        return False

    def _fail_all(self, exc: ClientError) -> None:
        for entry in list(self._outbox.values()):
            if not entry.future.done():
                entry.future.set_exception(exc)

    # --- the connection -------------------------------------------------------------

    async def _open(self) -> tuple[Any, f.Welcome]:
        """Open a WebSocket, send ``hello``, wait for ``welcome``; ClientError if not."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import (
            ConnectionClosed,
            InvalidHandshake,
            InvalidStatus,
            InvalidURI,
            NegotiationError,
        )

        hello = f.Hello(
            v=PROTOCOL_VERSION, name=self._name, token=self._token, status=self._status,
            display=self._display, psm=self._psm, client=self._client_name,
            bot=True if self._bot else None, quiet=True if self._quiet else None,
            invite=self._invite if self._token is None else None,
        )
        tls: dict[str, Any] = {}
        if self._ssl is not None and self.url.lower().startswith("wss:"):
            tls["ssl"] = self._ssl
        try:
            ws = await connect(
                self.url, subprotocols=[SUBPROTOCOL], compression=None, max_size=MAX_INCOMING,
                open_timeout=self.request_timeout, close_timeout=3, **tls,
            )
        except InvalidURI as exc:
            raise ClientError("connect_failed", bad_url_message(self.url, exc), final=True) \
                from exc
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ClientError("connect_failed", status_message(self.url, status),
                              final=status_is_final(status)) from exc
        except NegotiationError as exc:
            raise ClientError("connect_failed", f"{self.url} does not speak {SUBPROTOCOL}"
                              f" (is it a cfm server?): {exc}", final=True) from exc
        except ssl_module.SSLCertVerificationError as exc:
            raise ClientError(
                "bad_certificate",
                f"cannot reach {self.url}: its TLS certificate is not trusted"
                f" ({exc.verify_message}); for a private CA set SSL_CERT_FILE to its PEM file",
            ) from exc
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise ClientError("connect_failed",
                              f"cannot reach {self.url}: {self._connect_failure(exc)}") from exc
        try:
            if ws.subprotocol != SUBPROTOCOL:
                raise ClientError("connect_failed", f"{self.url} does not speak {SUBPROTOCOL}"
                                  " (is it a cfm server?)", final=True)
            await ws.send(codec.encode(hello))
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancel (close()) that comes in the turn the welcome arrives.
            async with asyncio.timeout(self.request_timeout):
                data = await ws.recv()
            frame = codec.decode_server(data) if isinstance(data, bytes) else None
            if isinstance(frame, f.Error):
                raise ClientError(frame.code, frame.msg, frame.retry_ms)
            if not isinstance(frame, f.Welcome):
                raise ClientError("connect_failed", "the server did not answer hello")
            return ws, frame
        except ClientError:
            await ws.close()
            raise
        except (ConnectionClosed, OSError, TimeoutError, ProtocolError) as exc:
            await ws.close()
            raise ClientError("connect_failed", f"sign-in to {self.url} failed: {exc!r}") from exc
        except BaseException:  # cancelled mid-sign-in: drop the socket without waiting
            ws.transport.abort()
            raise

    def _on_welcome(self, ws: Any, welcome: f.Welcome) -> None:
        self._servers.succeeded()
        self._ws = ws
        self._welcome = welcome
        self._generation += 1
        self._server_refs = False  # this node may be an older one
        self._connected_at = asyncio.get_running_loop().time()
        if welcome.token:
            self._token = welcome.token
        if self._token_path is not None and welcome.token != self._saved_token:
            try:
                tokens.write_token(self._token_path, welcome.token)
                self._saved_token = welcome.token
            except OSError as exc:
                log.warning("cannot save the token to %s: %s", self._token_path, exc)
        log.info("%s connected to %s (session %s)", welcome.name, self.url, welcome.session)
        self._set_state(ConnectionState.CONNECTED)
        self._emit(Connected(welcome))

        to_fetch = self._resume.on_welcome(welcome.rooms)
        for room in set(self._handed) - set(self._resume.rooms):
            del self._handed[room]

        self._sendq.reset(Pacer(welcome.limits, asyncio.get_running_loop().time()))
        read_marks = {state.room: state.read for state in welcome.rooms}
        for room, seq in self._read_marks.items():
            if seq > read_marks.get(room, seq):
                self._sendq.mark(room, 0.0)  # no reason to wait: send when the budget allows
        for entry in self._outbox.values():
            if not entry.future.done():
                self._write_entry(entry)
        self._ready = True
        for room in to_fetch:
            self._start_fill(room)

    async def _supervise(self, ws: Any) -> None:
        """Own the connection: read it, and reconnect when it drops, until closed."""
        try:
            while True:
                code, reason = await self._serve(ws)
                self._on_disconnect()
                lived = asyncio.get_running_loop().time() - self._connected_at
                if lived >= STABLE_AFTER:
                    self._backoff.reset()
                if code in FATAL_CLOSES or not self._reconnect:
                    log.warning("%s: connection closed for good (%s)", self.name, reason)
                    self._end(ClientError("disconnected", reason))
                    return
                log.info("%s: connection lost (%s); reconnecting", self.name, reason)
                ws = await self._reconnect_loop(reason, restarting=code == RESTART_CLOSE)
                if ws is None:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours: say so, and do not hang the application
            log.exception("%s: the client task failed", self.name)
            self._end(ClientError("internal", f"client task failed: {exc!r}"))

    def _end(self, exc: ClientError) -> None:
        self._closed = True
        self._ready = False
        self._ws = None
        self._fail_all(exc)
        self._save_seen()
        self._set_state(ConnectionState.CLOSED, reason=str(exc))
        self._events.put_nowait(_END)

    async def _serve(self, ws: Any) -> tuple[int | None, str]:
        """Read frames until the connection ends; its close code and a reason."""
        from websockets.exceptions import ConnectionClosed

        writer = asyncio.create_task(self._write_loop(ws))
        try:
            async for data in ws:
                if not isinstance(data, bytes):
                    log.warning("ignoring a text message from the server")
                    continue
                try:
                    frame = codec.decode_server(data)
                except ProtocolError as exc:
                    log.warning("ignoring a bad frame from the server: %s", exc.msg)
                    continue
                try:
                    self._on_frame(frame)
                except Exception:  # one odd frame must not take the connection down
                    log.exception("%s: handling %s failed", self.name, frame.T)
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if self._closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 3)
        code = ws.close_code
        reason = f"closed with code {code}" + (f" ({ws.close_reason})" if ws.close_reason else "")
        return code, reason

    async def _write_loop(self, ws: Any) -> None:
        """Write what :meth:`_next_frame` lets out; sleep until a budget refills or
        something new is queued."""
        from websockets.exceptions import ConnectionClosed

        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionClosed):
            while True:
                data, wait = self._next_frame(loop.time())
                if data is not None:
                    await ws.send(data)
                    continue
                self._kick.clear()
                if wait is None:
                    await self._kick.wait()
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._kick.wait()


    def _on_disconnect(self) -> None:
        if self._budget_retry is not None:
            self._budget_retry.cancel()
            self._budget_retry = None
        if self._held_retry is not None:
            self._held_retry.cancel()
            self._held_retry = None
        self._held = False  # the next connection sends the whole outbox, in order
        self._ready = False
        self._ws = None
        self._sendq.reset(Pacer(None, asyncio.get_running_loop().time()))
        self._cancel_fills()

    async def _reconnect_loop(self, reason: str, *, restarting: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        short = self._backoff.capped(RESTART_CAP) if restarting else None
        short_until = loop.time() + RESTART_WINDOW
        # The URL that dropped us counts as the round's first failure: with another URL
        # left, that one is tried at once (a killed node costs a reconnect, not a wait).
        round_over = self._servers.failed()
        while True:
            if not round_over:
                delay = 0.0
            elif short is not None and loop.time() < short_until:
                delay = short.next()
            else:
                delay = self._backoff.next()
            self._set_state(ConnectionState.RECONNECTING, retry_in=delay, reason=reason)
            if delay:
                await self._nap(delay)
            if self._closed:
                return None
            if self._wake.is_set() and short is not None:
                short.reset()  # reconnect_now: start the short schedule over as well
            self._set_state(ConnectionState.CONNECTING)
            try:
                ws, welcome = await self._open()
            except ClientError as exc:
                if exc.code in FATAL_HELLO_ERRORS:
                    log.warning("%s: the server refused us: %s", self.name, exc)
                    self._end(exc)
                    return None
                reason = exc.msg
                round_over = self._servers.failed()
                if not round_over:
                    log.info("%s: %s; trying %s", self.name, reason, self.url)
                continue
            if self._closed:  # close() came while we were signing in
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 3)
                return None
            self._on_welcome(ws, welcome)
            return ws

    # --- incoming frames ------------------------------------------------------------

    def _on_frame(self, frame: f.ServerFrame) -> None:
        if isinstance(frame, f.Msg):
            self._deliver(self._resume.offer(frame))
            if self._resume.has_gap(frame.room):
                self._start_fill(frame.room, live=True)
        elif isinstance(frame, f.Ack):
            self._on_ack(frame)
        elif isinstance(frame, f.Joined):
            self._answer(frame.ref, "join", frame.room, frame)
            if self._resume.on_joined(frame):
                self._start_fill(frame.room)
            self._emit(frame)
        elif isinstance(frame, f.Left):
            self._answer(frame.ref, "leave", frame.room, frame)
            self._resume.forget(frame.room)
            self._handed.pop(frame.room, None)
            self._emit(frame)
        elif isinstance(frame, f.History):
            if not self._answer(frame.ref, "history", frame.room, frame):
                log.debug("history for %s that nobody asked for", frame.room)
        elif isinstance(frame, f.MembersPage):
            if not self._answer(frame.ref, "members", frame.room, frame):
                log.debug("members of %s that nobody asked for", frame.room)
        elif isinstance(frame, f.SearchResults):  # a server that knows search gives refs
            self._answer(frame.ref, "search", None, frame)
        elif isinstance(frame, f.Contact):
            if frame.op != rules.ContactOp.ADDED_YOU:
                self._answer(frame.ref, "contact",
                             (frame.op, rules.normalize_name(frame.name)), frame)
            self._emit(frame)
        elif isinstance(frame, f.Error):
            self._on_error(frame)
        elif isinstance(frame, f.Welcome):
            log.warning("ignoring a second welcome")
        else:
            self._emit(frame)

    def _on_ack(self, ack: f.Ack) -> None:
        entry = self._by_id.get(ack.id) if ack.id is not None else None
        if entry is None:
            log.debug("ack %s matches no pending message", ack.id)
            return
        frame = entry.frame
        # Our own message, as everyone else sees it: the server does not echo it to us.
        own = f.Msg(
            room=ack.room, seq=ack.seq, sender=self.name,
            text=frame.text if isinstance(frame, f.Say) else "",
            ts=ack.ts, kind=entry.kind if entry.kind == "nudge" else "text", id=ack.id,
        )
        self._deliver(self._resume.offer(own))
        if not entry.future.done():
            entry.future.set_result(ack)
        if self._resume.has_gap(ack.room):
            self._start_fill(ack.room, live=True)

    def _on_error(self, error: f.Error) -> None:
        exc = ClientError(error.code, error.msg, error.retry_ms)
        ref = error.ref
        if exc.code == rules.ErrorCode.RATE_LIMITED:
            if ref is None:
                # The server dropped a frame unread (over its inbound byte budget), so it
                # cannot say which one: pause, then send the unanswered frames again.
                self._sendq.pacer.pause(exc.retry_ms, asyncio.get_running_loop().time())
                self._resend_unacked_later((exc.retry_ms or 1000) / 1000)
            elif self._on_rate_limited(ref, exc.retry_ms):
                log.debug("%s: %s refused for its rate; again in %s ms",
                          self.name, ref, exc.retry_ms)
                return
        if ref is not None:
            entry = self._by_id.get(ref)
            if entry is not None and not entry.future.done():
                if exc.code == rules.ErrorCode.INTERNAL and entry.kind in ("say", "nudge") \
                        and entry.refusals < INTERNAL_RETRIES:
                    # Not stored, so not lost either: its id keeps a later success single.
                    first, cap = INTERNAL_BACKOFF
                    delay = min(first * 2 ** entry.refusals, cap)
                    entry.refusals += 1
                    log.warning("%s: %s not stored (%s); again in %.1f s",
                                self.name, entry.key, exc.msg, delay)
                    self._hold_says(delay)
                    return
                entry.future.set_exception(exc)
                return
            if ref in ("say", "nudge", "join", "history", "contact", "leave", "members") and \
                    self._fail_oldest(ref, exc):
                return
        self._emit(error)

    def _deliver(self, msgs: list[f.Msg]) -> None:
        for msg in msgs:
            self._emit(msg, self._resume.epoch(msg.room))

    # --- catching up ----------------------------------------------------------------

    def _start_fill(self, room: str, *, live: bool = False) -> None:
        task = self._fills.get(room)
        if task is not None and not task.done():
            self._refill.add(room)
            return
        self._fills[room] = asyncio.create_task(self._fill(room, live), name=f"cfm-fill-{room}")

    def _cancel_fills(self) -> None:
        for task in self._fills.values():
            task.cancel()
        self._fills.clear()
        self._refill.clear()

    def _own_unacked(self, room: str) -> list[asyncio.Future[Any]]:
        out = []
        for entry in self._outbox.values():
            frame = entry.frame
            if isinstance(frame, f.Say | f.Nudge):
                target = frame.room if isinstance(frame, f.Say) and frame.room else None
                if target is None and frame.to is not None:
                    target = rules.dm_room(self.name, frame.to)
                if target == room:
                    out.append(entry.future)
        return out

    async def _fill(self, room: str, live: bool) -> None:
        """Fetch what ``room`` lacks with ``history{after}`` pages, until nothing does."""
        try:
            if live:
                waiting = self._own_unacked(room)
                if waiting:
                    await asyncio.wait(waiting, timeout=OWN_ACK_GRACE)
                if not self._resume.has_gap(room):
                    return
            while True:
                self._refill.discard(room)
                after = self._resume.delivered(room)
                try:
                    page = await self._paged(
                        f.GetHistory(room=room, after=after, limit=HISTORY_PAGE), "history", room
                    )
                except ClientError as exc:
                    # Not caught up is not an option: messages wait behind this gap.
                    if exc.code not in (rules.ErrorCode.RATE_LIMITED, "timeout"):
                        raise
                    log.info("%s: catching up on %s: %s; trying again", self.name, room, exc)
                    await asyncio.sleep((exc.retry_ms or 1000) / 1000)
                    continue
                msgs = [f.Msg.from_stored(m) for m in page.msgs]
                for msg in msgs:
                    self._deliver(self._resume.offer(msg))
                if msgs and self._resume.has_gap(room) and msgs[-1].seq > self._resume.delivered(
                    room
                ):
                    # The page went past a hole it did not fill: the store lacks those.
                    self._deliver(self._resume.skip_gap(room))
                if (page.more and msgs) or room in self._refill:
                    continue
                return
        except ClientError as exc:
            log.warning("%s: cannot catch up on %s: %s", self.name, room, exc)
        finally:
            if self._fills.get(room) is asyncio.current_task():
                del self._fills[room]

    # --- persistence ----------------------------------------------------------------

    def _schedule_seen_save(self) -> None:
        if self._seen_path is None or self._seen_save is not None:
            return
        self._seen_save = asyncio.get_running_loop().call_later(1.0, self._save_seen)

    def _save_seen(self) -> None:
        if self._seen_save is not None:
            self._seen_save.cancel()
            self._seen_save = None
        if self._seen_path is None:
            return
        try:
            tokens.write_seen(self._seen_path, self._handed)
        except OSError as exc:
            log.warning("cannot save the seen state to %s: %s", self._seen_path, exc)
