"""The messenger's controller: the one thing that changes :class:`ChatState`.

Every intent — an event from the SDK, a message to send, a room to join, a contact to
add, a status, a slash command — is a method here that changes the state and returns an
:class:`Outcome`: what to render now, and the requests still to make (jobs). Nothing
here imports Textual, so all of it is tested without a screen (tests/tui/test_controller*);
the app only runs the jobs as workers and hands each outcome to the screen.

Unread counts are decided by ``Conversation.unread`` (read marks kept here and in
``ChatState``); what a notice becomes (toast, bell, shake) by :mod:`cfm_tui.alerts`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import tzinfo
from pathlib import Path
from typing import Any

from cfm_common import rules
from cfm_common.client import Connected, ConnectionState, StateChanged
from cfm_common.errors import ClientError
from cfm_common.frames import Msg, Welcome
from cfm_tui import saving, slash
from cfm_tui.config import ChatConfig
from cfm_tui.idle import IdleTracker
from cfm_tui.message_actions import MessageActions
from cfm_tui.outcome import Outcome
from cfm_tui.palette import Intent
from cfm_tui.sanitize import clean_line
from cfm_tui.search import Search
from cfm_tui.session import ChatSession, ended_text, friendly_error
from cfm_tui.state import ChatState, Link, Notice, NoticeKind, Update

log = logging.getLogger(__name__)

TYPING_EVERY_S = 3.0
HISTORY_PAGE = 50
# Fetch some context when opening a conversation that holds fewer messages than this.
CONTEXT_LINES = 20
CONTACT_DONE = {"add": "was added to your contact list.",
                "remove": "was removed from your contact list.",
                "block": "was blocked; see Blocked in the list.",
                "unblock": "was unblocked; they can reach you again."}


def _warning(text: str) -> Outcome:
    return Outcome(Update(notices=[Notice(NoticeKind.ERROR, text=text)]))


def _info(text: str) -> Outcome:
    return Outcome(Update(notices=[Notice(NoticeKind.INFO, text=text)]))


class ChatController:
    """Changes ``state`` for the user's intents and the server's events.

    ``session`` is None while signed out (and in tests of the state alone): requests are
    then not made. ``config`` is saved to ``config_path`` when a choice is to be kept.
    """

    def __init__(self, state: ChatState, session: ChatSession | None = None, *,
                 config: ChatConfig | None = None, config_path: Path | None = None,
                 tz: tzinfo | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.state = state
        self.session = session
        self.config = config if config is not None else ChatConfig()
        self.config_path = config_path
        self.tz = tz
        self.clock = clock
        self.idle = IdleTracker(self.config.idle_minutes, clock=clock)
        self._last_typing: dict[str, float] = {}
        self._loading: set[str] = set()  # rooms whose older history is being fetched
        self.messages = MessageActions(self)  # edit, delete, react, reply quotes
        self.search = Search(self)  # /search, Ctrl+F, and jumping to a hit

    @classmethod
    def signed_in(cls, welcome: Welcome, session: ChatSession,
                  **options: Any) -> ChatController:
        """The controller of a fresh sign-in: the state as ``welcome`` says."""
        state = ChatState(welcome.name)
        state.on_welcome(welcome)
        return cls(state, session, **options)

    # --- what the screens and the palette ask for ------------------------------------

    def run_intent(self, intent: Intent) -> Outcome:
        """An intent posted by a screen or chosen in the palette (:mod:`cfm_tui.palette`)."""
        arg = intent.arg
        contact_ops = {op: (lambda op=op: self.contact(op, arg)) for op in CONTACT_DONE}
        actions: dict[str, Callable[[], Outcome]] = {
            "chat": lambda: self.open_dm(arg), "open_room": lambda: self.open_room(arg),
            "nudge": lambda: self.send_nudge(arg), "join": lambda: self.join_room(arg),
            "leave": lambda: self.leave_room(arg), "status": lambda: self.choose_status(arg),
            "psm": lambda: self.set_psm(arg), "display": lambda: self.set_display(arg),
            "dismiss": lambda: self.dismiss_request(arg), "reconnect": self.reconnect_now,
            "seen": lambda: self.mark_seen(arg),
            "toggle_desktop": self.toggle_desktop_notifications,
            "toggle_bell": self.toggle_bell, **contact_ops,
            "delete": lambda: self.messages.delete(arg, intent.seq),
            "react": lambda: self.messages.react(arg, intent.seq, intent.value),
            "jump": lambda: self.search.jump(arg, intent.seq),
            "search": lambda: self.search.search(intent.value, arg or None),
            "search_more": lambda: self.search.search("", older=True),
        }
        if intent.action not in actions:
            raise ValueError(f"no such intent: {intent.action!r}")
        return actions[intent.action]()

    # --- events from the server ------------------------------------------------------

    def on_event(self, event: Any) -> Outcome:
        """One event of the SDK's stream: a (re)connect, a connection change, a frame."""
        if isinstance(event, Connected):
            out = Outcome(self.state.on_welcome(event.welcome))
            # The rooms whose members were shown: asked again (the SDK's catch-up uses
            # `history`, which says nothing of who joined or left meanwhile).
            for room in self.state.rooms_to_refresh():
                out.then(self.join_room(room, open_tab=False))
            return out
        if isinstance(event, StateChanged):
            ended = ended_text(event.error, self.state.me) \
                if event.state is ConnectionState.CLOSED else None
            return Outcome(self.state.on_connection(event.state.value, event.retry_in,
                                                    event.reason, ended))
        out = Outcome(self.state.apply(event))
        if isinstance(event, Msg) and event.reply is not None:
            out.then(self.messages.fetch_quotes(event.room))
        return out

    # --- opening conversations -------------------------------------------------------

    def open_dm(self, name: str) -> Outcome:
        # Asked for by name: worth a try even if the account was gone (the handle may
        # be someone's again); the server's answer says.
        self.state.gone.discard(rules.normalize_name(name))
        room = self.state.dm_with(name).room
        return Outcome(Update(opened={room: True})).then(self._load_context(room))

    def open_room(self, room: str) -> Outcome:
        self.state.conversation(room)
        return Outcome(Update(opened={room: True})).then(self.tab_opened(room))

    def tab_opened(self, room: str) -> Outcome:
        """A tab opened for ``room`` (a message came, or it was open at the last quit):
        who is in it, when not known yet — that answer brings the history too — else
        the recent history."""
        conv = self.state.conversations.get(room)
        if conv is not None and conv.is_group and conv.members is None:
            # For a member, join only answers `joined`: its members and names.
            return self.join_room(room, open_tab=False)
        return self._load_context(room)

    def reopen_tabs(self, rooms: list[str]) -> Outcome:
        """The conversations open at the last quit, in their order (rooms we are still
        in; DMs with whoever they were with)."""
        out = Outcome()
        state = self.state
        for room in rooms:
            if rules.is_group_room(room):
                if room not in state.conversations:  # left since, or the room is gone
                    continue
            elif rules.dm_members(room) is None or state.me not in rules.dm_members(room):
                continue
            state.conversation(room)
            out.then(Outcome(Update(opened={room: False}))).then(self.tab_opened(room))
        return out

    def _load_context(self, room: str) -> Outcome:
        """The latest page, when the conversation holds little of its history."""
        conv = self.state.conversations.get(room)
        if conv is not None and conv.can_load_older and len(conv.messages) < CONTEXT_LINES:
            return self.load_older(room)
        return Outcome()

    def load_older(self, room: str) -> Outcome:
        """One more page of ``room``'s history (one request at a time per room)."""
        conv = self.state.conversations.get(room)
        if conv is None or not conv.can_load_older or room in self._loading \
                or self.session is None:
            return Outcome()
        self._loading.add(room)
        return Outcome(jobs=[lambda: self._fetch_older(room)])

    async def _fetch_older(self, room: str) -> Outcome:
        conv, session = self.state.conversations.get(room), self.session
        if conv is None or session is None:
            self._loading.discard(room)
            return Outcome()
        try:
            page = await session.client.history(room, before=conv.oldest_seq,
                                                limit=HISTORY_PAGE)
        except ClientError as exc:
            if exc.code in (rules.ErrorCode.NOT_MEMBER, rules.ErrorCode.NO_SUCH_ROOM,
                            rules.ErrorCode.FORBIDDEN):
                conv.loaded_all = True  # not ours to read (any more): stop asking
            else:
                log.info("history of %s failed: %s", room, exc)
            return Outcome()
        finally:
            self._loading.discard(room)
        conv.add_history(page.msgs, page.more)
        return Outcome(Update(rooms={room})).then(self.messages.fetch_quotes(room))

    # --- the composer ----------------------------------------------------------------

    def submit_draft(self, room: str, draft: str, *, reply: int | None = None,
                     edit: int | None = None) -> Outcome:
        """Send the composer's draft (an answer to ``reply``, or the new text of ``edit``),
        or run the slash command it holds (``ok`` False: the draft stays)."""
        if edit is not None:
            return self.messages.edit(room, edit, draft)
        parsed = slash.parse(draft)
        if isinstance(parsed, slash.Say):
            return self.send_text(room, parsed.text, reply=reply)
        if isinstance(parsed, slash.Refusal):
            out = self.note(room, parsed.text)
            out.ok = False
            return out
        return slash.run(self, room, parsed)

    def text_refusal(self, text: str) -> str | None:
        """Why ``text`` cannot be sent as it is, or None."""
        limit = self.limit("max_text", rules.DEFAULT_MAX_TEXT)
        if len(text) > limit:
            return f"Your message is too long ({len(text)} characters; the limit is {limit})."
        if rules.has_forbidden_text_chars(text):
            return "Your message holds a control character, which cannot be sent."
        return None

    def send_text(self, room: str, text: str, *, reply: int | None = None) -> Outcome:
        """Send a message (answering ``reply``); ``ok`` False (and a line saying why) if
        it cannot go as is."""
        state = self.state
        text = text.replace("\r\n", "\n")
        refusal = self.text_refusal(text)
        if refusal is None and state.conversation(room).peer in state.gone:
            refusal = self._gone_text(room, "your message was not sent")
        if refusal is not None:
            out = self.note(room, refusal)
            out.ok = False
            return out
        msg_id = uuid.uuid4().hex
        state.conversation(room).add_pending(msg_id, text, state.now_ms(), reply)
        self._last_typing.pop(room, None)  # the next key says "typing" again at once
        return Outcome(Update(rooms={room}, connection=True),
                       [lambda: self._say(room, text, msg_id, reply)])

    async def _say(self, room: str, text: str, msg_id: str,
                   reply: int | None = None) -> Outcome:
        state, session = self.state, self.session
        if session is None:
            return Outcome()
        conv = state.conversation(room)
        out = Outcome(Update(rooms={room}, connection=True))
        try:
            ack = await session.say(room, text, msg_id, reply)
        except ClientError as exc:
            conv.fail(msg_id, friendly_error(exc, conv.peer or room), state.now_ms())
            out.then(self._peer_gone(room, exc))
        else:
            # The SDK hands our message back as an event too; confirming here is
            # idempotent and means no wait for the event queue.
            conv.confirm(msg_id, ack.seq, ack.ts)
        return out

    def _gone_text(self, room: str, what: str) -> str:
        peer = self.state.conversation(room).peer
        return f"{self.state.label(peer)} no longer has an account on this server: {what}."

    def _peer_gone(self, room: str, exc: ClientError) -> Outcome:
        """A DM write refused with ``no_such_user``: the other account is gone."""
        peer = self.state.conversation(room).peer
        if peer is None or exc.code != rules.ErrorCode.NO_SUCH_USER:
            return Outcome()
        return Outcome(self.state.account_gone(peer))

    def send_nudge(self, room: str) -> Outcome:
        state = self.state
        conv = state.conversation(room)
        if conv.peer is None:
            return self.note(room, "Nudges are for one-to-one conversations.")
        if conv.peer in state.gone:
            return self.note(room, self._gone_text(room, "your nudge was not sent"))
        out = Outcome()
        if state.connection.link is not Link.CONNECTED:
            # The SDK keeps it and sends it once connected: say so now, not then.
            out = self.note(room, "You are not connected: your nudge will be sent when the "
                                  "connection is back.")
        peer = conv.peer
        out.jobs.append(lambda: self._nudge(room, peer))
        return out

    async def _nudge(self, room: str, peer: str) -> Outcome:
        state, session = self.state, self.session
        if session is None:
            return Outcome()
        conv = state.conversation(room)
        try:
            ack = await session.nudge(peer)
        except ClientError as exc:
            if exc.code == rules.ErrorCode.RATE_LIMITED:
                conv.note("You can't send a nudge that often.", state.now_ms())
            else:
                conv.note(f"Your nudge could not be sent: {friendly_error(exc, peer)}",
                          state.now_ms())
                return Outcome(Update(rooms={room})).then(self._peer_gone(room, exc))
        else:
            conv.add_message(Msg(ack.room, ack.seq, state.me, "", ack.ts,
                                 rules.MsgKind.NUDGE.value, ack.id))
            # A contact: their presence is known — once this connection's welcome has
            # been read (an ack can come first, right after a reconnect: then nothing is
            # said rather than something stale).
            known = state.people.get(peer)
            if peer in state.contacts and known is not None and not known.online \
                    and state.connection.link is Link.CONNECTED:
                conv.note(f"{state.label(peer)} is offline: your nudge will reach them when "
                          "they sign in.", state.now_ms())
        return Outcome(Update(rooms={room}))

    def typed(self, room: str) -> Outcome:
        """The draft changed: "is typing" for the others, at most every few seconds."""
        now = self.clock()
        if self.state.conversation(room).peer in self.state.gone:
            return Outcome()  # nobody to tell (the server would answer no_such_user)
        if now - self._last_typing.get(room, -TYPING_EVERY_S) < TYPING_EVERY_S:
            return Outcome()
        self._last_typing[room] = now
        return self._request(lambda s: s.typing(room))

    def note(self, room: str, text: str) -> Outcome:
        """A local line in ``room``'s transcript (never sent)."""
        self.state.conversation(room).note(text, self.state.now_ms())
        return Outcome(Update(rooms={room}))

    def mark_seen(self, room: str) -> Outcome:
        """``room``'s newest messages are on the user's screen: read, and a read mark
        ("Seen" at the other side) to send."""
        conv = self.state.conversations.get(room)
        seq = conv.mark_seen() if conv is not None else None
        if seq is None:
            return Outcome()
        out = Outcome(Update(roster=True))
        return out.then(self._request(lambda s: s.client.mark_read(room, seq)))

    # --- rooms and contacts ----------------------------------------------------------

    def join_room(self, room: str, *, open_tab: bool = True) -> Outcome:
        if self.session is None:
            return Outcome()
        return Outcome(jobs=[lambda: self._join(room, open_tab)])

    async def _join(self, room: str, open_tab: bool) -> Outcome:
        if self.session is None:
            return Outcome()
        try:
            joined = await self.session.client.join(room)
        except ClientError as exc:
            return _warning(friendly_error(exc, room))
        out = Outcome(self.state.apply(joined))
        if open_tab:
            out.update.opened[room] = True
        return out.then(self._load_context(room))

    def leave_room(self, room: str) -> Outcome:
        if self.session is None:
            return Outcome()

        async def leave() -> Outcome:
            assert self.session is not None
            try:
                left = await self.session.client.leave(room)
            except ClientError as exc:
                return _warning(friendly_error(exc, room))
            return Outcome(self.state.apply(left))

        return Outcome(jobs=[leave])

    def contact(self, op: str, name: str) -> Outcome:
        """``add``, ``remove``, ``block`` or ``unblock`` someone; said when done."""
        if self.session is None:
            return Outcome()

        async def change() -> Outcome:
            assert self.session is not None
            try:
                echo = await self.session.client.contact(op, name)
            except ClientError as exc:
                out = _warning(friendly_error(exc, name))
                if exc.code == rules.ErrorCode.NO_SUCH_USER \
                        and rules.normalize_name(name) in self.state.added_you:
                    # Answering a request whose sender's account is gone: it goes too.
                    out.then(Outcome(self.state.account_gone(name)))
                return out
            out = Outcome(self.state.apply(echo))
            return out.then(_info(f"{clean_line(self.state.label(name))} {CONTACT_DONE[op]}"))

        return Outcome(jobs=[change])

    def dismiss_request(self, name: str) -> Outcome:
        """"Not now" to someone who added us: the prompt goes, the request is kept."""
        return Outcome(self.state.dismiss_request(name))

    def members_text(self, room: str) -> tuple[str, Outcome]:
        """``/members``: who is in a group room (the panel beside the transcript is
        hidden below 100 columns); asks the server when nobody is known yet."""
        conv = self.state.conversation(room)
        if not conv.is_group:
            return "/members is for group rooms.", Outcome()
        if conv.members is None:
            return (f"Asking the server who is in {room}: the list is beside the transcript.",
                    self.tab_opened(room))
        names = sorted((clean_line(self.state.label(n)) for n in conv.members), key=str.lower)
        return f"In {room} ({len(names)}): {', '.join(names)}", Outcome()

    # --- who we are ------------------------------------------------------------------

    def choose_status(self, status: str) -> Outcome:
        """A status the user picked (not the idle timer's Away): kept for next time."""
        self.idle.status_chosen()
        out = self.set_status(status)
        if self.config.status != status:
            self.config.status = status
            out.then(self.save_config())
        return out

    def set_status(self, status: str) -> Outcome:
        self.state.status = status
        return Outcome(Update(me=True)).then(self._presence(status=status))

    def set_psm(self, psm: str) -> Outcome:
        if psm == self.state.psm:
            return Outcome()
        self.state.psm = psm
        return Outcome(Update(me=True)).then(self._presence(psm=psm))

    def set_display(self, display: str) -> Outcome:
        """Your display name ("" shows your handle); remembered for the next start."""
        out = Outcome()
        if display != self.state.display:
            self.state.display = display
            out = Outcome(Update(me=True, roster=True))  # tabs and labels use it too
            out.then(self._presence(display=display))
        if self.config.display != (display or None):
            self.config.display = display or None
            out.then(self.save_config())
        return out

    def check_idle(self) -> Outcome:
        """Now and then: Away after the idle minutes."""
        if self.session is None:
            return Outcome()
        status = self.idle.check(self.state.status)
        return self.set_status(status) if status is not None else Outcome()

    def activity(self) -> Outcome:
        """A key or a click: back from an Away the idle timer set."""
        if self.session is None:
            return Outcome()
        back = self.idle.activity(self.state.status)
        return self.set_status(back) if back is not None else Outcome()

    def _presence(self, **changes: str) -> Outcome:
        return self._request(lambda s: s.client.set_presence(**changes))

    # --- settings and the connection -------------------------------------------------

    def save_config(self) -> Outcome:
        warning = self.config.save(self.config_path)
        return _warning(warning) if warning else Outcome()

    def toggle_desktop_notifications(self) -> Outcome:
        self.config.desktop_notifications = not self.config.desktop_notifications
        self.config.save(self.config_path)
        state = "on" if self.config.desktop_notifications else "off"
        return _info(f"Desktop notifications {state}.")

    def toggle_bell(self) -> Outcome:
        self.config.bell = not self.config.bell
        self.config.save(self.config_path)
        return _info(f"Bell {'on' if self.config.bell else 'off'}.")

    def reconnect_now(self) -> Outcome:
        """Cut the SDK's back-off wait short: try the server at once."""
        if self.session is not None:
            self.session.client.reconnect_now()
        return Outcome()

    def limit(self, key: str, default: int = 0) -> int:
        """One of the server's advertised limits (its welcome), else ``default``."""
        welcome = self.session.client.welcome if self.session is not None else None
        if welcome is None:
            return default
        try:
            return int(welcome.limits.get(key, default))
        except (TypeError, ValueError):
            return default

    def save_conversation(self, room: str, file: str) -> Outcome:
        """``/save``: all of the conversation (older pages fetched first) to a file."""
        return Outcome(jobs=[lambda: saving.save(self, room, file)])

    def _request(self, call: Callable[[ChatSession], Awaitable[Any]]) -> Outcome:
        """A request whose answer changes nothing we show (typing, presence, read marks):
        a failure is only logged."""
        if self.session is None:
            return Outcome()
        session = self.session

        async def job() -> Outcome:
            try:
                await call(session)
            except ClientError as exc:
                log.info("request failed: %s", exc)
            return Outcome()

        return Outcome(jobs=[job])
