"""Picking a message in a conversation, and what the composer is doing with one.

F7 (or the palette) enters select mode: the newest message is highlighted, Up/Down move,
Enter offers what can be done (a small menu), and the letters do it at once: r reply,
a or + react (an emoji picker, MSN's classics first), e edit, d or Delete delete (asked
first). Escape leaves. Up in an empty composer edits the user's last message.

While replying or editing, a line above the composer says so ("Replying to Bob: …",
"Editing your message"); Escape drops it. The mixin needs of its host (the
ConversationView) ``room``, ``state``, ``composer``, ``transcript`` and ``show``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from cfm_common import rules
from cfm_tui.emoticons import replace_emoticons
from cfm_tui.sanitize import clean_line

if TYPE_CHECKING:
    from cfm_tui.state import ChatState
    from cfm_tui.widgets.composer import Composer
    from cfm_tui.widgets.transcript import Transcript

SELECT_HELP = "↑↓ pick · Enter menu · r reply · a react · e edit · d delete · Esc done"
OWN_ONLY = "You can only {what} your own messages."
# What a message action needs: e and d only on one's own messages (a moderator deletes
# others' in a group room: the server says whether this user may).
ACTIONS = ("reply", "react", "edit", "delete")


class MessageSelect(Widget):
    """Select mode and the composer's reply/edit mode, for ConversationView."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f7", "select_message", "Select", id="conv.select", show=False,
                priority=True),
        Binding("up", "up", "Previous", show=False, priority=True, id="conv.select_up"),
        Binding("down", "move(1)", "Next", show=False, priority=True, id="conv.select_down"),
        Binding("enter", "message_menu", "Menu", show=False, priority=True,
                id="conv.select_menu"),
        Binding("r", "message_do('reply')", "Reply", priority=True, id="conv.reply"),
        Binding("a,plus", "message_do('react')", "React", priority=True, id="conv.react"),
        Binding("e", "message_do('edit')", "Edit", priority=True, id="conv.edit"),
        Binding("d,delete", "message_do('delete')", "Delete", priority=True,
                id="conv.delete"),
        Binding("escape", "leave_mode", "Done", show=False, priority=True, id="conv.escape"),
    ]

    class Ask(Message):
        """A question about a message for the screen to ask (widgets open no screens):
        ``what`` is ``menu`` (what to do), ``react`` (which emoji) or ``delete`` (sure?).
        The answer comes back as an intent."""

        def __init__(self, what: str, room: str, seq: int, *, mine: bool, group: bool,
                     preview: str, reacted: str = "") -> None:
            super().__init__()
            self.what, self.room, self.seq = what, room, seq
            self.mine, self.group, self.preview = mine, group, preview
            self.reacted = reacted  # who reacted with what ("" if nobody did)

    room: str
    state: ChatState
    selected: int | None = None
    # ("reply" | "edit", seq): what the next Enter in the composer does.
    mode: tuple[str, int] | None = None

    if TYPE_CHECKING:
        @property
        def composer(self) -> Composer: ...

        @property
        def transcript(self) -> Transcript: ...

        def show(self) -> None: ...

    # --- select mode -----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "up":
            return self._selecting() or self._composer_idle()
        if action in ("move", "message_menu", "message_do"):
            return self._selecting()
        if action == "leave_mode":
            return self._selecting() or self.mode is not None
        return True

    def _selecting(self) -> bool:
        """In select mode, and not typing (a click in the composer types again)."""
        return self.selected is not None and self.screen.focused is not self.composer

    def _composer_idle(self) -> bool:
        """Up edits the last message: focus in an empty composer, nothing else going on."""
        return (self.screen.focused is self.composer and not self.composer.text
                and self.mode is None)

    def action_select_message(self) -> None:
        conv = self.state.conversations.get(self.room)
        seqs = conv.selectable() if conv is not None else []
        if not seqs:
            self.notify("No message to select here yet.", markup=False)
            return
        self.select(seqs[-1] if self.selected is None else self.selected)

    def select(self, seq: int | None) -> None:
        """Highlight ``seq`` (None: leave select mode), its line scrolled into view."""
        self.selected = seq
        if seq is not None:
            self.screen.set_focus(self.transcript)
        self._show_mode()
        self.show()
        self.refresh_bindings()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # Back in the composer (a click, Tab): typing again, the selection goes. (Not
        # for a focus event that arrives late: a selection made since moved it away.)
        if self.selected is not None and event.widget is self.composer \
                and self.screen.focused is self.composer:
            self.select(None)

    def action_up(self) -> None:
        if self._selecting():
            self.action_move(-1)
        else:
            self.edit_last()

    def edit_last(self) -> None:
        """The user's last message into the composer, to edit."""
        conv = self.state.conversations.get(self.room)
        last = conv.last_own() if conv is not None else None
        if last is None:
            self.notify("You have no message to edit here.", markup=False)
            return
        self.start_edit(last.seq)

    def action_move(self, step: int) -> None:
        conv = self.state.conversations.get(self.room)
        seqs = conv.selectable() if conv is not None else []
        if not seqs or self.selected is None:
            return
        at = seqs.index(self.selected) if self.selected in seqs else len(seqs) - 1
        self.select(seqs[max(0, min(len(seqs) - 1, at + step))])

    def action_leave_mode(self) -> None:
        if self.selected is not None:
            self.select(None)
        else:
            if self.mode is not None and self.mode[0] == "edit":
                self.composer.clear()  # the old text was only there to be edited
            self.mode = None
            self._show_mode()
        self.screen.set_focus(self.composer)

    def action_message_menu(self) -> None:
        seq = self.selected
        if seq is None:
            return
        self._ask("menu", seq)

    def action_message_do(self, action: str, seq: int | None = None) -> None:
        """Reply to, react to, edit or delete the selected message (or ``seq``)."""
        seq = seq if seq is not None else self.selected
        if seq is None or action not in ACTIONS:
            return
        if action == "edit" and not self._is_mine(seq):
            self.notify(OWN_ONLY.format(what=action), markup=False)
            return
        if action == "reply":
            self.select(None)
            self.mode = ("reply", seq)
            self._show_mode()
            self.screen.set_focus(self.composer)
        elif action == "edit":
            self.select(None)
            self.start_edit(seq)
        else:
            self._ask(action, seq)  # react: which emoji; delete: are you sure

    def start_edit(self, seq: int) -> None:
        """The composer holds the message's text; Enter saves it, Escape cancels."""
        conv = self.state.conversations.get(self.room)
        msg = conv.message(seq) if conv is not None else None
        if msg is None:
            return
        self.mode = ("edit", seq)
        self.composer.load_text(msg.text)
        self.composer.move_cursor(self.composer.document.end)
        self._show_mode()
        self.screen.set_focus(self.composer)

    def sent(self) -> tuple[int | None, int | None]:
        """The draft went: (reply, edit) it was for; the mode ends."""
        mode, self.mode = self.mode, None
        self._show_mode()
        if mode is None:
            return None, None
        return (mode[1], None) if mode[0] == "reply" else (None, mode[1])

    def _ask(self, what: str, seq: int) -> None:
        self.post_message(self.Ask(what, self.room, seq, mine=self._is_mine(seq),
                                   group=rules.is_group_room(self.room),
                                   preview=self._preview(seq), reacted=self._reacted(seq)))

    def _reacted(self, seq: int) -> str:
        """Who reacted with what: the transcript shows counts, the menu shows the names."""
        conv = self.state.conversations.get(self.room)
        msg = conv.message(seq) if conv is not None else None
        if msg is None or not msg.reactions:
            return ""
        return "   ".join(
            f"{replace_emoticons(clean_line(r.emoji))} "
            + ", ".join(clean_line(self.state.label(name)) for name in r.names)
            for r in msg.reactions)

    def _is_mine(self, seq: int) -> bool:
        conv = self.state.conversations.get(self.room)
        msg = conv.message(seq) if conv is not None else None
        return msg is not None and msg.sender == self.state.me

    def _preview(self, seq: int) -> str:
        conv = self.state.conversations.get(self.room)
        msg = conv.message(seq) if conv is not None else None
        if msg is None:
            return ""
        text = replace_emoticons(clean_line(msg.text.split("\n", 1)[0]))
        who = clean_line(self.state.label(msg.sender))
        return f"{who}: {text[:60]}{'…' if len(text) > 60 else ''}"

    def mode_text(self) -> Text | None:
        """The line above the composer, or None when there is nothing to say."""
        if self.selected is not None:
            return Text(SELECT_HELP)
        if self.mode is None:
            return None
        kind, seq = self.mode
        if kind == "edit":
            return Text("Editing your message · Enter saves · Esc cancels")
        return Text(f"Replying to {self._preview(seq)} · Esc cancels")

    def _show_mode(self) -> None:
        bars = self.query(".conv-mode")
        if not bars:
            return
        bar = bars.first(Static)
        text = self.mode_text()
        bar.display = text is not None
        if text is not None:
            text.no_wrap, text.overflow = True, "ellipsis"
            bar.update(text)
