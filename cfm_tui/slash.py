"""Slash commands typed in the composer (``/status busy``, ``/join #lobby``), parsed.

Pure: :func:`parse` turns a draft into what to do with it — a :class:`Say` (send it as a
message), a :class:`Command` (checked arguments, ready to run) or a :class:`Refusal` (a
line for the transcript; the draft stays in the composer). :func:`run` runs a command
against the controller and returns its outcome.

A draft is a command when it starts with one ``/``; ``//text`` sends ``/text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cfm_common import rules
from cfm_tui.outcome import Outcome
from cfm_tui.palette import Intent
from cfm_tui.state import ChatState, Link, Update

# name -> (arguments, what it does): the order is the one /help lists.
COMMANDS: dict[str, tuple[str, str]] = {
    "nudge": ("", "nudge (one-to-one conversations)"),
    "status": ("<state>", "online, busy, away, brb, phone, lunch or invisible"),
    "psm": ("<text>", "your personal message (empty clears it)"),
    "name": ("<display name>", "your display name (empty: your handle)"),
    "me": ("<action>", "say what you do: * you <action>"),
    "join": ("#room", "join or create a group room"),
    "leave": ("", "leave this group room"),
    "members": ("", "list who is in this group room"),
    "add": ("<name>", "add a contact"),
    "block": ("<name>", "block someone"),
    "unblock": ("<name>", "unblock someone"),
    "close": ("", "close this conversation"),
    "save": ("[file]", "save this conversation to a text file (.html: a web page)"),
    "search": ("<words>", "find messages holding these words (Ctrl+F)"),
    "reconnect": ("", "try to reconnect now, not when the countdown ends"),
    "help": ("", "this list"),
}

_STATUS_ALIASES = {label.lower().replace(" ", "-"): status.value
                   for status, label in rules.STATUS_LABELS.items()
                   if status is not rules.Status.OFFLINE}


@dataclass(frozen=True, slots=True)
class Say:
    """Send ``text`` as a message."""

    text: str


@dataclass(frozen=True, slots=True)
class Command:
    """A known command with checked arguments (``arg`` normalized: a status value, a
    ``#room``, a handle; the text for ``psm`` and ``me``; "" when it takes none)."""

    name: str
    arg: str = ""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Not runnable as typed: tell the user why, keep the draft."""

    text: str


Parsed = Say | Command | Refusal


def parse_status(value: str) -> str | None:
    """A protocol status (``brb``) or its label in any case (``be-right-back``); else None."""
    key = value.strip().lower().replace(" ", "-").replace("_", "-")
    if key in rules.CLIENT_STATUSES:
        return key
    if key in _STATUS_ALIASES:
        return _STATUS_ALIASES[key]
    if key == "offline":
        return rules.Status.INVISIBLE.value
    return None


def display_refusal(display: str) -> str | None:
    """Why ``display`` cannot be a display name, or None."""
    if "\n" in display or rules.has_forbidden_text_chars(display):
        return "A display name is one line, without control characters."
    if len(display) > rules.MAX_DISPLAY:
        return f"A display name is at most {rules.MAX_DISPLAY} characters."
    return None


def usage(name: str) -> str:
    args, _ = COMMANDS[name]
    return f"/{name} {args}".rstrip()


def help_text() -> str:
    width = max(len(usage(name)) for name in COMMANDS)
    lines = ["Commands (//text sends /text):"]
    lines += [f"  {usage(name):<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return "\n".join(lines)


def me_text(name: str, action: str) -> str:
    """What ``/me`` sends: IRC's action line, as plain text."""
    return f"* {name} {action}"


def parse(draft: str) -> Parsed:
    if not draft.startswith("/"):
        return Say(draft)
    if draft.startswith("//"):
        return Say(draft[1:])
    head, _, rest = draft[1:].partition(" ")
    if "\n" in head:  # "/me\nsomething": the name ends at the line break too
        head, _, more = head.partition("\n")
        rest = more + (" " + rest if rest else "")
    name = head.lower()
    if name not in COMMANDS:
        shown = f"/{head}" if len(head) <= 24 else f"/{head[:24]}…"
        return Refusal(f"unknown command {shown} — /help lists them")
    return _check(name, rest)


def _check(name: str, rest: str) -> Parsed:
    arg = rest.strip()
    if name == "save":
        return Command(name, arg)  # the file, or "" for a name of the app's choosing
    if name == "search":
        return Command(name, " ".join(arg.split())) if arg else Refusal("Usage: /search <words>")
    if name in ("nudge", "leave", "members", "close", "reconnect", "help"):
        return Command(name) if not arg else Refusal(f"/{name} takes nothing after it.")
    if name == "status":
        status = parse_status(arg)
        if status is None:
            return Refusal(f"Usage: /status {'|'.join(sorted(rules.CLIENT_STATUSES))} "
                           "(or the label, e.g. be-right-back).")
        return Command(name, status)
    if name == "psm":
        if "\n" in arg:
            return Refusal("A personal message is one line.")
        if len(arg) > rules.MAX_PSM:
            return Refusal(f"A personal message is at most {rules.MAX_PSM} characters.")
        return Command(name, arg)
    if name == "name":
        refusal = display_refusal(arg)
        return Refusal(refusal) if refusal else Command(name, arg)
    if name == "me":
        action = rest.strip(" ")
        return Command(name, action) if action.strip() else Refusal("Usage: /me <action>")
    if name == "join":
        room = (arg if arg.startswith("#") else f"#{arg}").lower()
        if not arg or not rules.is_group_room(room):
            return Refusal("Usage: /join #room (# and 1-32 of a-z 0-9 _ -).")
        return Command(name, room)
    # add, block, unblock
    if not rules.is_valid_name(arg):
        return Refusal(f"Usage: /{name} <name> (a handle: 2-24 of A-Z a-z 0-9 _ . -).")
    return Command(name, rules.normalize_name(arg))


# --- running them ----------------------------------------------------------------------

class SlashTarget(Protocol):
    """What the commands are run against: the controller (named here, not imported, so
    that the controller can import this module)."""

    state: ChatState

    def send_text(self, room: str, text: str) -> Outcome: ...
    def send_nudge(self, room: str) -> Outcome: ...
    def choose_status(self, status: str) -> Outcome: ...
    def set_psm(self, psm: str) -> Outcome: ...
    def set_display(self, display: str) -> Outcome: ...
    def join_room(self, room: str, *, open_tab: bool = True) -> Outcome: ...
    def leave_room(self, room: str) -> Outcome: ...
    def contact(self, op: str, name: str) -> Outcome: ...
    def note(self, room: str, text: str) -> Outcome: ...
    def members_text(self, room: str) -> tuple[str, Outcome]: ...
    def reconnect_now(self) -> Outcome: ...
    def save_conversation(self, room: str, file: str) -> Outcome: ...
    def run_intent(self, intent: Intent) -> Outcome: ...


def run(target: SlashTarget, room: str, command: Command) -> Outcome:
    """Run a checked command typed in ``room``'s composer."""
    name, arg = command.name, command.arg
    state = target.state
    if name == "me":
        return target.send_text(room, me_text(state.me, arg))
    if name == "nudge":
        return target.send_nudge(room)
    if name == "status":
        return target.choose_status(arg)
    if name == "psm":
        return target.set_psm(arg)
    if name == "name":
        return target.set_display(arg)
    if name == "join":
        return target.join_room(arg)
    if name == "leave":
        if rules.is_group_room(room):
            return target.leave_room(room)
        return target.note(room, "/leave is for group rooms; /close closes this conversation.")
    if name == "members":
        text, asked = target.members_text(room)
        return asked.then(target.note(room, text))
    if name in ("add", "block", "unblock"):
        return target.contact(name, arg)
    if name == "close":
        return Outcome(Update(closed={room}))  # the tab; the conversation is kept
    if name == "reconnect":
        if state.connection.link is Link.RECONNECTING:
            return target.reconnect_now()
        return target.note(room, f"/reconnect is for while the connection is down "
                                 f"({state.connection.describe()}).")
    if name == "help":
        return target.note(room, help_text())
    if name == "save":
        return target.save_conversation(room, arg)
    if name == "search":  # every room: the screen can narrow it to one
        return target.run_intent(Intent("search", value=arg))
    raise ValueError(f"no such command: /{name}")  # parse() lets only COMMANDS through
