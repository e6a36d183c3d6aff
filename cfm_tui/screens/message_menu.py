"""Small pickers for a selected message: what to do with it, and which emoji to react
with (MSN's classic emoticons first, shown as cfm shows them, with their codes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from cfm_tui.emoticons import EMOTICONS
from cfm_tui.palette import Intent
from cfm_tui.screens.confirm import ConfirmScreen
from cfm_tui.widgets.message_select import MessageSelect

# The picker's set: MSN's classics first, as the brief of issue 16 lists them.
CLASSIC_CODES = ("(Y)", "(N)", ":)", ":D", ";)", ":(", ":O", ":P", "(L)", "(K)",
                 ":'(", ":@", "(H)", "(F)", "(*)", "(C)", "(B)", "(^)", "(8)", "(I)")
MENU = (("reply", "Reply", "r"), ("react", "React…", "a"), ("edit", "Edit", "e"),
        ("delete", "Delete…", "d"))


class _Picker(ModalScreen[str | None]):
    """A titled list; Enter (or a click) dismisses with the option's id, Escape None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel", id="picker.cancel"),
    ]
    title_text = ""
    note = ""  # a line under the title (the message menu: who reacted)

    def options(self) -> list[Option]:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        with Vertical(classes="picker-box"):
            yield Static(Text(self.title_text), classes="picker-title")
            if self.note:
                yield Static(Text(self.note), classes="picker-note")
            yield OptionList(*self.options(), classes="picker-list")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)


class MessageMenu(_Picker):
    """Reply, React…, Edit, Delete… — Edit only on one's own messages; Delete too,
    except in group rooms, where a moderator may delete others' (the server decides)."""

    title_text = "This message"

    def __init__(self, *, mine: bool, group: bool = False, reacted: str = "") -> None:
        super().__init__()
        self.mine = mine
        self.group = group
        self.note = reacted

    def options(self) -> list[Option]:
        out = []
        for action, label, key in MENU:
            if action == "edit" and not self.mine:
                continue
            if action == "delete" and not (self.mine or self.group):
                continue
            out.append(Option(Text(f"{label:<10}{key}"), id=action))
        return out


class EmojiPicker(_Picker):
    """Dismisses with the emoji (what is sent and shown), or None."""

    title_text = "React with"

    def options(self) -> list[Option]:
        return [Option(Text(f"{EMOTICONS[code]}  {code}"), id=EMOTICONS[code])
                for code in CLASSIC_CODES]


def ask_about_message(ask: MessageSelect.Ask) -> tuple[ModalScreen[Any],
                                                       Callable[[Any], Intent | None]]:
    """The question a selected message's action needs, and the intent its answer makes
    (None: cancelled). The menu's answer goes back to the view (``message_do``)."""
    room, seq = ask.room, ask.seq
    if ask.what == "menu":
        return (MessageMenu(mine=ask.mine, group=ask.group, reacted=ask.reacted),
                lambda action: Intent("message_do", room, seq, action) if action else None)
    if ask.what == "react":
        return EmojiPicker(), lambda emoji: Intent("react", room, seq, emoji) if emoji else None
    return (ConfirmScreen("Delete this message?", ask.preview, "Delete"),
            lambda yes: Intent("delete", room, seq) if yes else None)
