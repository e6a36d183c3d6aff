"""``ChatApp``: the messenger's wiring. Textual in, the controller, Textual out.

Flow: sign in (:mod:`cfm_tui.signin_flow`, or skipped when a name was given) → one
worker reads the SDK's events → :class:`ChatController` (the only thing that changes
the state) returns an :class:`Outcome` → the main screen renders its update, the
notification policy (:mod:`cfm_tui.alerts`) says what each notice becomes, and the
outcome's requests run as workers. Widgets and screens post messages up to here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path
from typing import Any, ClassVar

from textual import events, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.worker import Worker, WorkerState

from cfm_common.client import Connected
from cfm_tui.alerts import Alert, NotificationPolicy
from cfm_tui.commands import ChatCommands
from cfm_tui.controller import ChatController
from cfm_tui.embedded import EmbeddedServer
from cfm_tui.intents import IntentRequested
from cfm_tui.keys import read_esc_digit_as_alt_digit
from cfm_tui.notify import desktop_notification
from cfm_tui.outcome import Job, Outcome
from cfm_tui.palette import Intent
from cfm_tui.screens.main import MainScreen
from cfm_tui.screens.signin import SignInError, SignInForm, SignInScreen
from cfm_tui.search_wiring import SearchWiring
from cfm_tui.session import ChatSession
from cfm_tui.signin_flow import ChatOptions, SignedIn, sign_in
from cfm_tui.state import ChatState, Link, Notice, NoticeKind, Update
from cfm_tui.theme import MSN_THEME
from cfm_tui.widgets.buddy_list import ROOM, USER, BuddyList
from cfm_tui.widgets.conversation_view import ConversationView

__all__ = ["ChatApp", "ChatOptions"]

log = logging.getLogger(__name__)

HOLD_KEYS_S = 1.0  # at most, should the buddy list never answer an Enter


class ChatApp(SearchWiring, App[None]):
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
        self.tz = tz
        # Until signed in, none; a state handed in (snapshots, demos) has no session.
        self.controller = None if state is None else ChatController(
            state, None, config=self.config, config_path=self.options.config_path, tz=tz)
        self.alerts = NotificationPolicy(self.config)
        self.embedded = EmbeddedServer(self.options.data_dir / "embedded")
        self.main: MainScreen | None = None
        # Keys typed after an Enter in the buddy list, until its conversation is open.
        self._held_keys: list[events.Key] | None = None
        self.bells = 0  # how often we rang (the terminal bell cannot be observed)
        self.desktop_notes: list[str] = []

    @property
    def state(self) -> ChatState | None:
        return self.controller.state if self.controller is not None else None

    @property
    def session(self) -> ChatSession | None:
        return self.controller.session if self.controller is not None else None

    # --- start-up --------------------------------------------------------------------

    async def on_mount(self) -> None:
        self.register_theme(MSN_THEME)
        self.theme = self.config.theme if self.config.theme in self.available_themes else "msn"
        if self.options.config_warning:
            self.notify(self.options.config_warning, severity="warning", markup=False)
        self.set_interval(1.0, self._tick)
        self.set_interval(15.0, self._check_idle)
        if self.controller is not None:
            await self._show_main(server="")  # a state handed in: no server involved
            return
        if self.options.name:
            o = self.options
            error = await self.sign_in(SignInForm(o.name or "", o.display or "", o.status,
                                                  o.server, o.invite))
            if error is None:
                return
            screen = self._signin_screen()
            await self.push_screen(screen)
            screen.show_error(error.text, error.field)
        else:
            await self.push_screen(self._signin_screen())

    def _signin_screen(self) -> SignInScreen:
        c, o = self.config, self.options
        return SignInScreen(name=o.name or c.name or "", display=o.display or c.display or "",
                            status=o.status or c.status or "online",
                            server=o.server or c.server or "", invite=o.invite or "")

    async def on_sign_in_screen_submitted(self, event: SignInScreen.Submitted) -> None:
        error = await self.sign_in(event.form)
        if error is not None and isinstance(self.screen, SignInScreen):
            self.screen.show_error(error.text, error.field)

    async def sign_in(self, form: SignInForm) -> SignInError | None:
        """Connect and show the main window; what went wrong if that failed."""
        done = await sign_in(form, self.options, self.embedded)
        if not isinstance(done, SignedIn):
            return done
        form = done.form
        self.controller = controller = ChatController.signed_in(
            done.welcome, done.session, config=self.config,
            config_path=self.options.config_path, tz=self.tz)
        same_account = (self.config.name, self.config.server) == (form.name, form.server)
        tabs = list(self.config.open_tabs) if same_account else []
        if not same_account:
            self.config.open_tabs = []  # another account's conversations
        self.config.name, self.config.display = form.name, form.display or None
        self.config.status, self.config.server = form.status, form.server
        await self._show_main(server=done.session.url if form.server else "local server")
        await self.show(controller.save_config())
        self._pump_events()
        if tabs:
            self.run_worker(self.show(controller.reopen_tabs(tabs)), group="reopen",
                            exit_on_error=False)
        return None

    async def action_quit(self) -> None:
        if self.main is not None and self.session is not None:
            self.config.open_tabs = self.main.open_rooms()
            self.config.save(self.options.config_path)
        await super().action_quit()

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
        session = self.session
        if self.controller is not None:
            self.controller.session = None
        if session is not None:
            await session.close()
        await self.embedded.stop()

    # --- outcomes: render, alert, run the requests -----------------------------------

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
        assert self.controller is not None
        outcome = self.controller.on_event(event)
        session = self.session
        if isinstance(event, Connected) and self.main is not None and session is not None \
                and len(session.client.urls) > 1:
            self.main.server = session.url  # of several nodes, the one we are on now
        await self.show(outcome, mark_seen=True)

    async def apply_update(self, update: Update) -> None:
        await self.show(Outcome(update), mark_seen=True)

    async def show(self, outcome: Outcome, *, mark_seen: bool = False) -> None:
        """Open the tabs it names, carry out its notices, render it, start its jobs."""
        main, update = self.main, outcome.update
        if main is not None:
            for room, activate in update.opened.items():
                await main.open_conversation(room, activate=activate)
            for notice in update.notices:
                await self._on_notice(notice)
            main.render_update(update)
            await self._show_search_and_selection(update)
            if mark_seen or any(update.opened.values()):
                self.mark_active_seen()
        self._start(outcome.jobs)

    def show_now(self, outcome: Outcome) -> None:
        """``show`` from a handler that cannot wait: at once unless a tab is to open."""
        if not outcome.jobs and outcome.update == Update():
            return  # nothing changed (a key that did not end an idle Away)
        u = outcome.update
        if u.opened or u.notices or u.search or u.open_search or u.select:
            self.run_worker(self.show(outcome), group="show", exit_on_error=False)
            return
        if self.main is not None:
            self.main.render_update(outcome.update)
        self._start(outcome.jobs)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker of the app failed: logged with its traceback, and said. Its
        ``exit_on_error`` is off (one failed request must not end the messenger), so
        Textual would keep the error to itself, and what the worker was to do next (a
        search's request, after opening its screen) would silently never happen."""
        error = event.worker.error
        if event.state is not WorkerState.ERROR or error is None:
            return
        log.error("the %s worker %r failed", event.worker.group, event.worker.name,
                  exc_info=error)
        self.notify(f"Something went wrong in cfm chat ({type(error).__name__}: {error}); "
                    f"the details are in {self.options.data_dir / 'chat.log'}.",
                    severity="error", markup=False)

    def _start(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.run_worker(self._run_job(job), group="requests", exit_on_error=False)

    async def _run_job(self, job: Job) -> None:
        await self.show(await job())

    async def _on_notice(self, notice: Notice) -> None:
        assert self.state is not None and self.main is not None
        main, room = self.main, notice.room
        if notice.kind in (NoticeKind.MESSAGE, NoticeKind.MENTION, NoticeKind.NUDGE) and room:
            opened = not main.is_open(room)
            await main.open_conversation(room, activate=False)
            if opened and self.controller is not None:  # what was said before, who is in it
                await self.show(self.controller.tab_opened(room))
        in_view = room is not None and room == main.active_room and main.chat_visible() \
            and self.app_focus
        self.alert(self.alerts.decide(notice, self.state, in_view=in_view))

    def alert(self, alert: Alert) -> None:
        if alert.shake and self.main is not None:
            self.main.shake(animate=self.options.animations)
        if alert.ring:
            self.bells += 1
            self.bell()
        if alert.text is None:
            return
        self.notify(alert.text, severity="warning" if alert.warning else "information",
                    markup=False)
        if alert.desktop:
            self.desktop_notes.append(alert.text)
            driver = self._driver
            if driver is not None:
                driver.write(desktop_notification(alert.text,
                                                  in_tmux=bool(os.environ.get("TMUX"))))

    # --- read marks, idle, keys ------------------------------------------------------

    def mark_active_seen(self) -> None:
        """Read marks for what is on screen, in a focused terminal window (when it
        reports focus): the active conversation's newest messages."""
        room = self.main.room_on_screen() if self.main is not None else None
        if room is not None and self.app_focus:
            self._do(lambda c: c.mark_seen(room))

    def watch_app_focus(self, focused: bool) -> None:
        if focused:
            self.mark_active_seen()

    def _tick(self) -> None:
        if self.main is not None:
            self.main.refresh_typing()
            if self.state is not None and self.state.connection.link is Link.RECONNECTING:
                self.main.render_update(Update(connection=True))  # the countdown

    def _check_idle(self) -> None:
        if self.controller is not None:
            self.show_now(self.controller.check_idle())

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown) and self.controller is not None:
            self.show_now(self.controller.activity())
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

    # --- messages from the screens and widgets ---------------------------------------

    async def on_buddy_list_open(self, event: BuddyList.Open) -> None:
        if event.target.startswith(USER):
            await self.open_dm(event.target[len(USER):])
        elif event.target.startswith(ROOM):
            await self.open_room(event.target[len(ROOM):])
        await self._release_keys()  # typed after the Enter: into the new composer

    async def open_dm(self, name: str) -> None:
        if self.controller is not None:
            await self.show(self.controller.open_dm(name))

    async def open_room(self, room: str) -> None:
        if self.controller is not None:
            await self.show(self.controller.open_room(room))

    def _do(self, call: Callable[[ChatController], Outcome]) -> None:
        """Ask the controller (once signed in) and show what it answers."""
        if self.controller is not None:
            self.show_now(call(self.controller))

    def on_conversation_view_send(self, event: ConversationView.Send) -> None:
        if self.controller is None:
            return
        outcome = self.controller.submit_draft(event.room, event.text, reply=event.reply,
                                               edit=event.edit)
        # The composer has already let go of the draft (keys typed after Enter start the
        # next one); a draft that stays to be fixed goes back in.
        view = self.main.view_for(event.room) if self.main is not None else None
        if not outcome.ok and view is not None:
            view.composer.restore(event.text)
        self.show_now(outcome)

    def on_conversation_view_nudge_requested(self, event: ConversationView.NudgeRequested) -> None:
        self._do(lambda c: c.send_nudge(event.room))

    def on_conversation_view_caught_up(self, event: ConversationView.CaughtUp) -> None:
        if self.main is not None and event.room == self.main.active_room:
            self.mark_active_seen()

    def on_conversation_view_load_older(self, event: ConversationView.LoadOlder) -> None:
        self._do(lambda c: c.load_older(event.room))

    def on_conversation_view_typed(self, event: ConversationView.Typed) -> None:
        self._do(lambda c: c.typed(event.room))

    def contact(self, op: str, name: str) -> None:
        self._do(lambda c: c.contact(op, name))

    def join_room(self, room: str, *, open_tab: bool = True) -> None:
        self._do(lambda c: c.join_room(room, open_tab=open_tab))

    def leave_room(self, room: str) -> None:
        self._do(lambda c: c.leave_room(room))

    # --- intents: from the screens and the command palette -------------------------

    def on_intent_requested(self, event: IntentRequested) -> None:
        self.run_intent(event.intent)

    def run_intent(self, intent: Intent) -> None:
        if intent.action == "quit":
            self.run_worker(self.action_quit())
        elif intent.action == "search_screen":
            self._open_search()
        elif intent.action == "seen" and not self.app_focus:
            return  # on screen, but the terminal window is not in front
        elif self.controller is not None:
            self.show_now(self.controller.run_intent(intent))

    def palette_commands(self) -> list[tuple[str, Any, str]]:
        """The palette's commands as (title, callback, help): what Ctrl+P lists."""
        main = self.main
        if main is None:
            return []
        return [(e.title, lambda i=e.intent: main.post_message(IntentRequested(i)), e.help)
                for e in main.palette_entries()]
