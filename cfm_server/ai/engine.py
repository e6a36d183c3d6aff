"""The offline engine: a persona that chats with no network and no model.

Each conversation keeps what the user told it (their name, what they like, the 2005
topics they brought up) and a random generator seeded from the persona and the
conversation, so the same exchange always gets the same answers (tests rely on it)
while different conversations vary. A message is matched against rules in order —
memory, the voice's special talents, small talk, questions about the persona, the era,
emoticons — and the first that fits picks a category of the persona's voice.
"""

from __future__ import annotations

import random
import re
import string
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cfm_server.ai import skills
from cfm_server.ai.personas import Persona
from cfm_server.ai.voices import VOICES, Voice, lines_for

Clock = Callable[[], float]

# --- what the user tells us --------------------------------------------------------------

_NAME_INTRO = re.compile(
    r"\b(?:my name is|my name's|my names|call me|i am called|i'm called|im called)"
    r"\s+([A-Za-z][A-Za-z'\-]{0,23})",
    re.I,
)
_NOT_NAMES = frozenset({"not", "a", "the", "so", "very", "just", "really", "me", "you", "u"})
_LIKE = re.compile(
    r"\bi\s+(?:really\s+)?(?:like|love|luv|adore|am into)\s+"
    r"([a-z0-9][a-z0-9 '\-]{1,30}?)\s*(?:[.!,?;]|\band\b|\bbut\b|$)",
    re.I,
)
_LOVE_YOU = re.compile(r"\b(?:i\s+)?(?:love|luv|<3)\s+(?:you|u|ya)\b|\bily\b", re.I)

# --- intents, in the order they are tried -------------------------------------------------

_INTENTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (category, re.compile(pattern, re.I))
    for category, pattern in (
        ("name_query", r"\b(?:what'?s|what is|whats|do (?:you|u) (?:know|remember)) my name\b"
                       r"|\bwho am i\b"),
        ("likes_query", r"\bwhat do i (?:like|love)\b"),
        ("time", r"\bwhat time\b|\btime is it\b|\bthe time\b|\bcurrent time\b"),
        ("date", r"\bwhat day\b|\bwhat(?:'s| is) the date\b|\btoday'?s date\b|\bwhat date\b"),
        ("are_you_bot", r"\b(?:are|r) (?:you|u) (?:a |an )?(?:bot|robot|real|human|ai|computer)"),
        ("how_are_you", r"\bhow (?:are|r) (?:you|u)\b|\bhru\b|\bhow'?s it going\b|\bwbu\b"
                        r"|\bhow (?:are|r) things\b|\bu ok\b"),
        ("about_me", r"\bwho (?:are|r) (?:you|u)\b|\bwhat (?:are|r) (?:you|u)\b"
                     r"|\babout (?:yourself|urself)\b|\b(?:your|ur) name\b"),
        ("age", r"\bhow old\b|\b(?:your|ur) age\b"),
        ("location", r"\bwhere (?:do|are|r) (?:you|u)\b|\basl\b|\bwhere.*(?:live|from)\b"),
        ("favorites", r"\bfavou?rite\b|\bfave\b|\bwhat do (?:you|u) like\b"),
        ("abilities", r"\bwhat can (?:you|u) do\b|\bhelp\b|\bcommands\b"),
        ("greeting", r"^\W*(?:hi+|hey+|hello|yo|sup|hiya|howdy|heya|wass+up|what'?s up|wazzup"
                     r"|good (?:morning|evening|afternoon))\b"),
        ("thanks", r"\b(?:thanks|thx|thank (?:you|u)|ty|tyvm)\b"),
        ("goodbye", r"\b(?:bye+|cya|ttyl|g2g|gtg|good ?night|gn|see (?:you|u|ya))\b"),
        ("joke", r"\bjoke\b|\bfunny\b|\bmake me laugh\b"),
        ("bored", r"\bbored\b|\bboring\b"),
        ("laugh", r"\b(?:lol+|haha\w*|rofl|lmao|hehe\w*)\b"),
    )
)

_ERA_TOPICS: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (topic, label, re.compile(pattern, re.I))
    for topic, label, pattern in (
        ("msn", "msn", r"\bmsn\b|\bmessenger\b|\bbuddy list\b|\bpersonal message\b"),
        ("winamp", "winamp", r"\bwinamp\b|\bllama\b|\bmp3s?\b"),
        ("nokia", "nokias", r"\bnokia\b|\b3310\b|\bsnake\b|\bringtones?\b|\bt9\b"),
        ("dialup", "dial-up", r"\bdial[- ]?up\b|\bmodem\b|\b56k\b|\baol\b"),
        ("myspace", "myspace", r"\bmyspace\b|\btop ?8\b|\bfriendster\b"),
        ("ipod", "ipods", r"\bipod\b|\bitunes\b|\bclick ?wheel\b"),
        ("p2p", "limewire", r"\blimewire\b|\bnapster\b|\bkazaa\b|\bp2p\b"),
        ("games", "games", r"\bhalo\b|\bxbox\b|\bps2\b|\bplaystation\b|\bgame ?boy\b"
                           r"|\bnintendo\b|\bzelda\b|\bsims\b|\brunescape\b|\btony hawk\b"),
        ("music", "music", r"\bgreen day\b|\blinkin park\b|\bblink\b|\bavril\b|\bmcr\b"
                           r"|\bmy chemical romance\b|\bband\b|\bsongs?\b|\bmusic\b"),
    )
)

TOPIC_LABELS = frozenset(label for _topic, label, _pattern in _ERA_TOPICS)
MAX_LIKES = 8  # what a conversation keeps of the user's likes and topics (the latest)

# MSN emoticon codes and their moods. Longer codes first so ":-)" is not read as ":-".
_EMOTICONS: tuple[tuple[str, str], ...] = (
    (":'(", "sad"), (":-(", "sad"), (":(", "sad"), ("(k)", "love"), ("(l)", "love"),
    ("<3", "love"), (";-)", "wink"), (";)", "wink"), (":-d", "happy"), (":d", "happy"),
    (":-)", "happy"), (":)", "happy"), ("^_^", "happy"), (":@", "angry"), (">:(", "angry"),
    ("(h)", "cool"), ("8-)", "cool"), (":-o", "surprised"), (":o", "surprised"),
    (":-p", "tongue"), (":p", "tongue"), ("(y)", "yes"), ("(n)", "no"),
)
_YES = re.compile(r"^\W*(?:yes|yeah|yep|ya|yup|ok|okay|sure|k|kk|cool|sweet)\W*$", re.I)
_NO = re.compile(r"^\W*(?:no|nope|nah|nay)\W*$", re.I)
_QUESTION = re.compile(r"\?\s*$|^\W*(?:what|why|how|who|when|where|which|do|does|can|is|are)\b",
                       re.I)
_HOWTO = re.compile(r"\bhow (?:do|can|should) i\s+([^?.!]{2,60})", re.I)
_LETTER = re.compile(r"^\s*dear\b|\bwrit\w* (?:a |an )?letter\b", re.I)
_POEM = re.compile(r"\bpoem\b|\bpoetry\b|\bwrite me\b", re.I)
_TRICK = re.compile(r"\btricks?\b|\bkickflip\b|\bskat\w*\b|\bsk8\w*\b|\bollie\b", re.I)


class _Blanks(dict[str, str]):
    """format_map helper: an unknown placeholder stays as written instead of raising."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


_FORMATTER = string.Formatter()


@dataclass(slots=True)
class Conversation:
    rng: random.Random
    name: str | None = None
    likes: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    turns: int = 0
    last_line: dict[str, str] = field(default_factory=dict)
    pet: skills.PetState = field(default_factory=skills.PetState)


class OfflineEngine:
    """Answers in a persona's voice, one :class:`Conversation` per (room, user).

    ``seed`` changes every conversation's dice at once; ``max_conversations`` bounds
    memory (the least recently used conversation is forgotten first). What it learned
    outlives the process through :class:`cfm_server.ai.memory.PersonaMemory`, which reads
    :meth:`conversations` and puts them back with :meth:`adopt`; ``changes`` tells it
    whether there is anything new to write.
    """

    def __init__(self, persona: Persona, *, clock: Clock = time.time, seed: str = "",
                 max_conversations: int = 4096) -> None:
        self.persona = persona
        self.voice: Voice = VOICES[persona.voice]  # Persona checks the name
        self._clock = clock
        self._seed = seed
        self._max = max_conversations
        self._conversations: OrderedDict[str, Conversation] = OrderedDict()
        self.changes = 0  # replies so far: each may have taught it something

    # --- public ---------------------------------------------------------------------

    def reply(self, conversation_id: str, text: str, *, user: str) -> str:
        conv = self.conversation(conversation_id)
        self.changes += 1
        conv.turns += 1
        conv.pet.tick()
        learned_name = self._remember(conv, text)
        category, extra = self._choose(conv, text, learned_name)
        return self.line(conv, category, user=user, **extra)

    def nudge_reaction(self, conversation_id: str, *, user: str) -> str:
        return self.line(self.conversation(conversation_id), "nudge", user=user)

    def refusal(self, conversation_id: str, reason: str, *, user: str) -> str:
        return self.line(self.conversation(conversation_id), f"refusal:{reason}", user=user)

    def conversation(self, conversation_id: str) -> Conversation:
        conv = self._conversations.get(conversation_id)
        if conv is None:
            conv = self.adopt(conversation_id, Conversation(rng=self.dice(conversation_id)))
        else:
            self._conversations.move_to_end(conversation_id)
        return conv

    def conversations(self) -> list[tuple[str, Conversation]]:
        """Every conversation held, least recently used first."""
        return list(self._conversations.items())

    def adopt(self, conversation_id: str, conv: Conversation) -> Conversation:
        """Hold ``conv`` as the most recently used conversation of that id."""
        self._conversations[conversation_id] = conv
        self._conversations.move_to_end(conversation_id)
        while len(self._conversations) > self._max:
            self._conversations.popitem(last=False)
        return conv

    def forget(self, drop: Callable[[str], bool]) -> int:
        """Drop the conversations whose id ``drop`` picks (a user the operator removed);
        how many. Counted as a change, so the memory is saved without them."""
        gone = [cid for cid in self._conversations if drop(cid)]
        for cid in gone:
            del self._conversations[cid]
        if gone:
            self.changes += 1
        return len(gone)

    def dice(self, conversation_id: str, turns: int = 0) -> random.Random:
        """The conversation's random generator, as it starts after ``turns`` replies.

        A conversation taken back from disk does not replay its first lines: its dice
        are seeded with the turns it had already had.
        """
        suffix = f"|{turns}" if turns else ""
        return random.Random(f"{self._seed}|{self.persona.key}|{conversation_id}{suffix}")

    def line(self, conv: Conversation, category: str, *, user: str, **extra: str) -> str:
        """A line of ``category`` in this voice, not the same as last time if it can help."""
        options = lines_for(self.voice, category) or lines_for(self.voice, "fallback")
        last = conv.last_line.get(category)
        fresh = [o for o in options if o != last] or list(options)
        chosen = conv.rng.choice(fresh)
        conv.last_line[category] = chosen
        return _FORMATTER.vformat(chosen, (), self._blanks(conv, user, extra))

    # --- memory ---------------------------------------------------------------------

    def _remember(self, conv: Conversation, text: str) -> bool:
        """Take in what the user told about themselves; True if they just gave a name."""
        learned_name = False
        match = _NAME_INTRO.search(text)
        if match and match.group(1).lower() not in _NOT_NAMES:
            conv.name = match.group(1)[:24].capitalize()
            learned_name = True
        if not _LOVE_YOU.search(text):
            for like in _LIKE.findall(text):
                like = like.strip().lower()
                if like and like not in conv.likes:
                    conv.likes.append(like)
                    del conv.likes[:-MAX_LIKES]
        for _topic, label, pattern in _ERA_TOPICS:
            if pattern.search(text) and label not in conv.topics:
                conv.topics.append(label)
                del conv.topics[:-MAX_LIKES]
        return learned_name

    # --- choosing what to say -------------------------------------------------------

    def _choose(self, conv: Conversation, text: str,
                learned_name: bool) -> tuple[str, dict[str, str]]:
        if learned_name:
            return "name_learned", {}
        skill = self._skill(conv, text)
        if skill is not None:
            return skill
        if _LOVE_YOU.search(text):
            return "love", {}
        like = _LIKE.search(text)
        for category, pattern in _INTENTS:
            if pattern.search(text):
                return self._resolve(conv, category), {}
        if like:
            return "like_ack", {"like": like.group(1).strip().lower()}
        for topic, _label, pattern in _ERA_TOPICS:
            if pattern.search(text):
                return f"era:{topic}", {}
        mood = _emoticon_mood(text)
        if mood:
            return f"emoticon:{mood}", {}
        if _YES.match(text):
            return "yes", {}
        if _NO.match(text):
            return "no", {}
        if _QUESTION.search(text):
            return "question", {}
        if (conv.topics or conv.likes) and conv.turns > 2 and conv.rng.random() < 0.3:
            topic = conv.rng.choice(conv.topics + conv.likes)
            return "topic_callback", {"topic": topic}
        return "fallback", {}

    @staticmethod
    def _resolve(conv: Conversation, category: str) -> str:
        if category == "name_query":
            return "name_recall" if conv.name else "name_unknown"
        if category == "likes_query":
            return "likes_recall" if conv.likes else "likes_unknown"
        return category

    def _skill(self, conv: Conversation, text: str) -> tuple[str, dict[str, str]] | None:
        """The voice's own talents come before small talk."""
        voice = self.persona.voice
        if voice == "smartybot":
            expression = skills.find_arithmetic(text)
            if expression is not None:
                try:
                    return "math", {"answer": skills.evaluate_arithmetic(expression)}
                except skills.MathError:
                    return "math_error", {}
        elif voice == "pet":
            return _pet_action(conv, text)
        elif voice == "emo" and _POEM.search(text):
            intro = self.line(conv, "poem_intro", user="")
            return "poem", {"poem": f"{intro}\n{skills.tiny_poem(text, conv.rng)}"}
        elif voice == "clippo":
            if _LETTER.search(text):
                return "letter", {}
            howto = _HOWTO.search(text)
            if howto:
                return "howto", {"task": howto.group(1).strip()}
        elif voice == "skater" and _TRICK.search(text):
            return "trick", {"trick": conv.rng.choice(skills.TRICKS)}
        return None

    def _blanks(self, conv: Conversation, user: str, extra: dict[str, str]) -> _Blanks:
        now = datetime.fromtimestamp(self._clock(), UTC)
        pet = conv.pet
        blanks = _Blanks(
            name=conv.name or user,
            user=user,
            me=self.persona.display,
            time=now.strftime("%H:%M"),
            date=now.strftime("%B %d, %Y"),
            day=now.strftime("%A"),
            topic=conv.topics[-1] if conv.topics else "the good old days",
            like=conv.likes[-1] if conv.likes else "stuff",
            mood=pet.mood,
            age=str(pet.age_days),
            hunger=pet.hearts(pet.hunger),
            happy=pet.hearts(pet.happy),
        )
        blanks.update(extra)
        return blanks


def _pet_action(conv: Conversation, text: str) -> tuple[str, dict[str, str]] | None:
    pet = conv.pet
    if skills.PET_ACTIONS["feed"].search(text):
        return ("fed", {}) if pet.feed() else ("full", {})
    if skills.PET_ACTIONS["play"].search(text):
        pet.play()
        return "played", {}
    if skills.PET_ACTIONS["clean"].search(text):
        return "cleaned", {}
    if skills.PET_ACTIONS["sleep"].search(text):
        return "slept", {}
    if pet.hunger == 0 and conv.rng.random() < 0.35:
        return "hungry", {}
    return None


def _emoticon_mood(text: str) -> str | None:
    lowered = text.lower()
    for code, mood in _EMOTICONS:
        if code in lowered:
            return mood
    return None
