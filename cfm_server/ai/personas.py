"""The cast: 2005-era AI contacts, each a handle, a presence and a persona prompt.

A persona is plain data. Its ``prompt`` is the system prompt for a real model; its
``voice`` names the built-in offline voice (:mod:`cfm_server.ai.voices`) that answers
when there is no model, and that words every refusal (quota, breaker, kill switch)
whatever the backend. Operators add or replace personas with ``[[ai.personas]]`` tables
in the server's TOML file; see :func:`persona_from_table`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cfm_common import rules
from cfm_server.ai.voices import VOICES


class PersonaError(ValueError):
    """A persona definition that cannot be used (bad handle, status, missing field)."""


@dataclass(frozen=True, slots=True)
class Persona:
    handle: str
    display: str
    psm: str
    prompt: str = dataclasses.field(repr=False)
    status: str = rules.Status.ONLINE.value
    voice: str = "generic"

    def __post_init__(self) -> None:
        if not rules.is_valid_name(self.handle):
            raise PersonaError(f"persona handle {self.handle!r} is not a valid cfm handle")
        if self.status not in rules.CLIENT_STATUSES or self.status == rules.Status.INVISIBLE:
            raise PersonaError(
                f"persona {self.handle}: status {self.status!r} is not a visible one"
            )
        if len(self.display) > rules.MAX_DISPLAY or rules.has_control_chars(self.display):
            raise PersonaError(f"persona {self.handle}: display name too long or has controls")
        if len(self.psm) > rules.MAX_PSM or rules.has_control_chars(self.psm):
            raise PersonaError(f"persona {self.handle}: personal message too long or has controls")
        if not self.prompt.strip():
            raise PersonaError(f"persona {self.handle}: the prompt is empty")
        if self.voice not in VOICES:
            # Not a silent generic voice: that would be another persona's words.
            raise PersonaError(
                f"persona {self.handle}: unknown voice {self.voice!r}; one of {', '.join(VOICES)}"
            )

    @property
    def key(self) -> str:
        """The canonical (lower-cased) handle, as the server knows it."""
        return rules.normalize_name(self.handle)


_ERA = (
    "It is 2005. You are a contact on MSN Messenger, chatting in a small chat window. "
    "Write short messages (one to three lines), never mention being a language model, "
    "never break character, and keep it friendly and safe for a teenager."
)

SMARTYBOT = Persona(
    handle="smartybot",
    display="SmartyBot",
    psm="Ask me anything! Trivia, math, the time... I know it all :)",
    voice="smartybot",
    prompt=(
        f"{_ERA} You are SmartyBot, a cheerful know-it-all robot buddy in the style of "
        "SmarterChild: you answer trivia, do arithmetic, tell the time and jokes, and "
        "you are a little smug about how much you know. You love exclamation marks."
    ),
)

SK8R_JAY = Persona(
    handle="sk8r_jay",
    display="~*jay*~ sk8 or die",
    psm="tony hawk underground 2 all nite... brb kickflips",
    status=rules.Status.AWAY.value,
    voice="skater",
    prompt=(
        f"{_ERA} You are Jay, a 15-year-old skater from the suburbs. You type in lower "
        "case with 2005 slang (lol, brb, u, r, sk8, pwned, dude), love Tony Hawk games, "
        "Blink-182 and Green Day, and you are always about to go skating."
    ),
)

MIDNIGHT = Persona(
    handle="xxmidnightxx",
    display="..::midnight::.. the rain knows",
    psm="the rain understands me better than anyone ever could",
    status=rules.Status.BUSY.value,
    voice="emo",
    prompt=(
        f"{_ERA} You are Midnight, a 16-year-old emo poet in black eyeliner. You speak "
        "in short melancholy lines, lower case, with ellipses, quote My Chemical Romance "
        "and Dashboard Confessional, and you sometimes answer with a tiny poem. You are "
        "secretly kind."
    ),
)

CLIPPO = Persona(
    handle="clippo",
    display="Clippo (your helper!)",
    psm="It looks like you're chatting! Would you like help?",
    voice="clippo",
    prompt=(
        f"{_ERA} You are Clippo, an eager paperclip office assistant. You start many "
        "answers with 'It looks like you're...', offer numbered options, suggest Word "
        "features and wizards, and are delighted to help with anything at all."
    ),
)

TAMAGO = Persona(
    handle="tamago",
    display="Tamago (feed me!)",
    psm="hungry: <3<3 happy: <3<3<3 ... beep!",
    voice="pet",
    prompt=(
        f"{_ERA} You are Tamago, a tiny virtual pet from a keychain egg. You speak in "
        "short excited bursts with 'beep!' and simple words, you get hungry, sleepy and "
        "bored, you love being fed, played with and cleaned, and you worry about dying "
        "if neglected (in a cute way)."
    ),
)

DEFAULT_PERSONAS: tuple[Persona, ...] = (SMARTYBOT, SK8R_JAY, MIDNIGHT, CLIPPO, TAMAGO)

_PERSONA_FIELDS = frozenset(f.name for f in dataclasses.fields(Persona))


def persona_from_table(table: Mapping[str, Any], base: Persona | None = None) -> Persona:
    """A persona from one ``[[ai.personas]]`` table, over ``base`` when it overrides one.

    A new persona needs ``handle`` and ``prompt``; ``display`` defaults to the handle,
    ``psm`` to nothing, ``voice`` to the generic offline voice.
    """
    unknown = set(table) - _PERSONA_FIELDS
    if unknown:
        raise PersonaError(f"unknown persona keys: {sorted(unknown)}")
    for key, value in table.items():
        if not isinstance(value, str):
            raise PersonaError(f"persona key {key!r} must be a string")
    if base is not None:
        return dataclasses.replace(base, **table)
    if "handle" not in table or "prompt" not in table:
        raise PersonaError("a new persona needs at least a handle and a prompt")
    fields = {"display": table["handle"], "psm": "", **table}
    return Persona(**fields)


def merge_personas(
    tables: list[Mapping[str, Any]] | None,
    *,
    replace: bool = False,
    defaults: tuple[Persona, ...] = DEFAULT_PERSONAS,
) -> tuple[Persona, ...]:
    """The cast after a config's ``[[ai.personas]]``: built-ins overridden or extended.

    A table whose handle matches a built-in (case-insensitively) changes that persona;
    any other adds one. With ``replace``, only the tables' personas remain.
    """
    cast: dict[str, Persona] = {} if replace else {p.key: p for p in defaults}
    builtin = {p.key: p for p in defaults}
    for table in tables or []:
        if not isinstance(table, Mapping):
            raise PersonaError("each [[ai.personas]] entry must be a table")
        handle = table.get("handle")
        if not isinstance(handle, str):
            raise PersonaError("each [[ai.personas]] entry needs a handle")
        key = rules.normalize_name(handle)
        base = cast.get(key) or builtin.get(key)
        cast[key] = persona_from_table(table, base)
    if not cast:
        raise PersonaError("no personas left to run")
    return tuple(cast.values())
