"""The footer: the window's keys in a fixed order, fitted to the terminal's width.

Textual's footer lists keys in binding-chain order (the focused widget's first) and
lets the last ones run under the command-palette key when the terminal is narrow. Ours
orders them by usefulness, shortens a few labels when space is short, then leaves out
the least useful ones — never Ctrl+Q.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

QUIT = "app.quit"
# Binding ids, most useful first; keys not listed follow in the order Textual gives.
ORDER = ("chat.answer", "chat.nudge", "chat.switch_pane", "chat.close", "chat.add_contact",
         "chat.join_room")
SHORT = {"chat.add_contact": "Add", "chat.join_room": "Join", "buddy.block": "Block",
         "chat.answer": "Answer"}


@dataclass(frozen=True, slots=True)
class Key:
    id: str
    key: str
    display: str
    description: str
    action: str
    enabled: bool = True
    tooltip: str = ""

    @property
    def width(self) -> int:
        """Cells a (non-compact) footer key takes: " key " then "description "."""
        return cell_len(self.display) + cell_len(self.description) + 3


def fit_keys(keys: list[Key], width: int) -> list[Key]:
    """The keys to show in ``width`` cells: ordered, shortened, then trimmed.

    ``app.quit`` is always last and always kept.
    """
    rank = {bid: i for i, bid in enumerate(ORDER)}
    ordered = sorted((k for k in keys if k.id != QUIT),
                     key=lambda k: rank.get(k.id, len(ORDER)))  # stable for the rest
    quit_keys = [k for k in keys if k.id == QUIT]

    def total(chosen: list[Key]) -> int:
        return sum(k.width for k in chosen + quit_keys)

    if total(ordered) > width:
        ordered = [replace(k, description=SHORT.get(k.id, k.description)) for k in ordered]
    while ordered and total(ordered) > width:
        ordered.pop()
    return ordered + quit_keys


class ChatFooter(Footer):
    _fitted_width: int | None = None

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        active = self.screen.active_bindings
        app = self.app
        keys: list[Key] = []
        actions: set[str] = set()
        for binding_key, (_, binding, enabled, tooltip) in active.items():
            if not binding.show or binding.action in actions:
                continue
            actions.add(binding.action)
            keys.append(Key(binding.id or binding.action, binding_key,
                            app.get_key_display(binding), binding.description,
                            binding.action, enabled, tooltip or ""))
        palette = None
        if self.show_command_palette and app.ENABLE_COMMAND_PALETTE:
            found = active.get(app.COMMAND_PALETTE_BINDING)
            if found is not None:
                _, binding, enabled, tooltip = found
                palette = Key("palette", binding.key, app.get_key_display(binding),
                              binding.description, binding.action, enabled,
                              binding.tooltip or binding.description)
        room = app.size.width - (palette.width if palette is not None else 0)
        shown = fit_keys(keys, room)
        self.styles.grid_size_columns = len(shown)
        for key in shown:
            yield FooterKey(key.key, key.display, key.description, key.action,
                            disabled=not key.enabled, tooltip=key.tooltip,
                            ).data_bind(compact=Footer.compact)
        if palette is not None:
            yield FooterKey(palette.key, palette.display, palette.description, palette.action,
                            classes="-command-palette", disabled=not palette.enabled,
                            tooltip=palette.tooltip)

    def on_resize(self) -> None:
        width = self.app.size.width
        if width != self._fitted_width:
            self._fitted_width = width
            self.call_after_refresh(self.recompose)
