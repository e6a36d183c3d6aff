"""The bot's command router: ``!score alice 3`` → the handler of ``score`` with
``["alice", "3"]``. Pure parsing and lookup; :class:`~cfm_common.bot.Bot` runs them.

Arguments are split like a shell would (``!remind 10m "tea is ready"`` → ``["10m",
"tea is ready"]``); unbalanced quotes fall back to splitting on white space, so a
stray apostrophe ("!say don't") never loses a command.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cfm_common.frames import Msg

CommandHandler = Callable[[Msg, list[str]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command: its name (lower-cased), its arguments, and the text after
    the name as typed (``rest``) for commands that take free text."""

    name: str
    args: list[str]
    rest: str


def parse(text: str, prefix: str) -> Command | None:
    """The command in ``text``, or None if it does not start with ``prefix``."""
    if not prefix or not text.startswith(prefix):
        return None
    body = text[len(prefix):]
    name, _, rest = body.strip().partition(" ")
    if not name:
        return None
    rest = rest.strip()
    try:
        args = shlex.split(rest)
    except ValueError:  # an unbalanced quote: take the words as they are
        args = rest.split()
    return Command(name.lower(), args, rest)


class Router:
    """Command names → handlers; the help text lists them."""

    def __init__(self, prefix: str = "!") -> None:
        self.prefix = prefix
        self.handlers: dict[str, CommandHandler] = {}
        self.helps: dict[str, str] = {}

    def add(self, name: str, handler: CommandHandler, help: str | None = None) -> None:
        key = name.lower().removeprefix(self.prefix)
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"a command name is one word, not {name!r}")
        if key in self.handlers:
            raise ValueError(f"command {key!r} is defined twice")
        self.handlers[key] = handler
        doc = help if help is not None else (handler.__doc__ or "").strip().split("\n")[0]
        self.helps[key] = doc

    def find(self, text: str) -> tuple[Command, CommandHandler | None] | None:
        """None: not a command; (command, None): a command nobody handles."""
        command = parse(text, self.prefix)
        if command is None:
            return None
        return command, self.handlers.get(command.name)

    def help_text(self) -> str:
        lines = [f"{self.prefix}{name}" + (f" — {doc}" if doc else "")
                 for name, doc in sorted(self.helps.items())]
        return "Commands:\n" + "\n".join(lines)

    def unknown_text(self, command: Command) -> str:
        known = ", ".join(f"{self.prefix}{name}" for name in sorted(self.handlers))
        return f"I don't know {self.prefix}{command.name}. Try: {known}"
