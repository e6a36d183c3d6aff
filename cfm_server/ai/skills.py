"""Small talents of particular voices: arithmetic, a virtual pet's needs, tiny poems.

Pure functions and plain state; the offline engine decides when to use them.
"""

from __future__ import annotations

import ast
import math
import operator
import random
import re
from dataclasses import dataclass

# --- arithmetic (SmartyBot) ------------------------------------------------------------

_MATH_PREFIX = re.compile(
    r"^\s*(?:what\s*is|what's|whats|calculate|compute|how\s+much\s+is|solve)\s*", re.I
)
_MATH_BODY = re.compile(r"^[\d\s.+\-*/x×÷^%()]+$")
_MATH_OPERATOR = re.compile(r"\d\s*(?:\*\*|[+\-*/x×÷^%])\s*[\d(]")
_BIN_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_MAX_MAGNITUDE = 1e15


class MathError(ValueError):
    pass


def find_arithmetic(text: str) -> str | None:
    """The arithmetic expression a message asks about ("what is 12 x 7?"), or None."""
    body = _MATH_PREFIX.sub("", text).strip().rstrip("?=! ").strip()
    if not body or len(body) > 80 or not _MATH_BODY.match(body):
        return None
    if not _MATH_OPERATOR.search(body):
        return None
    return body


def evaluate_arithmetic(expression: str) -> str:
    """Evaluate + - * / % ^ on numbers, refusing anything else or anything huge."""
    source = expression.replace("×", "*").replace("÷", "/").replace("x", "*").replace("^", "**")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise MathError("not arithmetic") from exc
    value = _evaluate(tree.body)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
            raise MathError("too big")
        try:
            value = _BIN_OPS[type(node.op)](left, right)
        except (ZeroDivisionError, OverflowError) as exc:
            raise MathError(str(exc)) from exc
        if isinstance(value, complex) or not math.isfinite(value) or abs(value) > _MAX_MAGNITUDE:
            raise MathError("too big")
        return value
    raise MathError("not arithmetic")


# --- a virtual pet (Tamago) ------------------------------------------------------------

HEARTS = 4


@dataclass(slots=True)
class PetState:
    hunger: int = 3  # full hearts: 0 starving .. 4 full
    happy: int = 3
    turns: int = 0

    def tick(self) -> None:
        """Time passes with every message: the pet slowly gets hungry and bored."""
        self.turns += 1
        if self.turns % 6 == 0:
            self.hunger = max(0, self.hunger - 1)
        if self.turns % 7 == 0:
            self.happy = max(0, self.happy - 1)

    def feed(self) -> bool:
        """False when it is already full."""
        if self.hunger >= HEARTS:
            return False
        self.hunger += 1
        return True

    def play(self) -> None:
        self.happy = min(HEARTS, self.happy + 1)
        self.hunger = max(0, self.hunger - 1) if self.turns % 2 else self.hunger

    @property
    def mood(self) -> str:
        if self.hunger <= 1:
            return "hungry"
        if self.happy <= 1:
            return "bored"
        return "happy"

    @property
    def age_days(self) -> int:
        return 1 + self.turns // 10

    def hearts(self, value: int) -> str:
        return "<3" * value + "-" * (HEARTS - value)


PET_ACTIONS = {
    "feed": re.compile(r"\b(feed|food|eat|snack|hungry|meal|burger|cookie|candy)\b", re.I),
    "play": re.compile(r"\b(play|game|games|fun|toy|ball)\b", re.I),
    "clean": re.compile(r"\b(clean|bath|wash|poop|shower)\b", re.I),
    "sleep": re.compile(r"\b(sleep|nap|bed|bedtime|tired|goodnight)\b", re.I),
}


# --- tiny poems (Midnight) -------------------------------------------------------------

_FILLER = (
    "a an the and or but to of in on at for with about me my i you u your ur is are was "
    "be it this that so just what write poem please can could would some any"
)
_STOPWORDS = frozenset(_FILLER.split(" "))
_POEM_TEMPLATES = (
    "{a} falls like rain\non a heart made of {b}\n...and nobody sees",
    "i wrote {a} on my wrist\nin black ink\nit faded like {b}",
    "the {a} is cold tonight\nlike {b}\nlike me",
    "{a}...\n{b}...\nwhy does everything end",
)
_POEM_FALLBACK_WORDS = ("rain", "midnight", "silence", "glass", "the moon", "october")


def poem_words(text: str) -> list[str]:
    """The words of a message worth a poem: the longest ones that are not filler."""
    words = [w for w in re.findall(r"[a-zA-Z']{3,20}", text.lower()) if w not in _STOPWORDS]
    return sorted(set(words), key=lambda w: (-len(w), w))[:2]


def tiny_poem(text: str, rng: random.Random) -> str:
    words = poem_words(text)
    while len(words) < 2:
        candidate = rng.choice(_POEM_FALLBACK_WORDS)
        if candidate not in words:
            words.append(candidate)
    template = rng.choice(_POEM_TEMPLATES)
    return template.format(a=words[0], b=words[1])


# --- skater tricks (Jay) ---------------------------------------------------------------

TRICKS = ("kickflip", "heelflip", "ollie", "360 flip", "50-50 grind", "nollie", "manual")
