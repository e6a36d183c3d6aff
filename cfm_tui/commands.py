"""The command palette's provider (Ctrl+P): the messenger's commands, searchable.

The list is :mod:`cfm_tui.palette`'s, asked of the screen the palette was opened on (the
main window; elsewhere it is empty); a chosen command is posted to that screen as a
:class:`~cfm_tui.intents.IntentRequested` message (the screen does what is
layout, the app hands the rest to the controller). Titles can hold contact
names, which are untrusted: they become literal ``Content``, never markup (Textual's
``Matcher.highlight`` would parse them as markup).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

from textual.command import DiscoveryHit, Hit, Provider
from textual.content import Content

from cfm_tui.intents import IntentRequested

MATCH_STYLE = "bold underline"


def _highlight(title: str, query: str) -> Content:
    """The title with the query's letters underlined where they match in order."""
    content = Content(title)
    position = 0
    lowered = title.lower()
    for ch in query.lower():
        if ch.isspace():
            continue
        found = lowered.find(ch, position)
        if found < 0:
            break
        content = content.stylize(MATCH_STYLE, found, found + 1)
        position = found + 1
    return content


class ChatCommands(Provider):
    def _commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        screen = self.screen
        source = getattr(screen, "palette_entries", None)  # only the main window has one
        if source is None:
            return []
        return [(entry.title, lambda i=entry.intent: screen.post_message(IntentRequested(i)),
                 entry.help) for entry in source()]

    async def discover(self) -> AsyncGenerator[DiscoveryHit, None]:
        for title, callback, help_text in self._commands():
            yield DiscoveryHit(Content(title), callback, text=title, help=help_text)

    async def search(self, query: str) -> AsyncGenerator[Hit, None]:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, _highlight(title, query), callback, text=title, help=help_text)
