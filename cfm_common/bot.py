"""``Bot``: a :class:`~cfm_common.client.Client` with decorators, for ten-line bots.

    bot = Bot("ws://127.0.0.1:7878/ws", "echo")

    @bot.on_message
    async def echo(msg):
        await bot.reply(msg, msg.text)

    bot.run()

Handlers run one at a time in arrival order by default (``concurrency=1``); raise it for
a bot whose handlers wait on slow work (an LLM, say), and each handler then runs as its
own task, at most ``concurrency`` at once. A handler that raises is logged, never fatal.

The guarantee: every message is handled at least once, and a handler's replies land
once. A message counts as handled when its handlers finished and the server acked what
they sent; only then does the bot move its read mark (and its ``seen_file``) past it —
with several handlers at once, never past one still running. A bot killed mid-handler
runs that handler again after its restart; the replies' ids are derived from the
message answered (:mod:`cfm_common._handling`), so the server stores the repeated ones
once and the user sees each reply once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from cfm_common import frames as f
from cfm_common import rules
from cfm_common._bot_events import CHANGE_EVENTS, TYPED_EVENTS, TypedDecorators, typed_handlers
from cfm_common._commands import Command, CommandHandler, Router
from cfm_common._handling import CURRENT, Handling, Progress, key_id, reply_id, sends_landed
from cfm_common.client import Client, ClientError, Connected, ConnectionState, StateChanged
from cfm_common.procsignals import ProcessSignals
from cfm_common.servers import Servers

log = logging.getLogger(__name__)

MsgHandler = Callable[[f.Msg], Awaitable[None]]
ContactHandler = Callable[[f.Contact], Awaitable[None]]
H = TypeVar("H", bound=Callable[..., Awaitable[Any]])
# A typing indicator fades on the other side after a few seconds: renewed this often.
TYPING_REFRESH = 3.0


class Bot(TypedDecorators):
    """A bot: answers messages and nudges through decorated async handlers."""

    def __init__(
        self,
        url: Servers,
        name: str,
        *,
        display: str | None = None,
        psm: str | None = None,
        status: str = "online",
        token: str | None = None,
        token_file: str | Path | bool | None = None,
        seen_file: str | Path | None = None,
        concurrency: int = 1,
        mark_read: bool = True,
        command_prefix: str = "!",
        **client_options: Any,
    ) -> None:
        self.client = Client(
            url, name, token=token, token_file=token_file, seen_file=seen_file, status=status,
            display=display, psm=psm, bot=True, manual_seen=True, **client_options,
        )
        self._progress = Progress()
        self._message_handlers: list[MsgHandler] = []
        self._nudge_handlers: list[MsgHandler] = []
        self._added_handlers: list[ContactHandler] = []
        self._event_handlers: list[Callable[[Any], Awaitable[None]]] = []
        self._ready_handlers: list[Callable[[f.Welcome], Awaitable[None]]] = []
        self._typed_handlers = typed_handlers()
        self._commands = Router(command_prefix)
        self._jobs: list[tuple[float, float | None, Callable[[], Awaitable[None]]]] = []
        self._job_tasks: list[asyncio.Task[None]] = []
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._mark_read = mark_read
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._waiting = False  # the dispatch loop is waiting for the next event
        self._stopped = asyncio.Event()
        self._handling: dict[asyncio.Task[None], f.Msg] = {}  # handler task → its message

    @property
    def name(self) -> str:
        return self.client.name

    # --- decorators -----------------------------------------------------------------

    def on_message(self, handler: H) -> H:
        """``async def handler(msg: Msg)``: every text message but the bot's own and
        change entries (those go to :meth:`on_reaction`, :meth:`on_edit`, :meth:`on_delete`).
        ``msg.reply``: the seq of the message it answers, if any."""
        self._message_handlers.append(handler)
        return handler

    def on_nudge(self, handler: H) -> H:
        """``async def handler(msg: Msg)``: someone nudged the bot (``msg.sender``)."""
        self._nudge_handlers.append(handler)
        return handler

    def on_added_you(self, handler: H) -> H:
        """``async def handler(contact: Contact)``: someone added the bot as a contact."""
        self._added_handlers.append(handler)
        return handler

    def on_event(self, handler: H) -> H:
        """``async def handler(event)``: every event of the client, unfiltered."""
        self._event_handlers.append(handler)
        return handler

    def on_ready(self, handler: H) -> H:
        """``async def handler(welcome: Welcome)``: after every sign-in, the first as well
        as each reconnect, before any message of that connection is handled — the place
        to join rooms (a join is a no-op for a member) or set the presence."""
        self._ready_handlers.append(handler)
        return handler

    def command(self, name: str, *, help: str | None = None) -> Callable[[H], H]:
        """``@bot.command("score")`` → ``async def handler(msg: Msg, args: list[str])``
        for messages starting ``!score`` (prefix: ``command_prefix``). A message that is
        a command goes to its command, not to ``on_message``; an unknown one is answered
        with the list of commands, and ``!help`` lists them (unless you define ``help``).
        ``help=`` (default: the handler's docstring's first line) describes it there."""

        def register(handler: H) -> H:
            self._commands.add(name, handler, help)
            return handler

        return register

    def every(self, seconds: float, *, first: float | None = None) -> Callable[[H], H]:
        """``@bot.every(60)`` → ``async def job()`` runs every ``seconds`` while the bot
        runs, the first time after ``first`` seconds (default: ``seconds``). Runs never
        overlap (the next waits for the previous one); one that raises is logged. Use
        ``bot.say(..., key=...)`` in a job to post once however often it runs again."""
        if seconds <= 0:
            raise ValueError("every() needs a period > 0 seconds")

        def register(job: H) -> H:
            self._jobs.append((seconds, first, job))
            return job

        return register

    # --- replies --------------------------------------------------------------------

    async def reply(self, msg: f.Msg, text: str, *, key: str | None = None,
                    quote: bool = False) -> f.Ack:
        """Answer in the room the message came from (its DM room for a direct message);
        ``quote=True`` sends it as a reply to ``msg`` (to the message a change entry
        changes), which clients show under the quoted line.

        The reply's id is derived from ``msg`` and ``key`` — without a key, from its
        place among the replies the handler of ``msg`` made so far — so a handler run
        again after a restart makes the same ids and its replies land once. Outside the
        handler of ``msg`` and without a key, the id is random.
        """
        return await self.client.say(text, room=msg.room, id=self._id_for(msg, "reply", key),
                                     reply=_about(msg) if quote else None)

    async def react(self, msg: f.Msg, emoji: str, *, key: str | None = None) -> f.Ack:
        """Put ``emoji`` on ``msg`` (on the message a change entry changes), with an id
        derived as :meth:`reply` derives one: a handler run again reacts once."""
        return await self.client.react(msg.room, _about(msg), emoji,
                                       id=self._id_for(msg, "react", key))

    async def target_of(self, msg: f.Msg) -> f.StoredMsg | None:
        """The message ``msg`` replies to or (a change entry) changes, as it is now;
        None if it has none, or the server no longer has it."""
        seq = msg.target if msg.is_change else msg.reply
        return None if seq is None else await self.client.get_message(msg.room, seq)

    async def say(
        self, text: str, room: str | None = None, to: str | None = None, *,
        key: str | None = None, id: str | None = None,
    ) -> f.Ack:
        """``client.say`` with a deterministic id: inside a message's handler it is derived
        from that message (and ``key``, or the send's place in the handler), elsewhere
        from ``key`` alone (``key="news-2026-12-04"``: posted once however often the job
        runs); random without either. ``id`` overrides all that."""
        if id is None:
            handling = CURRENT.get()
            if handling is not None:
                id = handling.next_id(f"say:{room or ''}:{to or ''}", key)
            elif key is not None:
                id = key_id(f"say:{room or ''}:{to or ''}", key)
        return await self.client.say(text, room=room, to=to, id=id)

    async def nudge_back(self, msg: f.Msg) -> f.Ack | None:
        """Nudge the sender back; None if the bot nudged them a moment ago (the server
        lets one nudge per few seconds through to the same user)."""
        try:
            return await self.client.nudge(msg.sender, id=self._id_for(msg, "nudge", None))
        except ClientError as exc:
            if exc.code != rules.ErrorCode.RATE_LIMITED:
                raise
            log.debug("not nudging %s back: %s", msg.sender, exc.msg)
            return None

    @staticmethod
    def _id_for(msg: f.Msg, what: str, key: str | None) -> str | None:
        if key is not None:
            return reply_id(msg, what, key)
        handling = CURRENT.get()
        if handling is not None and handling.msg is not None and \
                (handling.msg.room, handling.msg.seq) == (msg.room, msg.seq):
            return handling.next_id(what, None)
        return None

    def typing(self, msg: f.Msg) -> _Typing:
        """Show "is typing" in the message's room: ``await bot.typing(msg)`` once, or
        ``async with bot.typing(msg): ...`` to keep it shown while the block runs."""
        return _Typing(self.client, msg.room)

    # --- running --------------------------------------------------------------------

    async def start(self, *, wait: bool = False) -> None:
        """Connect (raises ClientError if refused) and start handling events. With
        ``wait=True`` a server that is not up yet is waited for (``run()`` does that)."""
        welcome = await self.client.connect(wait=wait)
        log.info("bot %s is online at %s", welcome.name, self.client.url)
        self._loop_task = asyncio.create_task(self._dispatch(), name=f"cfm-bot-{welcome.name}")
        for seconds, first, job in self._jobs:
            self._job_tasks.append(asyncio.create_task(
                self._run_job(seconds, seconds if first is None else first, job),
                name=f"cfm-bot-job-{getattr(job, '__name__', 'job')}"))

    async def stop(self) -> None:
        """Stop taking events, let the handlers still running finish (at most 5 s: they
        may still reply and move the read mark, so a restarted bot does not answer the
        same message again), then close the connection."""
        self._stopping = True
        current = asyncio.current_task()
        jobs = [task for task in self._job_tasks if task is not current]
        for task in jobs:
            task.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        loop_task = self._loop_task
        if loop_task is not None and loop_task is not current and not loop_task.done():
            # Waiting for an event, or for the slot of a handler that calls stop() itself:
            # nothing is lost by ending the wait. Otherwise it finishes the event at hand.
            if self._waiting or current in self._tasks:
                loop_task.cancel()
            _, late_loop = await asyncio.wait({loop_task}, timeout=5)
            for task in late_loop:
                task.cancel()
        # A handler may itself call stop(): it does not wait for itself.
        others = self._tasks - {current}
        if others:
            _, late = await asyncio.wait(others, timeout=5)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        # A handler that stops the bot has handled its message: mark it read now, while
        # the connection is up, or a restarted bot would get it (and stop) again.
        own = self._handling.get(current) if current is not None else None
        if own is not None:
            await self._done(own)
        await self.client.close()
        if loop_task is not None and loop_task is not current:
            await asyncio.wait({loop_task})
        self._stopped.set()

    async def wait_closed(self) -> None:
        """Until the bot stops (``stop()`` has finished, or a connection closed for good)."""
        if self._loop_task is not None:
            await self._stopped.wait()

    def run(self) -> None:
        """Run until SIGINT/SIGTERM (or a fatal refusal); blocking. Logs to stderr.

        A SIGTERM or SIGINT at any moment of it, from its first instruction to the
        process's exit, stops the bot cleanly: none ends the process by the signal (-15)
        or with a KeyboardInterrupt traceback. Once one came, the two are ignored until
        the process exits (the program is being stopped); a run that ended otherwise (a
        handler called ``stop()``, a refusal) gives the program its handlers back."""
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        signals = ProcessSignals(reload=False)  # (from here: a SIGTERM is kept for the loop)
        try:
            asyncio.run(self._main(signals))
        except ClientError as exc:
            log.error("bot %s could not start: %s", self.client.name, exc)
            raise SystemExit(1) from None
        finally:
            signals.release(ignore=signals.stop_requested)

    async def _main(self, signals: ProcessSignals) -> None:
        stop = asyncio.Event()
        signals.attach(asyncio.get_running_loop(), stop=stop.set)
        if stop.is_set():  # signalled before the loop ran: nothing to start
            log.info("bot %s stopped before it started", self.client.name)
            return
        # A bot started beside its server (or during a restart) waits for it to answer.
        starting = asyncio.create_task(self.start(wait=True))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # signalled before the server ever answered
            await self.client.close()
            await asyncio.gather(starting, return_exceptions=True)
            stopper.cancel()
            return
        starting.result()  # a refusal (bad_token, name_taken…) ends run() with its error
        ended = asyncio.create_task(self._stopped.wait())
        await asyncio.wait({stopper, ended}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        ended.cancel()
        if stop.is_set():
            log.info("bot %s is stopping", self.client.name)
            await self.stop()
        elif not self._stopping:  # the server refused us for good (bad_token, ...): say so
            await self.stop()
            raise SystemExit(1)
        # else a handler called stop(): a clean end

    # --- dispatch -------------------------------------------------------------------

    async def _dispatch(self) -> None:
        events = aiter(self.client)
        while not self._stopping:
            self._waiting = True
            try:
                event = await anext(events)
            except StopAsyncIteration:  # closed for good (or by stop(), which says so)
                if not self._stopping:
                    self._stopped.set()
                return
            finally:
                self._waiting = False
            if isinstance(event, StateChanged):
                self._log_state(event)
            for handler in self._event_handlers:
                await self._run(handler, event, None)
            if isinstance(event, f.Msg):
                self._progress.start(event.room, event.seq)
                if rules.normalize_name(event.sender) == rules.normalize_name(self.client.name):
                    await self._done(event)  # our own message (from this or another session)
                    continue
                await self._run_all(self._handlers_for(event), event, event)
            elif isinstance(event, Connected):
                # Inline: the connection's messages wait until the rooms are joined.
                for handler in self._ready_handlers:
                    await self._run(handler, event.welcome, None)
            else:
                kind = TYPED_EVENTS.get(type(event))
                if kind is not None:
                    await self._run_all(self._typed_handlers[kind], event, None)
                if isinstance(event, f.Contact) and event.op == rules.ContactOp.ADDED_YOU:
                    await self._run_all(self._added_handlers, event, None)

    def _handlers_for(self, msg: f.Msg) -> list[Any]:
        if msg.change is not None:  # a change entry is no message: never on_message
            return self._typed_handlers[CHANGE_EVENTS.get(msg.change, "edit")]
        if msg.kind == rules.MsgKind.NUDGE:
            return self._nudge_handlers
        found = self._commands.find(msg.text) if self._commands.handlers else None
        if found is None:
            return self._message_handlers
        command, handler = found
        return [lambda m: self._run_command(m, command, handler)]

    async def _run_command(self, msg: f.Msg, command: Command,
                           handler: CommandHandler | None) -> None:
        if handler is not None:
            await handler(msg, command.args)
        elif command.name == "help":
            await self.reply(msg, self._commands.help_text())
        else:
            await self.reply(msg, self._commands.unknown_text(command))

    async def _run_job(self, period: float, first: float,
                       job: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + first
        while not self._stopping:
            await asyncio.sleep(max(0.0, due - loop.time()))
            await self._run(job, None, None, call=lambda h, _: h())
            # The next run keeps the schedule (no drift), but never makes up missed ones.
            due = max(due + period, loop.time())

    @staticmethod
    def _log_state(event: StateChanged) -> None:
        if event.state is ConnectionState.RECONNECTING:
            log.info("reconnecting in %.1f s (%s)", event.retry_in or 0, event.reason)
        elif event.state is ConnectionState.CLOSED and event.reason:
            log.info("connection closed: %s", event.reason)

    async def _run_all(self, handlers: list[Any], arg: Any, msg: f.Msg | None) -> None:
        if not handlers:
            if msg is not None:
                await self._done(msg)
            return
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(handlers, arg, msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if msg is not None:
            self._handling[task] = msg
            task.add_done_callback(lambda t: self._handling.pop(t, None))
        # The next event's acquire() waits for a free slot: with one slot, handlers run
        # strictly in arrival order.

    async def _handle(self, handlers: list[Any], arg: Any, msg: f.Msg | None) -> None:
        handling = Handling(msg)
        CURRENT.set(handling)  # this task's own context: its sends are counted here
        try:
            for handler in handlers:
                await self._run(handler, arg, msg)
            if msg is not None and await sends_landed(handling):
                await self._done(msg)
        finally:
            self._slots.release()

    async def _run(self, handler: Any, arg: Any, msg: f.Msg | None,
                   call: Callable[[Any, Any], Awaitable[Any]] | None = None) -> None:
        try:
            await (call(handler, arg) if call is not None else handler(arg))
        except ClientError as exc:
            log.warning("handler %s: %s", getattr(handler, "__name__", handler), exc)
        except Exception:
            log.exception("handler %s failed", getattr(handler, "__name__", handler))

    async def _done(self, msg: f.Msg) -> None:
        """``msg`` is handled: move the read mark and the seen file as far as every message
        before it is handled too."""
        mark = self._progress.finish(msg.room, msg.seq)
        if mark is None:
            return
        self.client.mark_seen(msg.room, mark)
        if self._mark_read:
            with contextlib.suppress(ClientError):
                await self.client.mark_read(msg.room, mark)


def _about(msg: f.Msg) -> int:
    """The seq a reply or reaction to ``msg`` names: a change entry's target, as a
    change entry itself cannot be answered or reacted to."""
    return msg.target if msg.change is not None and msg.target is not None else msg.seq


class _Typing:
    """``await bot.typing(msg)`` (once) or ``async with bot.typing(msg):`` (renewed)."""

    def __init__(self, client: Client, room: str) -> None:
        self._client = client
        self._room = room
        self._task: asyncio.Task[None] | None = None

    def __await__(self) -> Any:
        return self._client.typing(room=self._room).__await__()

    async def _keep(self) -> None:
        while True:
            with contextlib.suppress(ClientError):
                await self._client.typing(room=self._room)
            await asyncio.sleep(TYPING_REFRESH)

    async def __aenter__(self) -> _Typing:
        self._task = asyncio.create_task(self._keep())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
