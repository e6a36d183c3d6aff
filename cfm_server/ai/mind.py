"""One persona's mind: what it answers to a message, whichever backend thinks for it.

With no backend (``offline``) the :class:`OfflineEngine` answers, for free. With a
model, the persona's prompt is the system prompt, followed by the room's last turns
(bounded) and the new message; the call goes through the shared :class:`Guards`.
Whatever stops an answer (kill switch, quota, breaker, a failing backend) is worded by
the engine in the persona's voice: the user always gets a reply.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from dataclasses import dataclass

from cfm_common import rules
from cfm_server.ai.backends import ChatBackend, Messages
from cfm_server.ai.engine import OfflineEngine
from cfm_server.ai.guards import Guards, Refused
from cfm_server.ai.locks import KeyedLocks
from cfm_server.ai.metrics import AIMetrics
from cfm_server.ai.personas import Persona

# Models that think out loud wrap it in <think> tags; nobody on MSN wants to read that.
_THINKING = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)
MAX_REPLY_CHARS = 1500


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    source: str  # "offline", the backend's name, or "refusal"
    refused: str | None = None  # the refusal reason, when there was one


def clean_reply(text: str, persona: Persona) -> str:
    """Model output made fit for a ``say``: no thinking, no control characters, not huge."""
    text = _THINKING.sub("", text).strip()
    # Small models like to start with their own name, as in a transcript.
    for prefix in (f"{persona.handle}:", f"{persona.display}:"):
        if text.lower().startswith(prefix.lower()):
            text = text[len(prefix):].lstrip()
    text = "".join(ch for ch in text if not rules.has_forbidden_text_chars(ch))
    if len(text) > MAX_REPLY_CHARS:
        text = text[: MAX_REPLY_CHARS - 1].rstrip() + "…"
    return text


class PersonaMind:
    def __init__(self, persona: Persona, *, guards: Guards, engine: OfflineEngine,
                 backend: ChatBackend | None = None, context_turns: int = 8,
                 max_rooms: int = 1024) -> None:
        self.persona = persona
        self.guards = guards
        self.engine = engine
        self.backend = backend
        self.context_turns = context_turns
        self._max_rooms = max_rooms
        self._contexts: OrderedDict[str, deque[dict[str, str]]] = OrderedDict()
        self._locks = KeyedLocks()

    @property
    def metrics(self) -> AIMetrics:
        return self.guards.metrics

    async def answer(self, *, room: str, user: str, text: str) -> Answer:
        """The persona's reply to ``user`` saying ``text`` in ``room``.

        Replies in one room are worked out one at a time, in order, so the model sees
        the conversation as it happened.
        """
        async with self._locks.hold(room):
            return await self._answer(room, user, text)

    async def _answer(self, room: str, user: str, text: str) -> Answer:
        key = self.persona.key
        conversation = _conversation_id(room, user)
        try:
            self.guards.check_kill_switch(key)
        except Refused as refused:
            return self._refusal(conversation, user, refused.reason)
        if self.backend is None:
            self.metrics.offline_replies.labels(persona=key).inc()
            return Answer(self.engine.reply(conversation, text, user=user), "offline")
        group = rules.is_group_room(room)
        said = f"{user}: {text}" if group else text
        messages = self._messages(room, user, said, group)
        backend = self.backend
        try:
            reply = await self.guards.call(key, rules.normalize_name(user), backend.name,
                                           lambda: backend.complete(messages))
        except Refused as refused:
            return self._refusal(conversation, user, refused.reason)
        reply = clean_reply(reply, self.persona)
        if not reply:
            return self._refusal(conversation, user, "backend_error")
        self._remember(room, said, reply)
        return Answer(reply, backend.name)

    def nudge_reaction(self, *, room: str, user: str) -> str:
        conversation = _conversation_id(room, user)
        if self.guards.kill_switch:
            return self.engine.refusal(conversation, "kill_switch", user=user)
        return self.engine.nudge_reaction(conversation, user=user)

    def refusal(self, *, room: str, user: str, reason: str) -> str:
        return self.engine.refusal(_conversation_id(room, user), reason, user=user)

    def context(self, room: str) -> list[dict[str, str]]:
        """The turns the model will see next time in ``room`` (oldest first)."""
        return list(self._contexts.get(room, ()))

    # --- internals ------------------------------------------------------------------

    def _refusal(self, conversation: str, user: str, reason: str) -> Answer:
        return Answer(self.engine.refusal(conversation, reason, user=user), "refusal", reason)

    def _messages(self, room: str, user: str, said: str, group: bool) -> Messages:
        where = (
            f"You are in the group chat {room}; lines start with the speaker's handle. "
            f"{user} just mentioned you: answer them."
            if group else f"You are in a private chat with {user}."
        )
        system = {"role": "system", "content": f"{self.persona.prompt}\n\n{where}"}
        return [system, *self.context(room), {"role": "user", "content": said}]

    def _remember(self, room: str, said: str, reply: str) -> None:
        if self.context_turns <= 0:
            return
        turns = self._contexts.get(room)
        if turns is None:
            turns = self._contexts[room] = deque(maxlen=2 * self.context_turns)
            while len(self._contexts) > self._max_rooms:
                self._contexts.popitem(last=False)
        else:
            self._contexts.move_to_end(room)
        turns.append({"role": "user", "content": said})
        turns.append({"role": "assistant", "content": reply})


def _conversation_id(room: str, user: str) -> str:
    # In a group room each speaker is their own conversation for the offline engine
    # (names and likes are per person); in a DM the room already is the person.
    return f"{room}|{rules.normalize_name(user)}"
