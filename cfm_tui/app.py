"""``ChatApp``: the messenger. Owns the state and the session; screens render the state.

Flow: sign in (or skip it when a name was given) → connect the SDK client → one worker
reads its events, applies each to :class:`ChatState` and tells the main screen what
changed → notices become toasts, the bell, a shake, desktop notifications.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, ClassVar

from textual import events, work
from textual.app import App
from textual.binding import Binding, BindingType

from cfm_common import rules
from cfm_common.client import ClientError, Connected, StateChanged
from cfm_common.frames import Msg
from cfm_common.tokens import default_token_file
from cfm_tui import export, render, slash
from cfm_tui.commands import ChatCommands
from cfm_tui.config import ChatConfig, data_dir
from cfm_tui.emoticons import replace_emoticons
from cfm_tui.idle import IdleTracker
from cfm_tui.keys import read_esc_digit_as_alt_digit
from cfm_tui.notify import desktop_notification
from cfm_tui.sanitize import clean_line
from cfm_tui.screens.ask import AskScreen
from cfm_tui.screens.confirm import ConfirmScreen
from cfm_tui.screens.main import MainScreen
from cfm_tui.screens.signin import SignInError, SignInForm, SignInScreen
from cfm_tui.session import (
    ChatSession,
    EmbeddedServer,
    EmbeddedServerBusy,
    SignIn,
    connect_error,
    friendly_error,
    name_taken_text,
    server_urls,
    sign_in_refusal,
)
from cfm_tui.state import ChatState, Link, Notice, NoticeKind, Update
from cfm_tui.theme import MSN_THEME
from cfm_tui.widgets.added_you import AddedYouPrompt
from cfm_tui.widgets.buddy_list import ROOM, USER, BuddyList
from cfm_tui.widgets.conversation_view import ConversationView
from cfm_tui.widgets.me_header import MeHeader

log = logging.getLogger(__name__)

TYPING_EVERY_S = 3.0
HOLD_KEYS_S = 1.0  # at most, should the buddy list never answer an Enter
TOAST_EVERY_S = 3.0  # per conversation, so a burst of offline messages is one toast
PREVIEW_WORDS = 8
HISTORY_PAGE = 50
SEARCH_SHOWN = 10  # /search: the newest matches, as one note
SEARCH_TEXT_CHARS = 80
# Fetch some context when opening a conversation that holds fewer messages than this.
CONTEXT_LINES = 20
# What the buddy list's keys ask before acting: question, detail, the confirm button.
CONFIRM = {
    "block": ("Block {who}?", "They won't be able to message you or see your status.",
              "Block"),
    "remove": ("Remove {who} from your contacts?", "You can add them again later.",
               "Remove"),
}


@dataclass
class ChatOptions:
    """How ``cfm chat`` was started (the CLI maps flags and the config onto this)."""

    server: str | None = None
    name: str | None = None
    display: str | None = None
    status: str = "online"
    # --invite: for this sign-in only (the SDK sends it while it has no token), never saved.
    invite: str | None = None
    # --token-file: the token file for this run's sign-ins (e.g. the one the operator's
    # `cfm admin add-user` wrote); the SDK writes a refreshed token back to it. Not saved.
    token_file: Path | None = None
    # Where the embedded server keeps its data (and this app its tokens for it).
    data_dir: Path = field(default_factory=data_dir)
    config_path: Path | None = None
    config: ChatConfig = field(default_factory=ChatConfig)
    config_warning: str | None = None
    animations: bool = True


class ChatApp(App[None]):
    # Absolute, so that subclasses defined elsewhere find it too.
    CSS_PATH = Path(__file__).parent / "styles" / "app.tcss"
    TITLE = "cfm Messenger"
    COMMANDS = App.COMMANDS | {ChatCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
    ]

    def __init__(self, options: ChatOptions | None = None, *, state: ChatState | None = None,
                 tz: tzinfo | None = None) -> None:
        super().__init__()
        read_esc_digit_as_alt_digit()  # Alt+1…9 switch tabs under tmux too
        self.options = options or ChatOptions()
        self.config = self.options.config
        self.state = state
        self.tz = tz
        self.session: ChatSession | None = None
        self.embedded = EmbeddedServer(self.options.data_dir / "embedded")
        self.main: MainScreen | None = None
        self.idle = IdleTracker(self.config.idle_minutes)
        self._last_typing: dict[str, float] = {}
        # Keys typed after an Enter in the buddy list, until its conversation is open.
        self._held_keys: list[events.Key] | None = None
        self._last_toast: dict[str, float] = {}
        self.bells = 0  # how often we rang (the terminal bell cannot be observed)
        self.desktop_notes: list[str] = []

    # --- start-up --------------------------------------------------------------------

    async def on_mount(self) -> None:
        self.register_theme(MSN_THEME)
        self.theme = self.config.theme if self.config.theme in self.available_themes else "msn"
        if self.options.config_warning:
            self.notify(self.options.config_warning, severity="warning", markup=False)
        self.set_interval(1.0, self._tick)
        self.set_interval(15.0, self._check_idle)
        if self.state is not None:
            # A state handed in (snapshots, demos): show it, no server involved.
            await self._show_main(server="")
            return
        name = self.options.name
        if name:
            form = SignInForm(name, self.options.display or "", self.options.status,
                              self.options.server, self.options.invite)
            error = await self.sign_in(form)
            if error is None:
                return
            screen = self._signin_screen()
            await self.push_screen(screen)
            screen.show_error(error.text, error.field)
        else:
            await self.push_screen(self._signin_screen())

    def _signin_screen(self) -> SignInScreen:
        c = self.config
        return SignInScreen(name=self.options.name or c.name or "",
                            display=self.options.display or c.display or "",
                            status=self.options.status or c.status or "online",
                            server=self.options.server or c.server or "",
                            invite=self.options.invite or "")

    async def on_sign_in_screen_submitted(self, event: SignInScreen.Submitted) -> None:
        error = await self.sign_in(event.form)
        if error is not None and isinstance(self.screen, SignInScreen):
            self.screen.show_error(error.text, error.field)

    async def sign_in(self, form: SignInForm) -> SignInError | None:
        """Connect and show the main window; what went wrong if that failed."""
        urls: list[str] = []
        if form.server:
            try:  # "localhost:1863" means ws://localhost:1863/ws; commas: several nodes
                urls = server_urls(form.server)
            except ValueError as exc:
                return SignInError(str(exc), "server")
            form = replace(form, server=",".join(urls))
        try:
            if urls:
                url, token_file = ",".join(urls), None
            else:
                url = await self.embedded.start()
                # The embedded server's port changes every run: keep its tokens by name.
                token_file = (self.options.data_dir / "embedded" / "tokens"
                              / f"{rules.normalize_name(form.name)}.token")
        except EmbeddedServerBusy as exc:
            log.info("embedded server: %s", exc.__cause__)
            return SignInError(str(exc))
        except Exception as exc:  # the embedded server could not start
            log.exception("embedded server failed")
            return SignInError(f"Could not start the local server: {exc}")
        if self.options.token_file is not None:
            token_file = self.options.token_file
        session = ChatSession(urls or url, SignIn(form.name, form.display or None, form.status,
                                          None, form.server, form.invite),
                              token_file=token_file)
        try:
            welcome = await session.connect()
        except ClientError as exc:
            if exc.code == "connect_failed":
                return SignInError(connect_error(exc, url), "server" if form.server else None)
            if exc.code == "forbidden":  # registration: closed, or by invite
                return SignInError(*sign_in_refusal(exc))
            field = "name" if exc.code in ("name_taken", "bad_token", "name_invalid") else None
            if exc.code == "name_taken" and "looks too much like" not in exc.msg:
                return SignInError(name_taken_text(
                    form.name, token_file or default_token_file(url, form.name)), field)
            return SignInError(friendly_error(exc, form.name), field)
        self.session = session
        self.state = ChatState(welcome.name)
        self.state.on_welcome(welcome)
        same_account = (self.config.name, self.config.server) == (form.name, form.server)
        tabs = list(self.config.open_tabs) if same_account else []
        self._remember(form)
        await self._show_main(server=session.url if form.server else "local server")
        self._pump_events()
        if tabs:
            self.run_worker(self._reopen_tabs(tabs), group="reopen", exit_on_error=False)
        return None

    async def _reopen_tabs(self, rooms: list[str]) -> None:
        """The conversations open at the last quit, in their order (rooms we are still
        in; DMs with whoever they were with)."""
        state, main = self.state, self.main
        if state is None or main is None:
            return
        for room in rooms:
            if rules.is_group_room(room):
                if room not in state.conversations:  # left since, or the room is gone
                    continue
            elif rules.dm_members(room) is None or state.me not in rules.dm_members(room):
                continue
            state.conversation(room)
            await main.open_conversation(room, activate=False)
            if not self.fetch_members(room):
                self.load_context(room)

    async def action_quit(self) -> None:
        if self.main is not None and self.session is not None:
            self.config.open_tabs = self.main.open_rooms()
            self.config.save(self.options.config_path)
        await super().action_quit()

    def _remember(self, form: SignInForm) -> None:
        if (self.config.name, self.config.server) != (form.name, form.server):
            self.config.open_tabs = []  # another account's conversations
        self.config.name = form.name
        self.config.display = form.display or None
        self.config.status = form.status
        self.config.server = form.server
        warning = self.config.save(self.options.config_path)
        if warning:
            self.notify(warning, severity="warning", markup=False)

    async def _show_main(self, server: str) -> None:
        assert self.state is not None
        main = MainScreen(self.state, tz=self.tz, server=server)
        if isinstance(self.screen, SignInScreen):
            await self.switch_screen(main)
        else:
            await self.push_screen(main)
        await main.ready.wait()
        self.main = main

    async def on_unmount(self) -> None:
        await self.shutdown_services()

    async def shutdown_services(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()
        await self.embedded.stop()

    # --- events from the server ------------------------------------------------------

    @work(exclusive=True, group="events", exit_on_error=False)
    async def _pump_events(self) -> None:
        session = self.session
        if session is None:
            return
        async for event in session.client:
            try:
                await self.handle_event(event)
            except Exception:  # one bad event must not stop the messenger
                log.exception("handling %r failed", event)

    async def handle_event(self, event: Any) -> None:
        state = self.state
        assert state is not None
        if isinstance(event, Connected):
            update = state.on_welcome(event.welcome)
            session = self.session
            if self.main is not None and session is not None and len(session.client.urls) > 1:
                self.main.server = session.url  # of several nodes, the one we are on now
        elif isinstance(event, StateChanged):
            update = state.on_connection(event.state.value, event.retry_in, event.reason)
        else:
            update = state.apply(event)
        await self.apply_update(update)

    async def apply_update(self, update: Update) -> None:
        if self.main is None:
            return
        for notice in update.notices:
            await self._on_notice(notice)
        self.main.render_update(update)
        self.mark_active_seen()

    async def _on_notice(self, notice: Notice) -> None:
        assert self.state is not None and self.main is not None
        who = clean_line(self.state.label(notice.who))
        if notice.kind in (NoticeKind.MESSAGE, NoticeKind.NUDGE) and notice.room:
            opened = not self.main.is_open(notice.room)
            await self.main.open_conversation(notice.room, activate=False)
            # A tab of its own: with what was said before (and who is in the room).
            if opened and not self.fetch_members(notice.room):
                self.load_context(notice.room)
            in_view = (notice.room == self.main.active_room and self.main.chat_visible()
                       and self.app_focus)
            if notice.kind is NoticeKind.NUDGE:
                self.main.shake(animate=self.options.animations)
                self.ring()
                if not in_view:
                    self.toast(f"{who} just sent you a nudge!", notice.room)
            elif not in_view:
                # Emoticons as the transcript shows them (done before the cut, so a
                # code is never split).
                words = replace_emoticons(clean_line(notice.text)).split()
                preview = " ".join(words[:PREVIEW_WORDS]) + ("…" if len(words) > PREVIEW_WORDS
                                                             else "")
                if self.toast(f"{who} says: {preview}", notice.room):
                    self.ring()
        elif notice.kind is NoticeKind.SIGNED_IN:
            self.toast(f"{who} has just signed in")
        elif notice.kind is NoticeKind.ADDED_YOU:
            answer = (" F3 to answer: Add back, Block or Not now."
                      if notice.who in self.state.added_you else "")
            who = render.label_with_handle(notice.who, self.state)
            self.toast(f"{who} has added you to their contact list.{answer}")
            self.ring()
        elif notice.kind is NoticeKind.ERROR:
            self.notify(clean_line(notice.text), severity="warning", markup=False)

    def toast(self, text: str, key: str | None = None) -> bool:
        """A toast (and a desktop notification when enabled); False if throttled."""
        if key is not None:
            now = time.monotonic()
            if now - self._last_toast.get(key, -TOAST_EVERY_S) < TOAST_EVERY_S:
                return False
            self._last_toast[key] = now
        self.notify(text, markup=False)
        if self.config.desktop_notifications:
            self.desktop_notes.append(text)
            sequence = desktop_notification(text, in_tmux=bool(os.environ.get("TMUX")))
            driver = self._driver
            if driver is not None:
                driver.write(sequence)
        return True

    def ring(self) -> None:
        if self.config.bell:
            self.bells += 1
            self.bell()

    # --- read marks, typing, idle ----------------------------------------------------

    def mark_active_seen(self) -> None:
        """Send a read mark ("Seen" at the other side) for what is shown: the active
        conversation's newest messages, when they are on screen — its pane visible, the
        transcript at the bottom, the terminal window focused (when it reports focus)."""
        main, state = self.main, self.state
        if main is None or state is None or not main.chat_visible() or not self.app_focus:
            return
        room = main.active_room
        conv = state.conversations.get(room) if room else None
        view = main.view_for(room) if room else None
        if conv is None or room is None or view is None or not view.transcript.following:
            return
        seq = conv.mark_seen()
        if seq is not None:
            main.render_update(Update(roster=True))
            if self.session is not None:
                self._send_read(room, seq)

    @work(group="requests", exit_on_error=False)
    async def _send_read(self, room: str, seq: int) -> None:
        if self.session is not None:
            await self._quietly(self.session.client.mark_read(room, seq))

    def watch_app_focus(self, focused: bool) -> None:
        if focused:
            self.mark_active_seen()

    def _tick(self) -> None:
        if self.main is not None:
            self.main.refresh_typing()
            if self.state is not None and self.state.connection.link is Link.RECONNECTING:
                self.main.render_update(Update(connection=True))  # the countdown

    def reconnect_now(self) -> None:
        """Cut the SDK's back-off wait short: try the server at once."""
        if self.session is not None:
            self.session.client.reconnect_now()

    def _check_idle(self) -> None:
        if self.state is None or self.session is None:
            return
        status = self.idle.check(self.state.status)
        if status is not None:
            self._set_status(status)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown) and self.state is not None \
                and self.session is not None:
            back = self.idle.activity(self.state.status)
            if back is not None:
                self._set_status(back)
        if isinstance(event, events.Key) and not event.is_forwarded \
                and self.main is not None and self.screen is self.main:
            if self._held_keys is not None:
                self._held_keys.append(event)  # see below: replayed once it is open
                return
            if event.key == "enter" and isinstance(self.focused, BuddyList):
                # Enter opens a conversation: the keys typed after it belong to that
                # conversation's composer, which does not exist yet. Hold them until
                # the list says what this Enter did (a second's fallback, come what may).
                self._held_keys = held = []

                async def fallback() -> None:
                    if self._held_keys is held:  # this hold, not a later one
                        await self._release_keys()

                self.set_timer(HOLD_KEYS_S, fallback)
            else:
                # Before the key is handed to the focused widget: see take_typed_key.
                self.main.take_typed_key(event)
        await super().on_event(event)

    async def _release_keys(self) -> None:
        """Hand the held keys on, in order, to where the focus is now."""
        held, self._held_keys = self._held_keys, None
        for key in held or ():
            await self.on_event(key)

    async def on_buddy_list_nothing_to_open(self, event: BuddyList.NothingToOpen) -> None:
        await self._release_keys()

    # --- messages from the widgets ---------------------------------------------------

    async def on_buddy_list_open(self, event: BuddyList.Open) -> None:
        if event.target.startswith(USER):
            await self.open_dm(event.target[len(USER):])
        elif event.target.startswith(ROOM):
            await self.open_room(event.target[len(ROOM):])
        await self._release_keys()  # typed after the Enter: into the new composer

    async def open_dm(self, name: str) -> None:
        if self.state is None or self.main is None:
            return
        conv = self.state.dm_with(name)
        await self.main.open_conversation(conv.room, activate=True)
        self.load_context(conv.room)
        self.mark_active_seen()

    async def open_room(self, room: str) -> None:
        if self.state is None or self.main is None:
            return
        self.state.conversation(room)
        await self.main.open_conversation(room, activate=True)
        if not self.fetch_members(room):
            self.load_context(room)
        self.mark_active_seen()

    def fetch_members(self, room: str) -> bool:
        """Ask for a group room's members (and their names) when none are known yet —
        a room we are in since before this sign-in. True if asked: the answer loads
        the recent history too."""
        conv = self.state.conversations.get(room) if self.state is not None else None
        if conv is None or not conv.is_group or conv.members is not None:
            return False
        self.join_room(room, open_tab=False)  # for a member, join only answers `joined`
        return True

    def on_buddy_list_contact_action(self, event: BuddyList.ContactAction) -> None:
        """A key in the list is easy to press by accident: block and remove ask first."""
        op, name = event.op, event.name
        if op not in CONFIRM or self.state is None:
            self.contact(op, name)
            return
        question, detail, button = CONFIRM[op]
        label = clean_line(self.state.label(name))
        # "Remove Bob (bob)", but "Remove bob", not "Remove bob (bob)".
        who = label if label.casefold() == name.casefold() else f"{label} ({name})"

        def done(yes: bool | None) -> None:
            if yes:
                self.contact(op, name)

        self.push_screen(ConfirmScreen(question.format(who=who), detail, button), done)

    def on_buddy_list_leave_room(self, event: BuddyList.LeaveRoom) -> None:
        room = event.room

        def done(yes: bool | None) -> None:
            if yes:
                self.leave_room(room)

        self.push_screen(ConfirmScreen(
            f"Leave {room}?", "Its messages stop coming; F6 joins it again.", "Leave"), done)

    def on_added_you_prompt_answer(self, event: AddedYouPrompt.Answer) -> None:
        if event.action == "dismiss" and self.state is not None:
            self._render(self.state.dismiss_request(event.name))
        elif event.action in ("add", "block"):
            self.contact(event.action, event.name)

    def on_me_header_status_chosen(self, event: MeHeader.StatusChosen) -> None:
        if self.state is not None and event.status != self.state.status:
            self._choose_status(event.status)

    def on_me_header_psm_changed(self, event: MeHeader.PsmChanged) -> None:
        self.set_psm(event.psm)

    def on_conversation_view_send(self, event: ConversationView.Send) -> None:
        # The composer has already let go of the draft (keys typed after Enter start the
        # next one); a draft that stays to be fixed goes back in.
        if not self.submit_draft(event.room, event.text) and self.main is not None:
            view = self.main.view_for(event.room)
            if view is not None:
                view.composer.restore(event.text)

    def on_conversation_view_nudge_requested(self, event: ConversationView.NudgeRequested) -> None:
        self.send_nudge(event.room)

    def on_conversation_view_caught_up(self, event: ConversationView.CaughtUp) -> None:
        if self.main is not None and event.room == self.main.active_room:
            self.mark_active_seen()

    def on_conversation_view_load_older(self, event: ConversationView.LoadOlder) -> None:
        self.load_older(event.room)

    def on_conversation_view_typed(self, event: ConversationView.Typed) -> None:
        now = time.monotonic()
        if now - self._last_typing.get(event.room, -TYPING_EVERY_S) < TYPING_EVERY_S:
            return
        self._last_typing[event.room] = now
        if self.session is not None:
            self._send_typing(event.room)

    # --- talking to the server -------------------------------------------------------

    def _render(self, update: Update) -> None:
        if self.main is not None:
            self.main.render_update(update)

    def submit_draft(self, room: str, draft: str) -> bool:
        """Send the composer's draft, or run the slash command it holds.

        False when the draft should stay in the composer (refused, or not a command).
        """
        parsed = slash.parse(draft)
        if isinstance(parsed, slash.Say):
            return self.send_text(room, parsed.text)
        if isinstance(parsed, slash.Refusal):
            self.note(room, parsed.text)
            return False
        return self.run_command(room, parsed)

    def run_command(self, room: str, command: slash.Command) -> bool:
        """Run a checked slash command typed in ``room``'s composer."""
        state, main = self.state, self.main
        if state is None or main is None:
            return False
        name, arg = command.name, command.arg
        if name == "me":
            return self.send_text(room, slash.me_text(state.me, arg))
        if name == "nudge":
            self.send_nudge(room)
        elif name == "status":
            self._choose_status(arg)
        elif name == "psm":
            self.set_psm(arg)
        elif name == "name":
            self.set_display(arg)
        elif name == "join":
            self.join_room(arg)
        elif name == "leave":
            if rules.is_group_room(room):
                self.leave_room(room)
            else:
                self.note(room, "/leave is for group rooms; /close closes this conversation.")
        elif name == "members":
            self.note(room, self.members_text(room))
        elif name in ("add", "block", "unblock"):
            self.contact(name, arg)
        elif name == "close":
            main.close_conversation(room)
        elif name == "reconnect":
            if state.connection.link is Link.RECONNECTING:
                self.reconnect_now()
            else:
                self.note(room, f"/reconnect is for while the connection is down "
                                f"({state.connection.describe()}).")
        elif name == "help":
            self.note(room, slash.help_text())
        elif name == "save":
            self.save_conversation(room, arg)
        elif name == "search":
            self.search_messages(room, arg)
        return True

    @work(group="requests", exit_on_error=False)
    async def search_messages(self, room: str, text: str) -> None:
        """``/search words``: the newest matches from every room and conversation, as a
        local note in the one it was typed in."""
        session = self.session
        if session is None:
            self.note(room, "Not connected: /search asks the server.")
            return
        try:
            page = await session.client.search(text, limit=SEARCH_SHOWN)
        except ClientError as exc:
            self.note(room, f"Search for {text!r} failed: {exc.msg}")
            return
        self.note(room, self.search_text(text, page.msgs, page.more))

    def search_text(self, text: str, msgs: Any, more: bool) -> str:
        if not msgs:
            return f"No message holds all of: {text}"
        assert self.state is not None
        lines = [f"Found for {text} (newest first{'; older ones not shown' if more else ''}):"]
        for m in msgs:
            when = datetime.fromtimestamp(m.ts / 1000, self.tz).strftime("%d %b %H:%M")
            if rules.is_group_room(m.room):
                where = m.room
            else:
                pair = m.room.split(":")[1:]
                peer = pair[1] if pair[0] == self.state.me else pair[0]
                where = f"with {clean_line(self.state.label(peer))}"
            said = clean_line(" ".join(m.text.split()))
            if len(said) > SEARCH_TEXT_CHARS:
                said = said[:SEARCH_TEXT_CHARS - 1] + "…"
            lines.append(f"  {when}  {where}  {clean_line(self.state.label(m.sender))}: {said}")
        return "\n".join(lines)

    @work(group="requests", exit_on_error=False)
    async def save_conversation(self, room: str, file: str) -> None:
        """``/save``: all of the conversation (older pages fetched first) to a file."""
        state, session = self.state, self.session
        if state is None:
            return
        conv = state.conversation(room)
        while session is not None and conv.can_load_older:
            try:
                page = await session.client.history(room, before=conv.oldest_seq,
                                                    limit=HISTORY_PAGE)
            except ClientError as exc:
                log.info("history of %s for /save failed: %s", room, exc)
                break
            if not conv.add_history(page.msgs, page.more) and page.more:
                break  # nothing new although the server says there is more: stop
        now = datetime.now(self.tz)
        path = Path(file).expanduser() if file else Path.cwd() / export.default_file_name(
            room, now)
        try:
            export.write(path, export.conversation_text(room, state, self.tz, now))
        except FileExistsError:
            self.note(room, f"{path} exists already: /save another name, or remove it.")
        except OSError as exc:
            self.note(room, f"Could not save to {path}: {exc.strerror or exc}")
        else:
            self.note(room, f"Saved this conversation ({len(conv.messages)} messages) to "
                            f"{path}.")
        self._render(Update(rooms={room}))

    def members_text(self, room: str) -> str:
        """``/members``: who is in a group room (the panel beside the transcript is
        hidden below 100 columns)."""
        assert self.state is not None
        conv = self.state.conversation(room)
        if not conv.is_group:
            return "/members is for group rooms."
        if conv.members is None:
            self.fetch_members(room)
            return f"Asking the server who is in {room}: the list is beside the transcript."
        names = sorted((clean_line(self.state.label(n)) for n in conv.members), key=str.lower)
        return f"In {room} ({len(names)}): {', '.join(names)}"

    def note(self, room: str, text: str) -> None:
        """A local line in ``room``'s transcript (never sent)."""
        if self.state is not None:
            self.state.conversation(room).note(text, self.state.now_ms())
            self._render(Update(rooms={room}))

    def set_psm(self, psm: str) -> None:
        if self.state is None or psm == self.state.psm:
            return
        self.state.psm = psm
        self._render(Update(me=True))
        self._presence(psm=psm)

    def set_display(self, display: str) -> None:
        """Your display name ("" shows your handle); remembered for the next start."""
        if self.state is None:
            return
        if display != self.state.display:
            self.state.display = display
            self._render(Update(me=True, roster=True))  # tabs and labels use it too
            self._presence(display=display)
        if self.config.display != (display or None):
            self.config.display = display or None
            warning = self.config.save(self.options.config_path)
            if warning:
                self.notify(warning, severity="warning", markup=False)

    def send_text(self, room: str, text: str) -> bool:
        """Send a message; False (and a line saying why) if it cannot be sent as is."""
        state = self.state
        if state is None:
            return False
        text = text.replace("\r\n", "\n")
        limit = int(state_limit(self.session, "max_text"))
        refusal = None
        if len(text) > limit:
            refusal = (f"Your message is too long ({len(text)} characters; "
                       f"the limit is {limit}).")
        elif rules.has_forbidden_text_chars(text):
            refusal = "Your message holds a control character, which cannot be sent."
        if refusal is not None:
            state.conversation(room).note(refusal, state.now_ms())
            self._render(Update(rooms={room}))
            return False
        msg_id = uuid.uuid4().hex
        state.conversation(room).add_pending(msg_id, text, state.now_ms())
        self._last_typing.pop(room, None)
        self._render(Update(rooms={room}, connection=True))
        self._send_say(room, text, msg_id)
        return True

    @work(group="requests", exit_on_error=False)
    async def _send_say(self, room: str, text: str, msg_id: str) -> None:
        state, session = self.state, self.session
        if state is None or session is None:
            return
        conv = state.conversation(room)
        try:
            ack = await session.say(room, text, msg_id)
        except ClientError as exc:
            conv.fail(msg_id, friendly_error(exc, conv.peer or room), state.now_ms())
        else:
            # The SDK hands our message back as an event too; confirming here is
            # idempotent and means no wait for the event queue.
            conv.confirm(msg_id, ack.seq, ack.ts)
        self._render(Update(rooms={room}, connection=True))

    def send_nudge(self, room: str) -> None:
        state = self.state
        if state is None:
            return
        conv = state.conversation(room)
        if conv.peer is None:
            conv.note("Nudges are for one-to-one conversations.", state.now_ms())
            self._render(Update(rooms={room}))
            return
        if state.connection.link is not Link.CONNECTED:
            # The SDK keeps it and sends it once connected: say so now, not then.
            conv.note("You are not connected: your nudge will be sent when the connection "
                      "is back.", state.now_ms())
            self._render(Update(rooms={room}))
        self._send_nudge(room, conv.peer)

    @work(group="requests", exit_on_error=False)
    async def _send_nudge(self, room: str, peer: str) -> None:
        state, session = self.state, self.session
        if state is None or session is None:
            return
        conv = state.conversation(room)
        try:
            ack = await session.nudge(peer)
        except ClientError as exc:
            if exc.code == rules.ErrorCode.RATE_LIMITED:
                conv.note("You can't send a nudge that often.", state.now_ms())
            else:
                conv.note(f"Your nudge could not be sent: {friendly_error(exc, peer)}",
                          state.now_ms())
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
        self._render(Update(rooms={room}))

    @work(group="requests", exit_on_error=False)
    async def _send_typing(self, room: str) -> None:
        if self.session is not None:
            await self._quietly(self.session.typing(room))

    def load_context(self, room: str) -> None:
        """Fetch the latest page when the conversation holds little of its history."""
        conv = self.state.conversations.get(room) if self.state is not None else None
        if conv is not None and conv.can_load_older and len(conv.messages) < CONTEXT_LINES:
            self.load_older(room)

    @work(group="history", exit_on_error=False)
    async def load_older(self, room: str) -> None:
        state, session, main = self.state, self.session, self.main
        if state is None or session is None or main is None:
            return
        conv = state.conversations.get(room)
        view = main.view_for(room)
        if conv is None or not conv.can_load_older or (view is not None and view.loading_older):
            return
        if view is not None:
            view.loading_older = True
        try:
            page = await session.client.history(room, before=conv.oldest_seq, limit=HISTORY_PAGE)
        except ClientError as exc:
            if exc.code in (rules.ErrorCode.NOT_MEMBER, rules.ErrorCode.NO_SUCH_ROOM,
                            rules.ErrorCode.FORBIDDEN):
                conv.loaded_all = True
            else:
                log.info("history of %s failed: %s", room, exc)
        else:
            conv.add_history(page.msgs, page.more)
            self._render(Update(rooms={room}))
        finally:
            if view is not None:
                view.loading_older = False

    @work(group="requests", exit_on_error=False)
    async def join_room(self, room: str, *, open_tab: bool = True) -> None:
        state, session = self.state, self.session
        if state is None or session is None or self.main is None:
            return
        try:
            joined = await session.client.join(room)
        except ClientError as exc:
            self.notify(friendly_error(exc, room), severity="warning", markup=False)
            return
        update = state.apply(joined)
        if open_tab:
            await self.main.open_conversation(room, activate=True)
        self._render(update)
        self.load_context(room)

    @work(group="requests", exit_on_error=False)
    async def leave_room(self, room: str) -> None:
        state, session = self.state, self.session
        if state is None or session is None:
            return
        try:
            left = await session.client.leave(room)
        except ClientError as exc:
            self.notify(friendly_error(exc, room), severity="warning", markup=False)
            return
        self._render(state.apply(left))

    @work(group="requests", exit_on_error=False)
    async def contact(self, op: str, name: str) -> None:
        state, session = self.state, self.session
        if state is None or session is None:
            return
        try:
            echo = await session.client.contact(op, name)
        except ClientError as exc:
            self.notify(friendly_error(exc, name), severity="warning", markup=False)
            return
        self._render(state.apply(echo))
        done = {"add": "added to", "remove": "removed from", "block": "blocked;",
                "unblock": "unblocked;"}[op]
        tail = " your contact list" if op in ("add", "remove") else " see Blocked in the list" \
            if op == "block" else " they can reach you again"
        self.notify(f"{clean_line(state.label(name))} was {done}{tail}.", markup=False)

    def _set_status(self, status: str) -> None:
        if self.state is None:
            return
        self.state.status = status
        self._render(Update(me=True))
        self._presence(status=status)

    @work(group="requests", exit_on_error=False)
    async def _presence(self, **changes: str) -> None:
        if self.session is not None:
            await self._quietly(self.session.client.set_presence(**changes))

    async def _quietly(self, awaitable: Any) -> None:
        try:
            await awaitable
        except ClientError as exc:
            log.info("request failed: %s", exc)

    # --- actions (bindings and the command palette) ----------------------------------

    def action_add_contact(self) -> None:
        def check(value: str) -> str | None:
            return None if rules.is_valid_name(value) else "That is not a valid handle."

        def done(name: str | None) -> None:
            if name:
                self.contact("add", name)

        self.push_screen(AskScreen("Add a contact", "Their handle:", placeholder="e.g. bob",
                                   check=check), done)

    def action_join_room(self) -> None:
        def check(value: str) -> str | None:
            room = value if value.startswith("#") else f"#{value}"
            return None if rules.is_group_room(room) else \
                "A room is # and 1-32 of a-z 0-9 _ - (e.g. #lobby)."

        def done(value: str | None) -> None:
            if value:
                self.join_room(value if value.startswith("#") else f"#{value}")

        self.push_screen(AskScreen("Join a group room", "Room:", placeholder="#lobby",
                                   check=check), done)

    def action_search(self, room: str | None) -> None:
        """Ctrl+F: ask for words, then ``/search`` them into the open conversation."""
        if room is None:
            self.notify("Open a conversation first: the matches are shown in it.",
                        severity="warning", markup=False)
            return

        def check(value: str) -> str | None:
            parsed = slash.parse(f"/search {value}")
            return parsed.text if isinstance(parsed, slash.Refusal) else None

        def done(value: str | None) -> None:
            if value:
                self.search_messages(room, " ".join(value.split()))

        self.push_screen(AskScreen("Search messages", "Words (all of them, any case):",
                                   placeholder="lunch friday", check=check), done)

    def action_change_display(self) -> None:
        def done(value: str | None) -> None:
            if value is not None:
                self.set_display(value)

        current = self.state.display if self.state is not None else ""
        self.push_screen(AskScreen("Change display name", "Your display name (empty: your "
                                   "handle):", placeholder=current,
                                   check=slash.display_refusal, value=current), done)

    def action_edit_psm(self) -> None:
        if self.main is not None:
            self.main.query_one("#me-psm").focus()

    def palette_commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        """Every action as (title, callback, help) for :class:`ChatCommands`."""
        main, state = self.main, self.state
        if main is None or state is None:
            return []
        out: list[tuple[str, Callable[[], Any], str]] = [
            ("Add a contact…", self.action_add_contact, "Add someone by their handle"),
            ("Join a group room…", self.action_join_room, "Join or create a #room"),
            ("Switch between buddy list and conversation", main.action_switch_pane,
             "One pane at a time on narrow terminals (F2)"),
            ("Edit personal message", self.action_edit_psm, "What your contacts see"),
            ("Change display name", self.action_change_display,
             "The name your contacts see (/name)"),
            *([("Reconnect now", self.reconnect_now, "Try the server at once (/reconnect)")]
              if state.connection.link is Link.RECONNECTING else []),
            ("Toggle desktop notifications", self.action_toggle_desktop_notifications,
             "OSC 9 notifications through the terminal"),
            ("Toggle the bell", self.action_toggle_bell, "Ring on nudges and new messages"),
            ("Quit", self.action_quit, "Sign out and leave"),
        ]
        for number, open_room in enumerate(main.open_rooms(), 1):
            title = clean_line(render.conversation_title(open_room, state))
            key = f"Alt+{number}, " if number < 10 else ""
            out.append((f"Go to {title}" if rules.is_group_room(open_room)
                        else f"Go to conversation with {title}",
                        lambda r=open_room: self.run_worker(main.go_to(r)),
                        f"{key}Ctrl+PageUp/PageDown: previous/next tab"))
        room = main.active_room
        if room is not None:
            conv = state.conversations.get(room)
            if conv is not None and conv.peer is not None:
                out.append(("Send a nudge", main.action_nudge, "Shake their window (Ctrl+G)"))
            out.append(("Close this conversation", main.action_close_conversation, "F4"))
            if conv is not None and conv.is_group:
                out.append((f"Leave {room}", lambda r=room: self.leave_room(r),
                            "End your membership of the room"))
        for status, label in rules.STATUS_LABELS.items():
            if status is not rules.Status.OFFLINE:
                out.append((f"Status: {label}",
                            lambda s=status.value: self._choose_status(s), "Change your status"))
        for name in state.added_you:  # the "has added you" prompt's answers
            label = clean_line(state.label(name))
            out.append((f"Add {label} ({name}) back", lambda n=name: self.contact("add", n),
                        "They added you to their contact list"))
            out.append((f"Block {label} ({name})", lambda n=name: self.contact("block", n),
                        "They added you; they won't reach you"))
            out.append((f"Not now: {label} ({name})",
                        lambda n=name: self._render(state.dismiss_request(n)),
                        "Answer their request later"))
        for person in state.contact_people():
            label = clean_line(person.label)
            out.append((f"Chat with {label} ({person.name})",
                        lambda n=person.name: self.run_worker(self.open_dm(n)), "Open a DM"))
            out.append((f"Remove {label} ({person.name})",
                        lambda n=person.name: self.contact("remove", n), "From your contacts"))
            out.append((f"Block {label} ({person.name})",
                        lambda n=person.name: self.contact("block", n), "They can't reach you"))
        for name in sorted(state.blocked):
            out.append((f"Unblock {name}", lambda n=name: self.contact("unblock", n),
                        "Let them reach you again"))
        for room_name in state.group_rooms():
            out.append((f"Open {room_name}",
                        lambda r=room_name: self.run_worker(self.open_room(r)), "Group room"))
        return out

    def _choose_status(self, status: str) -> None:
        """A status the user picked (not the idle timer's Away): kept for next time."""
        self.idle.status_chosen()
        self._set_status(status)
        if self.config.status != status:
            self.config.status = status
            warning = self.config.save(self.options.config_path)
            if warning:
                self.notify(warning, severity="warning", markup=False)

    def action_toggle_desktop_notifications(self) -> None:
        self.config.desktop_notifications = not self.config.desktop_notifications
        self.config.save(self.options.config_path)
        state = "on" if self.config.desktop_notifications else "off"
        self.notify(f"Desktop notifications {state}.")

    def action_toggle_bell(self) -> None:
        self.config.bell = not self.config.bell
        self.config.save(self.options.config_path)
        self.notify(f"Bell {'on' if self.config.bell else 'off'}.")


def state_limit(session: ChatSession | None, key: str) -> int:
    welcome = session.client.welcome if session is not None else None
    default = {"max_text": rules.DEFAULT_MAX_TEXT}.get(key, 0)
    if welcome is None:
        return default
    try:
        return int(welcome.limits.get(key, default))
    except (TypeError, ValueError):
        return default
