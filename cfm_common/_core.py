"""The client protocol without I/O: bytes and time in; frames, events and deadlines out.

:class:`ClientCore` is what a cfm client *decides*; :class:`cfm_common.client.Client` is
the asyncio shell that moves bytes and sleeps (as websockets' ``protocol.py`` sits under
its asyncio connection). Nothing here reads a clock, opens a socket or awaits: every
input carries ``now``, and the shell asks for output.

- **in**: :meth:`connection_made` (a ``welcome``), :meth:`receive_data` (a server frame,
  as bytes), :meth:`connection_lost`, :meth:`end`; and the program's calls —
  :meth:`message` (say, nudge or a message change), :meth:`request`, :meth:`mark_read`,
  :meth:`set_presence`, :meth:`typing`.
- **out**: :meth:`data_to_send` (the next frame to write, or how long until one may
  go or a timer is due: the shell sleeps at most that long), the ``emit`` callback
  (events for the program, each message with its room's epoch), and each outbox
  entry's :class:`~cfm_common._outbox.Reply` (settled here; the shell's future hears
  of it through ``on_settled``).

The rules live in one module each and are put together here: connection states
(:mod:`cfm_common._states`), reply matching (:mod:`cfm_common._outbox`), retries
(:mod:`cfm_common._retry`), pacing (:mod:`cfm_common._sendqueue`,
:mod:`cfm_common._pacing`), resume (:mod:`cfm_common._resume`) and gap filling
(:mod:`cfm_common._gapfill`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cfm_common import codec, rules
from cfm_common import frames as f
from cfm_common._gapfill import GapFill
from cfm_common._outbox import MESSAGES, ChangeFrame, Outbox, Outgoing
from cfm_common._pacing import Pacer
from cfm_common._resume import Resume
from cfm_common._retry import Retries, answer_deadline
from cfm_common._sendqueue import SendQueue
from cfm_common._states import Connected, ConnectionState, Event, StateChanged, check
from cfm_common.errors import (
    ClientError,
    ConnectionClosed,
    LocalRefusal,
    ProtocolError,
    ServerRefused,
)

log = logging.getLogger(__name__)
# How many recent joins an error may still name as having broken their replay off.
MAX_REPLAYING = 64

SeenState = dict[str, tuple[int, str | None]]
Emit = Callable[[Event, str | None], None]


class ClientCore:
    """One client's protocol state across its connections.

    ``handed`` is the seen state (room → last seq handed to the program, epoch): the
    core starts its cursors from it and keeps its rooms in step with the server's;
    the shell records what it hands over and saves it.
    """

    def __init__(self, name: str, *, emit: Emit, handed: SeenState | None = None,
                 status: str = "online", display: str | None = None,
                 psm: str | None = None, request_timeout: float = 10.0) -> None:
        self._given_name = name
        self.status, self.display, self.psm = status, display, psm
        self._emit = emit
        self.state = ConnectionState.CLOSED
        self.welcome: f.Welcome | None = None
        self.generation = 0  # counts connections: what an entry was written on
        self.connected_at = 0.0
        self.ready = False  # a live, flushed connection: new frames go straight out
        self.closed = False
        self.ended: ClientError | None = None  # why the client ended, if not by close()
        self.handed: SeenState = handed if handed is not None else {}
        self.resume = Resume(dict(self.handed))
        self.outbox = Outbox()
        self.sendq = SendQueue(codec.encode)
        self.retries = Retries(self.outbox, self.sendq)
        self.fills = GapFill(self.resume, self._fill_request, self.outbox.withdraw,
                             self._deliver, self._own_unacked)
        self.read_marks: dict[str, int] = {}
        # The request ids of our recent joins whose joined came (→ the room): an error
        # naming one afterwards broke its replay off (GapFill.start_at).
        self.replaying: dict[str, str] = {}
        self.request_timeout = request_timeout

    @property
    def request_timeout(self) -> float:
        """How long a request waits for its answer (pacing waits not counted)."""
        return self.fills.timeout

    @request_timeout.setter
    def request_timeout(self, seconds: float) -> None:
        self.fills.timeout = seconds

    @property
    def name(self) -> str:
        """Our handle as the server spells it (lower-cased) once connected."""
        return self.welcome.name if self.welcome else self._given_name

    def set_state(self, state: ConnectionState, *, retry_in: float | None = None,
                  reason: str | None = None, error: ClientError | None = None) -> None:
        check(self.state, state)
        self.state = state
        self._emit(StateChanged(state, retry_in, reason, error), None)

    # --- the connection -------------------------------------------------------------

    def connection_made(self, welcome: f.Welcome, now: float) -> None:
        """Signed in: line the rooms up with the welcome, send the outbox again in
        order, and start fetching what each room lacks."""
        self.welcome = welcome
        self.generation += 1
        self.connected_at = now
        self.set_state(ConnectionState.CONNECTED)
        self._emit(Connected(welcome), None)
        to_fetch = self.resume.on_welcome(welcome.rooms)
        for room in set(self.handed) - set(self.resume.rooms):
            del self.handed[room]
        self.sendq.reset(Pacer(welcome.limits, now))
        server_marks = {state.room: state.read for state in welcome.rooms}
        for room, seq in self.read_marks.items():
            if seq > server_marks.get(room, seq):
                self.sendq.mark(room, 0.0)  # no reason to wait: send when the budget allows
        for entry in self.outbox.unanswered():
            self.sendq.add(entry)
        self.ready = True
        for room in to_fetch:
            self.fills.start(room, now)

    def connection_lost(self, now: float) -> None:
        """The connection dropped: timers stop, fills are withdrawn; the outbox stays."""
        self.ready = False
        self.retries.reset()
        self.sendq.reset(Pacer(None, now))
        self.fills.cancel()

    def closing(self) -> None:
        """close() began: nothing new is accepted, no more catching up."""
        self.closed = True
        self.fills.cancel()

    def end(self, error: ClientError, *, by_client: bool = False) -> None:
        """The client is over (``by_client``: close() was called): every entry fails
        with ``error``."""
        self.closed = True
        if not by_client:
            self.ended = error
        self.ready = False
        self.outbox.fail_all(error)
        self.set_state(ConnectionState.CLOSED,
                       reason="closed by the client" if by_client else str(error),
                       error=None if by_client else error)

    # --- output ---------------------------------------------------------------------

    def data_to_send(self, now: float) -> tuple[bytes | None, float | None]:
        """Fire the timers that are due, then the next frame to write now, or None and
        the seconds until a frame may go or a timer is due (None: nothing to wait for)."""
        if not self.ready:
            return None, None
        self.retries.tick(now, self.generation)
        self.fills.tick(now, self.answer_deadline)
        data, wait = self.sendq.next_frame(
            now, held=self.retries.held, generation=self.generation,
            read_marks=self.read_marks, presence=self._presence)
        if data is not None:
            return data, None
        deadline = self.next_deadline()
        if deadline is not None:
            due = max(0.0, deadline - now)
            wait = due if wait is None else min(wait, due)
        return None, wait

    def next_deadline(self) -> float | None:
        times = [t for t in (self.retries.next_deadline(), self.fills.next_deadline())
                 if t is not None]
        return min(times, default=None)

    def _presence(self) -> f.SetPresence:
        return f.SetPresence(status=self.status, display=self.display, psm=self.psm)

    def answer_deadline(self, entry: Outgoing, now: float) -> float | None:
        """A request reached its deadline unanswered: a later one, or None (timed out)."""
        return answer_deadline(entry, now, connected=self.ready, timeout=self.request_timeout)

    # --- the program's calls --------------------------------------------------------

    def check(self, frame: f.ClientFrame) -> None:
        """Refuse locally what the server would refuse: an error now, not a retry loop."""
        max_text = rules.DEFAULT_MAX_TEXT
        if self.welcome is not None:
            max_text = int(self.welcome.limits.get("max_text", max_text))
        try:
            codec.frame_from_map(codec.to_map(frame), max_text=max_text)
        except ProtocolError as exc:
            raise LocalRefusal(exc.code, exc.msg) from None

    def check_nudge(self, to: str, now: float) -> None:
        """The server lets one nudge per interval through to the same user; a second
        one is refused here, so that it never counts against us there."""
        peer = rules.normalize_name(to)
        wait = self.sendq.pacer.nudge_wait(peer, now)
        if wait > 0:
            raise LocalRefusal(rules.ErrorCode.RATE_LIMITED,
                               f"one nudge to {peer} at a time; wait a moment",
                               max(1, int(wait * 1000) + 1))
        self.sendq.pacer.note_nudge(peer, now)

    def message(self, frame: f.Say | f.Nudge | ChangeFrame, kind: str) -> Outgoing:
        """A say, nudge or change: its pending entry if one has this id already, else a
        new one."""
        entry = self.outbox.find(frame.id)
        if entry is not None and entry.kind in MESSAGES:
            return entry
        return self.request(frame, kind, frame.id)

    def request(self, frame: f.ClientFrame, kind: str, key: Any) -> Outgoing:
        """Queue ``frame`` in the outbox (a request gets its request id here)."""
        if self.closed:
            end = self.ended
            if isinstance(end, ConnectionClosed) and not end.by_client:
                # Ended by the server: later calls carry its close code too.
                raise ConnectionClosed(f"the client is closed: {end.msg}",
                                       close_code=end.close_code, code="closed")
            raise ConnectionClosed("the client is closed", by_client=True)
        self.check(frame)
        entry = self.outbox.add(frame, kind, key)
        if self.ready:
            self.sendq.add(entry)
        return entry

    def join_frame(self, room: str, members_limit: int | None) -> f.Join:
        """A ``join`` that asks for the replay of what we lack."""
        since, epoch = self.resume.join_since(room)
        return f.Join(room=room, since=since, epoch=epoch, members_limit=members_limit)

    def mark_read(self, room: str, seq: int, now: float) -> None:
        self.check(f.MarkRead(room=room, seq=seq))
        if seq <= self.read_marks.get(room, -1):
            return
        self.read_marks[room] = seq
        if self.ready:
            self.sendq.mark(room, now)

    def set_presence(self, status: str | None, display: str | None, psm: str | None) -> None:
        self.check(f.SetPresence(status=status, display=display, psm=psm))
        self.status = status if status is not None else self.status
        self.display = display if display is not None else self.display
        self.psm = psm if psm is not None else self.psm
        if self.ready:
            self.sendq.want_presence()
        # Otherwise the next hello carries it.

    def typing(self, frame: f.SendTyping, now: float) -> None:
        """Dropped while disconnected (stale by then) and over the typing budget."""
        self.check(frame)
        if self.ready:
            self.sendq.add_typing(frame, now)

    # --- incoming frames ------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> bool:
        """Take one server frame in; True if the writer has something new to look at."""
        retries = self.retries
        before = (self.sendq.queued, retries.release_at, retries.resend_at)
        try:
            frame = codec.decode_server(data)
        except ProtocolError as exc:
            log.warning("ignoring a bad frame from the server: %s", exc.msg)
            return False
        try:
            self.receive_frame(frame, now)
        except Exception:  # one odd frame must not take the connection down
            log.exception("%s: handling %s failed", self.name, frame.T)
        # A fill moves on with frames (an ack ends its grace); the rest only when
        # something was queued or a retry timer was set.
        return bool(self.fills.rooms) or \
            (self.sendq.queued, retries.release_at, retries.resend_at) != before

    def receive_frame(self, frame: f.ServerFrame, now: float) -> None:
        if isinstance(frame, f.Msg):
            self._deliver(self.resume.offer(frame))
            if self.resume.has_gap(frame.room):
                self.fills.start(frame.room, now, live=True)
        elif isinstance(frame, f.Ack):
            self._on_ack(frame, now)
        elif isinstance(frame, f.Joined):
            if self.outbox.answer(frame.ref, "join", frame) and frame.ref is not None:
                self.replaying[frame.ref] = frame.room
                if len(self.replaying) > MAX_REPLAYING:  # the oldest are long over
                    del self.replaying[next(iter(self.replaying))]
            if self.resume.on_joined(frame):
                self.fills.start(frame.room, now)
            self._emit(frame, None)
        elif isinstance(frame, f.Left):
            self.outbox.answer(frame.ref, "leave", frame)
            self.resume.forget(frame.room)
            self.handed.pop(frame.room, None)
            self._emit(frame, None)
        elif isinstance(frame, f.Member) and self._dm_peer_gone(frame):
            # A DM has no leave: this one says its other account was removed (protocol
            # "A removed account"). A new holder of the handle gets a new room whose
            # seqs start at 1 again: forget the old cursor, or they count as seen.
            self.resume.forget(frame.room)
            self.handed.pop(frame.room, None)
            self._emit(frame, None)
        elif isinstance(frame, f.History | f.MembersPage):
            if not self.outbox.answer(frame.ref, frame.T, frame):
                log.debug("%s of %s that nobody asked for", frame.T, frame.room)
        elif isinstance(frame, f.SearchResults):
            if not self.outbox.answer(frame.ref, "search", frame):
                log.debug("search results that nobody asked for")
        elif isinstance(frame, f.Moderators):
            # Without a ref of ours: a change the creator made elsewhere, or our own
            # naming or removal as a moderator; the program hears of those.
            if not self.outbox.answer(frame.ref, "moderators", frame):
                self._emit(frame, None)
        elif isinstance(frame, f.Contact):
            if frame.op != rules.ContactOp.ADDED_YOU:
                self.outbox.answer(frame.ref, "contact", frame)
            self._emit(frame, None)
        elif isinstance(frame, f.Error):
            self._on_error(frame, now)
        elif isinstance(frame, f.Welcome):
            log.warning("ignoring a second welcome")
        else:
            self._emit(frame, None)

    def _on_ack(self, ack: f.Ack, now: float) -> None:
        entry = self.outbox.find(ack.id)
        if entry is None or entry.kind not in MESSAGES:
            log.debug("ack %s matches no pending message", ack.id)
            return
        self._deliver(self.resume.offer(own_msg(entry.frame, ack, self.name)))
        self.outbox.settle(entry, ack)
        if self.resume.has_gap(ack.room):
            self.fills.start(ack.room, now, live=True)

    def _on_error(self, error: f.Error, now: float) -> None:
        entry = self.outbox.find(error.ref)
        room = self.replaying.pop(error.ref, None) if entry is None and error.ref else None
        if room is not None:  # a replay broken off: what it lacks is fetched after retry_ms
            log.info("the replay of %s broke off (%s); fetching the rest", room, error.msg)
            self.fills.start_at(room, now + (error.retry_ms or 1000) / 1000)
            return
        if self.retries.refused(error, entry, now, self.generation):
            return
        if entry is not None:
            exc = ServerRefused(error.code, error.msg, error.retry_ms, ref=error.ref)
            self.outbox.settle(entry, error=exc)
            return
        self._emit(error, None)

    # --- helpers --------------------------------------------------------------------

    def _dm_peer_gone(self, member: f.Member) -> bool:
        pair = rules.dm_members(member.room)
        return member.op == rules.MemberOp.LEAVE and pair is not None \
            and rules.normalize_name(member.name) != rules.normalize_name(self.name)

    def _deliver(self, msgs: list[f.Msg]) -> None:
        for msg in msgs:
            self._emit(msg, self.resume.epoch(msg.room))

    def _own_unacked(self, room: str) -> list[Outgoing]:
        return self.outbox.toward(room, self.name)

    def _fill_request(self, frame: f.GetHistory) -> Outgoing:
        entry = self.outbox.add(frame, "history", frame.room)
        if self.ready:
            self.sendq.add(entry)
        return entry


def own_msg(frame: f.ClientFrame, ack: f.Ack, me: str) -> f.Msg:
    """Our own message or change entry, as everyone else sees it: the server does not
    echo it to us. Its ``mentions`` are the server's to work out, so they stay unknown."""
    if isinstance(frame, f.Nudge):
        return f.Msg(room=ack.room, seq=ack.seq, sender=me, text="", ts=ack.ts,
                     kind=rules.MsgKind.NUDGE.value, id=ack.id)
    text, reply, change, target, emoji = "", None, None, None, None
    if isinstance(frame, f.Say):
        text, reply = frame.text, frame.reply
    elif isinstance(frame, ChangeFrame):
        change, target = frame.T, frame.target
        if isinstance(frame, f.Edit):
            text = frame.text
        elif isinstance(frame, f.React):
            text, emoji = frame.emoji, frame.emoji  # as the server stores a reaction
        elif isinstance(frame, f.Unreact):
            emoji = frame.emoji
    return f.Msg(room=ack.room, seq=ack.seq, sender=me, text=text, ts=ack.ts,
                 kind=rules.MsgKind.TEXT.value, id=ack.id, reply=reply, change=change,
                 target=target, emoji=emoji)
