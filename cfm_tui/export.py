"""``/save``: a conversation written to a text or HTML file, as the transcript shows it.

The text is the transcript's own rendering (sanitized, emoticons as emoji), so a file
holds exactly what was on screen, never raw control characters from other people.
"""

from __future__ import annotations

import io
import re
from datetime import datetime, tzinfo
from pathlib import Path

from rich.console import Console
from rich.text import Text

from cfm_tui import render
from cfm_tui.conversation import LineKind
from cfm_tui.state import ChatState

HTML_SUFFIXES = (".html", ".htm")


def default_file_name(room: str, now: datetime) -> str:
    """``cfm-bob-20261204-0415.txt`` / ``cfm-lobby-…``: safe in any file system."""
    label = re.sub(r"[^a-z0-9_.-]+", "-", room.lower().removeprefix("#")).strip("-.")
    return f"cfm-{label or 'conversation'}-{now:%Y%m%d-%H%M}.txt"


def conversation_text(room: str, state: ChatState, tz: tzinfo | None, now: datetime) -> Text:
    """A title line, then the transcript (without the sending… lines not yet sent)."""
    conv = state.conversation(room)
    lines = [line for line in conv.lines() if line.kind is not LineKind.PENDING]
    title = render.conversation_title(room, state)
    out = Text(f"cfm conversation: {title} — saved {now:%Y-%m-%d %H:%M}\n\n")
    out.append_text(render.transcript(lines, state, tz))
    out.append("\n")
    return out


def write(path: Path, text: Text) -> None:
    """Write ``text`` to a new file ``path`` (HTML by its suffix); never overwrites."""
    if path.suffix.lower() in HTML_SUFFIXES:
        console = Console(record=True, file=io.StringIO(), width=100, color_system="truecolor")
        console.print(text, soft_wrap=True)
        content = console.export_html(inline_styles=True)
    else:
        content = text.plain
    with path.open("x", encoding="utf-8") as file:
        file.write(content)
