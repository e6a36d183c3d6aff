"""What a persona's offline engine learned about people, kept across restarts.

One small JSON file per persona next to its token (``<data dir>/ai/<handle>.memory.json``),
written atomically and readable by the owner only. It holds, per conversation (a DM, or
one person in a group room), what the engine learned: the name the user gave, what they
like, the 2005 topics they brought up, how many turns it has had, and Tamago's hearts.
It is bounded: at most ``max_people`` conversations (the most recently used), and each
entry is small by construction (a name of 24 letters, 8 likes, 8 topics, a few numbers).

Writes are coalesced: a reply marks the memory changed and the contact saves it a
moment later (:data:`SAVE_DELAY`), and always when it stops. A crash loses at most that
moment. A file that cannot be read is logged and replaced at the next save; a value that
is not what the engine itself would have written is dropped.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cfm_common.tokens import write_private
from cfm_server.ai import skills
from cfm_server.ai.engine import MAX_LIKES, TOPIC_LABELS, Conversation, OfflineEngine

logger = logging.getLogger(__name__)

VERSION = 1
MAX_PEOPLE = 2048  # conversations kept per persona, the most recently used
SAVE_DELAY = 2.0  # seconds between a change and its write, to write once for a burst
_MAX_ID = 300  # a conversation id is a room name, "|" and a handle
_MAX_LIKE = 40
_MAX_TURNS = 10**9
_NAME = re.compile(r"[A-Z][A-Za-z'\-]{0,23}")


def memory_file(directory: Path, persona_key: str) -> Path:
    return directory / f"{persona_key}.memory.json"


class PersonaMemory:
    """Loads an engine's conversations from ``path`` and saves them back."""

    def __init__(self, path: Path, engine: OfflineEngine, *,
                 max_people: int = MAX_PEOPLE) -> None:
        self.path = path
        self.engine = engine
        self.max_people = max_people
        self._saved = 0  # nothing of this engine is on disk yet
        self._snapshot_at = 0

    @property
    def changed(self) -> bool:
        """Whether the engine replied since the last load or save."""
        return self.engine.changes != self._saved

    def load(self) -> int:
        """Put what the file remembers into the engine; the number of conversations."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0
        except OSError as exc:
            logger.warning("%s: ignoring the unreadable memory file: %s", self.path, exc)
            return 0
        return self.load_text(text)

    def load_text(self, text: str) -> int:
        """Put what a memory file's text remembers into the engine (a cluster keeps the
        text in Redis: cluster/ai.py); the number of conversations."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            logger.warning("%s: ignoring the unreadable memory file: %s", self.path, exc)
            return 0
        people = data.get("conversations") if isinstance(data, dict) else None
        if not isinstance(people, dict):
            logger.warning("%s: not a memory file; ignoring it", self.path)
            return 0
        count = 0
        # Oldest first in the file: adopting in order keeps the engine's LRU order.
        for conversation_id, entry in list(people.items())[-self.max_people:]:
            conv = self._conversation(conversation_id, entry)
            if conv is not None:
                self.engine.adopt(conversation_id, conv)
                count += 1
        self._saved = self.engine.changes
        return count

    def save(self) -> None:
        """Write the most recently used conversations that had a turn, atomically (0600)."""
        self.write(self.snapshot())

    def snapshot(self) -> str:
        """The file's text as of now (cheap: run it where the engine lives, the loop)."""
        held = [(cid, conv) for cid, conv in self.engine.conversations() if conv.turns]
        people = {cid: _entry(conv) for cid, conv in held[-self.max_people:]}
        document = {"version": VERSION, "persona": self.engine.persona.key,
                    "conversations": people}
        self._snapshot_at = self.engine.changes
        return json.dumps(document, ensure_ascii=False) + "\n"

    def write(self, text: str) -> None:
        """Write a :meth:`snapshot` (the slow part, with its fsync: fine on a thread)."""
        write_private(self.path, text)
        self._saved = self._snapshot_at

    def _conversation(self, conversation_id: Any, entry: Any) -> Conversation | None:
        if not isinstance(conversation_id, str) or not 0 < len(conversation_id) <= _MAX_ID:
            return None
        if not isinstance(entry, dict):
            return None
        turns = _count(entry.get("turns"), _MAX_TURNS)
        if not turns:
            return None
        name = entry.get("name")
        pet = entry.get("pet")
        hunger, happy, pet_turns = pet if isinstance(pet, list) and len(pet) == 3 else (3, 3, 0)
        return Conversation(
            rng=self.engine.dice(conversation_id, turns),
            name=name if isinstance(name, str) and _NAME.fullmatch(name) else None,
            likes=_strings(entry.get("likes"), lambda x: 0 < len(x) <= _MAX_LIKE),
            topics=_strings(entry.get("topics"), TOPIC_LABELS.__contains__),
            turns=turns,
            pet=skills.PetState(hunger=_count(hunger, skills.HEARTS, 3),
                                happy=_count(happy, skills.HEARTS, 3),
                                turns=_count(pet_turns, _MAX_TURNS)),
        )


def _entry(conv: Conversation) -> dict[str, Any]:
    return {
        "name": conv.name,
        "likes": conv.likes[-MAX_LIKES:],
        "topics": conv.topics[-MAX_LIKES:],
        "turns": conv.turns,
        "pet": [conv.pet.hunger, conv.pet.happy, conv.pet.turns],
    }


def _strings(value: Any, keep: Callable[[str], bool]) -> list[str]:
    """The last MAX_LIKES strings of a list that ``keep`` accepts."""
    if not isinstance(value, list):
        return []
    return [x for x in value if isinstance(x, str) and keep(x)][-MAX_LIKES:]


def _count(value: Any, top: int, default: int = 0) -> int:
    """``value`` if it is a whole number in 0..top, else ``default``."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top:
        return value
    return default


def about(conversation_id: str, name: str) -> bool:
    """Whether the conversation ``conversation_id`` (``<room>|<user>``) is with ``name``:
    the user, or a DM room of theirs."""
    from cfm_common import rules

    room, _, who = conversation_id.rpartition("|")
    return who == name or name in (rules.dm_members(room) or ())


def forget_user(directory: Path, name: str) -> int:
    """Drop what every persona in ``directory`` remembers of handle ``name`` (a user
    removed by the operator: the next holder of the handle is somebody else). Returns
    how many conversations were forgotten. A running server's AI contacts forget what
    they hold too (``PersonaContact.forget_user``), or they would write it back."""
    forgotten = 0
    for path in sorted(directory.glob("*.memory.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        people = data.get("conversations") if isinstance(data, dict) else None
        if not isinstance(people, dict):
            continue
        kept = {}
        for cid, entry in people.items():
            if about(str(cid), name):
                forgotten += 1
            else:
                kept[cid] = entry
        if len(kept) != len(people):
            data["conversations"] = kept
            write_private(path, json.dumps(data, ensure_ascii=False) + "\n")
    return forgotten
