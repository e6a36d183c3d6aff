"""Every messenger action in the command palette (Ctrl+P).

Titles can hold contact names, which are untrusted: they become literal ``Content``,
never markup (Textual's ``Matcher.highlight`` would parse them as markup).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Provider
from textual.content import Content

if TYPE_CHECKING:
    from cfm_tui.actions import ChatActions

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
    def _commands(self):  # type: ignore[no-untyped-def]
        app: ChatActions = self.app  # type: ignore[assignment]
        return app.palette_commands() if hasattr(app, "palette_commands") else []

    async def discover(self) -> AsyncGenerator[DiscoveryHit, None]:
        for title, callback, help_text in self._commands():
            yield DiscoveryHit(Content(title), callback, text=title, help=help_text)

    async def search(self, query: str) -> AsyncGenerator[Hit, None]:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, _highlight(title, query), callback, text=title, help=help_text)
