"""What the screens and the command palette ask of the app, as a type.

Screens and widgets must not import the app (a layer contract in pyproject.toml): the
app imports them. They reach it through Textual's ``self.app``, typed as this Protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class ChatActions(Protocol):
    def mark_active_seen(self) -> None: ...

    def send_nudge(self, room: str) -> None: ...

    def action_add_contact(self) -> None: ...

    def action_join_room(self) -> None: ...

    def palette_commands(self) -> list[tuple[str, Callable[[], Any], str]]: ...
