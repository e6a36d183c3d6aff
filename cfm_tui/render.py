"""Domain state to Rich ``Text``: status dots, buddy lines, the MSN-style transcript.

Every piece of untrusted text goes through :mod:`cfm_tui.sanitize` and into a ``Text``
as a plain string with a style object, never into a markup string, so ``[bold]`` in a
name is shown as typed.
"""

from __future__ import annotations

import io
import re
from datetime import datetime, tzinfo

from rich.console import Console
from rich.style import Style
from rich.text import Text

from cfm_common import rules
from cfm_tui.conversation import LineKind, TranscriptLine
from cfm_tui.emoticons import replace_emoticons
from cfm_tui.sanitize import clean_line, clean_text
from cfm_tui.state import ChatState, Person

# MSN Messenger's status colours.
STATUS_COLOURS: dict[str, str] = {
    "online": "#3cb043",
    "busy": "#e0301e",
    "away": "#f5a623",
    "brb": "#f5a623",
    "phone": "#f5a623",
    "lunch": "#f5a623",
    "invisible": "#8a8a8a",
    "offline": "#8a8a8a",
}
DOT = "●"
PSM_STYLE = Style(color="#8a8a8a", italic=True)
SAYS_STYLE = Style(color="#6b7b8c")
NUDGE_STYLE = Style(color="#e0301e", bold=True)
NOTE_STYLE = Style(color="#8a8a8a", italic=True)
PENDING_STYLE = Style(color="#8a8a8a")
SEEN_STYLE = Style(color="#8a8a8a", dim=True)
GROUP_STYLE = Style(bold=True, color="#1f5fa8")
ACTION_STYLE = Style(color="#8e44ad", italic=True)
MENTION_STYLE = Style(bold=True, color="#b35c00")  # a message naming the user, its count
QUOTE_STYLE = Style(color="#6b7b8c", italic=True)
SELECTED_STYLE = Style(bgcolor="#cfe3fa", color="#000000")
EDITED = "(edited)"
DELETED = "message deleted"
INDENT = "  "


def status_label(status: str) -> str:
    try:
        return rules.STATUS_LABELS[rules.Status(status)]
    except ValueError:
        return status


def status_dot(status: str) -> Text:
    return Text(DOT, style=Style(color=STATUS_COLOURS.get(status, "#8a8a8a")))


def counts(unread: int, mentioned: int = 0) -> Text:
    """" (3)" unread, " (3 @1)" with mentions of the user; empty when nothing is new.
    100 from the server means "100 or more": shown as 99+."""
    if not unread and not mentioned:
        return Text("")
    style = Style(bold=True, color="#1f5fa8")
    if not mentioned:
        return Text(f" ({_upto99(unread)})", style=style)
    out = Text(f" ({_upto99(unread)}", style=style)
    out.append(f" @{_upto99(mentioned)}", style=MENTION_STYLE)
    out.append(")", style=style)
    return out


def _upto99(n: int) -> str:
    return "99+" if n > 99 else str(n)


def buddy_line(person: Person, unread: int = 0, *, blocked: bool = False,
               label: str | None = None, stale: bool = False, mentioned: int = 0) -> Text:
    """One row of the buddy list: dot, name, unread count, status word, dim psm.

    ``label`` is the name to show (``ChatState.label``: with the handle when ambiguous).
    ``stale``: the connection is down, so the status is unknown: a grey dot, no word.
    """
    line = Text("  ", no_wrap=True, overflow="ellipsis")
    line.append_text(status_dot("offline" if blocked or stale else person.status))
    line.append(" ")
    line.append(clean_line(label or person.label), style=Style(bold=unread > 0))
    line.append_text(counts(unread, mentioned))
    if blocked:
        line.append(" (blocked)", style=PSM_STYLE)
    elif person.status not in ("online", "offline") and not stale:
        line.append(f" ({status_label(person.status)})", style=PSM_STYLE)
    if person.psm and not blocked:
        line.append(" - ", style=PSM_STYLE)
        line.append(replace_emoticons(clean_line(person.psm)), style=PSM_STYLE)
    return line


def room_line(room: str, unread: int, mentioned: int = 0) -> Text:
    """A room in the buddy list. No member count: it is only known once the room is
    opened and members stay members while signed out, so a count would mislead."""
    line = Text("  ", no_wrap=True, overflow="ellipsis")
    line.append("# ", style=GROUP_STYLE)
    line.append(room[1:], style=Style(bold=unread > 0))
    line.append_text(counts(unread, mentioned))
    return line


def group_header(title: str, count: int | None = None) -> Text:
    label = f"{title} ({count})" if count is not None else title
    return Text(label, style=GROUP_STYLE)


def format_time(ts_ms: int, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=tz).strftime("%H:%M")


def transcript(lines: list[TranscriptLine], state: ChatState, tz: tzinfo | None,
               width: int | None = None, selected: int | None = None) -> Text:
    """The conversation as MSN drew it: "alice says (12:34):" then the indented text.

    With ``width`` the message bodies are wrapped here, so that wrapped lines keep their
    indent (a plain ``Text`` would wrap them back to column 0). ``selected``: the seq of
    the message picked in select mode, drawn highlighted.
    """
    out = Text()
    previous: TranscriptLine | None = None
    for line in lines:
        if out:
            out.append("\n")
        start = len(out)
        _line(out, line, previous, state, tz, width)
        if selected is not None and line.seq == selected and line.kind is LineKind.SAY:
            out.stylize(SELECTED_STYLE, start, len(out))
        previous = line
    return out


def _line(out: Text, line: TranscriptLine, previous: TranscriptLine | None,
          state: ChatState, tz: tzinfo | None, width: int | None) -> None:
    """One transcript line (with its header, quote and reactions) appended to ``out``."""
    if line.kind is LineKind.SEEN:
        out.append(INDENT + line.text, style=SEEN_STYLE)
    elif line.kind is LineKind.NOTE:
        out.append(_wrap_hanging(clean_text(line.text), width), style=NOTE_STYLE)
    elif line.kind is LineKind.NUDGE:
        if line.sender == state.me:
            out.append("You have just sent a nudge!", style=NUDGE_STYLE)
        else:
            who = clean_line(state.label(line.sender))
            out.append(f"{who} just sent you a nudge!", style=NUDGE_STYLE)
    elif is_action(line):
        # "/me waves" arrives as "* alice waves": an action line, no "says" header,
        # with the name people know the sender by (what is sent keeps the handle,
        # which is what makes it an action).
        assert line.sender is not None
        action = line.text[len(line.sender) + 3:]
        who = clean_line(state.label(line.sender))
        body = replace_emoticons(clean_text(f"* {who} {action}"))
        out.append(_wrap_indented(body, "", width), style=ACTION_STYLE)
        if line.kind is LineKind.PENDING:
            out.append("  sending…", style=PSM_STYLE)
    else:
        pending = line.kind is LineKind.PENDING
        if not _continues(previous, line, tz):
            who = clean_line(state.label(line.sender))
            out.append(f"{who} says", style=SAYS_STYLE)
            out.append(f" ({format_time(line.ts, tz)})", style=PSM_STYLE)
            out.append(":", style=SAYS_STYLE)
            if pending:
                out.append("  sending…", style=PSM_STYLE)
            out.append("\n")
        if line.reply is not None:
            out.append(quote_line(line, state, width) + "\n", style=QUOTE_STYLE)
        _body(out, line, width, pending)


def quote_line(line: TranscriptLine, state: ChatState, width: int | None) -> str:
    """"  ┆ Bob: the answered line…" — one line, cut to ``width``."""
    quote = line.quote
    if quote is None:
        said = "an earlier message"
    elif quote.deleted:
        said = f"{clean_line(state.label(quote.sender))}: {DELETED}"
    else:
        first = replace_emoticons(clean_line(quote.text.split("\n", 1)[0]))
        said = f"{clean_line(state.label(quote.sender))}: {first}"
    text = f"{INDENT}┆ {said}"
    if width is not None and Text(text).cell_len > width:
        cut = Text(text)
        cut.truncate(width - 1)
        text = cut.plain + "…"
    return text


def _body(out: Text, line: TranscriptLine, width: int | None, pending: bool) -> None:
    """The text (or the tombstone), the edited mark, the reactions under it."""
    if line.deleted:
        out.append(INDENT + DELETED, style=NOTE_STYLE)
        return
    body = replace_emoticons(clean_text(line.text))
    style = PENDING_STYLE if pending else MENTION_STYLE if line.mentions_me else None
    if line.edited:
        wrapped = _wrap_indented(f"{body} {EDITED}", INDENT, width)
        out.append(wrapped[:-len(EDITED)], style=style)
        out.append(EDITED, style=PSM_STYLE)
    else:
        out.append(_wrap_indented(body, INDENT, width), style=style)
    if line.reactions:
        out.append("\n" + INDENT)
        for i, (emoji, names) in enumerate(line.reactions):
            shown = replace_emoticons(clean_line(emoji))
            out.append(("  " if i else "") + f"{shown} {len(names)}", style=SAYS_STYLE)


def _continues(previous: TranscriptLine | None, line: TranscriptLine, tz: tzinfo | None) -> bool:
    """Whether ``line`` goes under ``previous``'s "says (hh:mm):" header.

    Only the same sender in the same minute: the header's time is then true for every
    line under it (a message queued while offline and sent later gets its own).
    """
    return (
        previous is not None
        and not is_action(previous)
        and previous.kind is line.kind
        and previous.sender == line.sender
        and format_time(previous.ts, tz) == format_time(line.ts, tz)
    )


def label_with_handle(name: str, state: ChatState) -> str:
    """"Bob (bob)": the name shown and the handle, once — "bob" alone when that is the
    name shown, "Bob <bob>" as it is when the label already carries the handle."""
    label = clean_line(state.label(name))
    if label == name or f"<{name}>" in label:
        return label
    return f"{label} ({name})"


def is_action(line: TranscriptLine) -> bool:
    """A message that starts with "* <its sender's handle> " (what /me sends).

    Matched on the real sender's handle, so bob cannot write an action for alice.
    """
    return (line.kind in (LineKind.SAY, LineKind.PENDING) and line.sender is not None
            and line.text.startswith(f"* {line.sender} ")
            and bool(line.text[len(line.sender) + 3:].strip()))


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + part for part in text.split("\n"))


_WRAP_CONSOLE = Console(file=io.StringIO(), width=200, color_system=None, legacy_windows=False)


def _wrap_indented(text: str, prefix: str, width: int | None) -> str:
    """Indent every line, wrapping (by terminal cells, emoji are two) to ``width``."""
    if width is None or width <= len(prefix) + 8:
        return _indent(text, prefix)
    room = width - len(prefix)
    wrapped: list[str] = []
    for part in text.split("\n"):
        pieces = Text(part).wrap(_WRAP_CONSOLE, room, overflow="fold") if part else [Text("")]
        wrapped.extend(prefix + piece.plain.rstrip() for piece in pieces)
    return "\n".join(wrapped)


def _wrap_hanging(text: str, width: int | None) -> str:
    """Wrap each line to ``width`` with its continuation lines indented under it: under
    its second column when it has one (a /help entry: "/psm <text>   what it does"),
    else two cells in from its own indent."""
    if width is None:
        return text
    out: list[str] = []
    for part in text.split("\n"):
        body = part.lstrip(" ")
        lead = part[: len(part) - len(body)]
        column = re.search(r"\S {2,}(?=\S)", body)
        hang = " " * (len(lead) + column.end()) if column else lead + INDENT
        if len(hang) > width // 2:
            hang = lead + INDENT
        room = width - len(hang)
        if room <= 8 or not body:
            out.append(part)
            continue
        pieces = Text(body).wrap(_WRAP_CONSOLE, width - len(lead), overflow="fold")
        first, rest = pieces[0].plain.rstrip(), Text(" ".join(p.plain.strip()
                                                              for p in pieces[1:]))
        out.append(lead + first)
        if rest:
            out.extend(hang + piece.plain.rstrip()
                       for piece in rest.wrap(_WRAP_CONSOLE, room, overflow="fold"))
    return "\n".join(out)


def typing_line(names: list[str], state: ChatState) -> Text:
    labels = [clean_line(state.label(n)) for n in names]
    if not labels:
        return Text("")
    if len(labels) == 1:
        return Text(f"{labels[0]} is typing a message…", style=NOTE_STYLE)
    if len(labels) <= 3:
        joined = ", ".join(labels[:-1]) + f" and {labels[-1]}"
        return Text(f"{joined} are typing…", style=NOTE_STYLE)
    return Text("Several people are typing…", style=NOTE_STYLE)


def conversation_title(room: str, state: ChatState) -> str:
    """A tab's title, plain text (the widget wraps it in a literal Content)."""
    if rules.is_group_room(room):
        return room
    conv = state.conversations.get(room)
    peer = conv.peer if conv else None
    return clean_line(state.label(peer)) if peer else room


def conversation_header(room: str, state: ChatState) -> Text:
    """"To: Bob <bob> (Busy) - psm" for a DM; the room and its size for a group."""
    conv = state.conversations.get(room)
    out = Text(no_wrap=True, overflow="ellipsis")
    if conv is None or conv.peer is None:
        members = len(conv.members) if conv and conv.members is not None else None
        out.append(room, style=GROUP_STYLE)
        if members is not None:
            out.append(f"  {members} member{'s' if members != 1 else ''}", style=PSM_STYLE)
        return out
    person = state.person(conv.peer)
    stale = state.presence_stale  # the connection is down: as the buddy list, no status
    out.append("To: ", style=SAYS_STYLE)
    out.append_text(status_dot(rules.Status.OFFLINE.value if stale else person.status))
    out.append(" ")
    out.append(clean_line(person.label), style=Style(bold=True))
    out.append(f" <{person.name}>", style=PSM_STYLE)
    if not stale:
        out.append(f" ({status_label(person.status)})", style=PSM_STYLE)
    if person.psm:
        out.append(" - ", style=PSM_STYLE)
        out.append(replace_emoticons(clean_line(person.psm)), style=PSM_STYLE)
    return out


def member_lines(members: set[str], state: ChatState) -> Text:
    out = Text(no_wrap=True, overflow="ellipsis")
    stale = state.presence_stale  # the connection is down: every dot grey
    for i, name in enumerate(sorted(members, key=lambda n: state.label(n).lower())):
        if i:
            out.append("\n")
        status = state.person(name).status if name != state.me else state.status
        out.append_text(status_dot(rules.Status.OFFLINE.value if stale else status))
        out.append(" ")
        out.append(clean_line(state.label(name)))
    return out
