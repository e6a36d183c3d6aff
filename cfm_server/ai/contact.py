"""A persona on the wire: a :class:`~cfm_common.bot.Bot` that chats in character.

It answers every direct message and every ``@handle`` mention in the group rooms it
joined (``#lobby`` by default), shows "is typing" while it thinks, and reacts to a
nudge (nudging back now and then, well inside the server's nudge limit).

What the persona learned about people (see :mod:`cfm_server.ai.memory`) is loaded
before it signs in and saved shortly after each change and when it stops.

Loops between bots are cut twice: messages from users known to be bots (the server
says so in presence and roster entries; the other personas are known from the start)
are ignored, and a room that gets more than ``replies_per_minute`` answers in a minute
gets one "slow down" and then silence until the minute has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from ssl import SSLContext
from typing import Any

from cfm_common import __version__, rules
from cfm_common import frames as f
from cfm_common.bot import Bot
from cfm_common.client import ClientError, Connected
from cfm_server.ai.locks import KeyedLocks
from cfm_server.ai.memory import SAVE_DELAY, PersonaMemory, about
from cfm_server.ai.mind import PersonaMind

logger = logging.getLogger(__name__)

TYPING_EVERY = 3.0  # seconds between two "is typing" while an answer takes long
TYPING_BURST = 5  # "is typing" frames per TYPING_EVERY seconds, all rooms together
NUDGE_BACK_EVERY = 60.0  # at most one nudge back per user per this many seconds
MAX_RETRY_WAIT = 5.0  # longest wait on the server's retry_ms before a second try


class PersonaContact:
    def __init__(self, mind: PersonaMind, url: str, *, token_file: Path | bool | None = None,
                 seen_file: Path | None = None, memory_file: Path | None = None,
                 rooms: Iterable[str] = (rules.LOBBY,),
                 nudge_back: bool = True, known_bots: Iterable[str] = (),
                 replies_per_minute: int = 20, concurrency: int = 8,
                 clock: Callable[[], float] = time.monotonic,
                 ssl: SSLContext | None = None) -> None:
        self.mind = mind
        persona = mind.persona
        self.persona = persona
        self.rooms = tuple(rooms)
        self.nudge_back = nudge_back
        self.replies_per_minute = replies_per_minute
        self._clock = clock
        self._bots = {rules.normalize_name(b) for b in known_bots} - {persona.key}
        # "@tamago," and "hi @tamago." mention tamago; "@tamagotchi" and "@tamago.fan" do not.
        self._mention = re.compile(
            rf"(?<![\w.\-])@{re.escape(persona.handle)}(?![\w\-]|\.\w)", re.I
        )
        self._checked_rooms: set[str] = set()  # DM rooms whose members' bot flags we know
        self._rooms = KeyedLocks()
        self._replies: dict[str, deque[float]] = {}
        self._slowed: set[str] = set()
        self._nudged_back: dict[str, float] = {}
        self._typing_sent: deque[float] = deque()
        self.memory = PersonaMemory(memory_file, mind.engine) if memory_file else None
        self._save_later: asyncio.TimerHandle | None = None
        self._saving: asyncio.Task[None] | None = None  # the memory write under way
        self.bot = Bot(
            url, persona.handle, display=persona.display, psm=persona.psm,
            status=persona.status, token_file=token_file, seen_file=seen_file,
            concurrency=concurrency, client_name=f"cfm-ai/{__version__}", ssl=ssl,
        )
        self.bot.on_event(self._on_event)
        self.bot.on_message(self._on_message)
        self.bot.on_nudge(self._on_nudge)

    @property
    def handle(self) -> str:
        return self.persona.key

    async def start(self) -> None:
        """Sign in (raises ClientError if refused) and join the configured rooms."""
        if self.memory is not None:
            # Before signing in: the first message after a restart already finds it.
            count = self.memory.load()
            if count:
                logger.info("%s remembers %d conversations", self.handle, count)
        await self.bot.start()
        for room in self.rooms:
            try:
                await self.bot.client.join(room)
            except ClientError as exc:
                logger.warning("%s could not join %s: %s", self.handle, room, exc)

    async def stop(self) -> None:
        await self.bot.stop()
        if self._save_later is not None:
            self._save_later.cancel()
        if self._saving is not None:
            await asyncio.gather(self._saving, return_exceptions=True)
        await self.save_memory()

    async def save_memory(self) -> None:
        """Write what the persona learned, if anything changed (errors are logged). The
        write and its fsync run on a thread: this is the server's own event loop."""
        self._save_later = None
        if self.memory is None or not self.memory.changed:
            return
        text = self.memory.snapshot()
        try:
            await asyncio.to_thread(self.memory.write, text)
        except OSError as exc:
            logger.error("%s could not save its memory to %s: %s", self.handle,
                         self.memory.path, exc)

    def _save_soon(self) -> None:
        self._save_later = None
        if self._saving is not None and not self._saving.done():
            self._memory_changed()  # one write at a time: try again after this one
            return
        self._saving = asyncio.get_running_loop().create_task(self.save_memory())

    def _memory_changed(self) -> None:
        if self.memory is not None and self._save_later is None and self.memory.changed:
            self._save_later = asyncio.get_running_loop().call_later(
                SAVE_DELAY, self._save_soon)

    def forget_user(self, name: str) -> int:
        """Drop what the persona remembers of ``name`` (a user the operator removed while
        the server runs); saved a moment later. How many conversations."""
        forgotten = self.mind.engine.forget(lambda cid: about(cid, name))
        if forgotten:
            self._memory_changed()
        return forgotten

    def is_bot(self, name: str) -> bool:
        return rules.normalize_name(name) in self._bots

    # --- handlers -------------------------------------------------------------------

    async def _on_event(self, event: Any) -> None:
        """Learn who is a bot from everything the server says about users."""
        entries: Iterable[Any] = ()
        if isinstance(event, Connected):
            entries = event.welcome.contacts
        elif isinstance(event, f.Joined):
            entries = event.members
        elif isinstance(event, f.Presence | f.Contact):
            entries = (event,)
        for entry in entries:
            if entry.bot is None:
                continue
            name = rules.normalize_name(entry.name)
            if entry.bot and name != self.handle:
                self._bots.add(name)
            elif not entry.bot:
                self._bots.discard(name)

    async def _on_message(self, msg: f.Msg) -> None:
        if msg.kind != rules.MsgKind.TEXT:
            return
        # One message of a room at a time, in order: answers come in the order asked.
        async with self._rooms.hold(msg.room):
            if await self._from_bot(msg):
                return
            text = msg.text
            group = rules.is_group_room(msg.room)
            if group:
                if not self._mention.search(text):
                    return
                text = self._mention.sub("", text).strip(" ,:") or "hi"
            if not await self._may_reply(msg.room):
                return
            async with self._typing(msg.room):
                answer = await self.mind.answer(room=msg.room, user=msg.sender, text=text)
            self._memory_changed()
            await self._say(msg.room, f"@{msg.sender} {answer.text}" if group else answer.text)

    async def _on_nudge(self, msg: f.Msg) -> None:
        async with self._rooms.hold(msg.room):
            if await self._from_bot(msg):
                return
            self.mind.metrics.nudges.labels(persona=self.handle).inc()
            if not await self._may_reply(msg.room):
                return
            await self._say(msg.room, self.mind.nudge_reaction(room=msg.room, user=msg.sender))
        if self.nudge_back and not self.mind.guards.kill_switch:
            await self._maybe_nudge_back(msg.sender)

    async def _from_bot(self, msg: f.Msg) -> bool:
        """Whether the sender is a bot; asks the server once per new DM room.

        A stranger's DM comes with no roster entry, but joining the DM room (a no-op
        for a member) answers with both members' entries, ``bot`` flag included.
        """
        if self.is_bot(msg.sender):
            return True
        if rules.is_group_room(msg.room) or msg.room in self._checked_rooms:
            return False
        self._checked_rooms.add(msg.room)
        try:
            joined = await self.bot.client.join(msg.room)
        except ClientError as exc:
            logger.info("%s: could not look up the members of %s: %s", self.handle,
                        msg.room, exc)
            return False
        await self._on_event(joined)
        return self.is_bot(msg.sender)

    # --- manners --------------------------------------------------------------------

    async def _may_reply(self, room: str) -> bool:
        """At most ``replies_per_minute`` in a room (0: no cap); the first one over says so."""
        if not self.replies_per_minute:
            return True
        now = self._clock()
        if len(self._replies) > 1024:  # rooms come and go: forget the quiet ones
            for quiet in [r for r, t in self._replies.items() if not t or now - t[-1] >= 60]:
                del self._replies[quiet]
                self._slowed.discard(quiet)
        recent = self._replies.setdefault(room, deque())
        while recent and now - recent[0] >= 60.0:
            recent.popleft()
        if not recent:
            self._slowed.discard(room)
        if len(recent) < self.replies_per_minute:
            recent.append(now)
            return True
        if room not in self._slowed:
            self._slowed.add(room)
            logger.info("%s: too many replies in %s; pausing there", self.handle, room)
            await self._say(room, self.mind.refusal(room=room, user="", reason="slow_down"))
        return False

    async def _maybe_nudge_back(self, user: str) -> None:
        key = rules.normalize_name(user)
        now = self._clock()
        limits = self.bot.client.welcome.limits if self.bot.client.welcome else {}
        interval = max(NUDGE_BACK_EVERY, limits.get("nudge_interval_ms", 0) / 1000)
        last = self._nudged_back.get(key)
        if last is not None and now - last < interval:
            return
        self._nudged_back[key] = now
        try:
            await self.bot.client.nudge(user)
        except ClientError as exc:
            logger.info("%s could not nudge %s back: %s", self.handle, user, exc)

    async def _say(self, room: str, text: str) -> None:
        """Say it; on ``rate_limited`` wait as told (briefly) and try once more."""
        try:
            await self.bot.client.say(text, room=room)
        except ClientError as exc:
            if exc.code != rules.ErrorCode.RATE_LIMITED:
                raise
            await asyncio.sleep(min(MAX_RETRY_WAIT, (exc.retry_ms or 1000) / 1000))
            await self.bot.client.say(text, room=room)

    @contextlib.asynccontextmanager
    async def _typing(self, room: str) -> AsyncIterator[None]:
        """Show "is typing" now and every few seconds until the answer is ready."""
        await self._send_typing(room)
        task = asyncio.create_task(self._keep_typing(room))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep_typing(self, room: str) -> None:
        while True:
            await asyncio.sleep(TYPING_EVERY)
            await self._send_typing(room)

    async def _send_typing(self, room: str) -> None:
        # At most TYPING_BURST "typing" frames per TYPING_EVERY seconds across all rooms:
        # inside the server's typing bucket (2/s, burst 6 by default), whose breaches
        # would count against the bot's session. A skipped one is sent on the next round.
        now = self._clock()
        sent = self._typing_sent
        while sent and now - sent[0] >= TYPING_EVERY:
            sent.popleft()
        if len(sent) < TYPING_BURST:
            sent.append(now)
            with contextlib.suppress(ClientError):
                await self.bot.client.typing(room=room)
