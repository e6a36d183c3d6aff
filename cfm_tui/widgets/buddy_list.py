"""The buddy list: AI contacts, Online (n), Offline (n), Blocked, Rooms."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from cfm_common import rules
from cfm_tui import render
from cfm_tui.state import ChatState, Person

USER = "user:"
ROOM = "room:"


class BuddyList(OptionList):
    """Option ids are ``user:<handle>`` or ``room:<#room>``; headers are disabled rows."""

    # Each key is offered (and works) only on the rows it applies to: see check_action.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("delete", "remove_contact", "Remove", id="buddy.remove"),
        Binding("delete", "leave_room", "Leave room", id="buddy.leave"),
        Binding("b", "toggle_block", "Block/Unblock", id="buddy.block"),
    ]

    class Open(Message):
        """Open (or focus) the conversation with a user or in a room."""

        def __init__(self, target: str) -> None:
            super().__init__()
            self.target = target

    class NothingToOpen(Message):
        """Enter on a row that opens nothing (a group header, an empty list)."""

    class LeaveRoom(Message):
        def __init__(self, room: str) -> None:
            super().__init__()
            self.room = room

    class ContactAction(Message):
        def __init__(self, op: str, name: str) -> None:
            super().__init__()
            self.op = op
            self.name = name

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._blocked: set[str] = set()

    def show(self, state: ChatState) -> None:
        """Rebuild the rows from the state, keeping the highlighted row where it was."""
        keep = self.highlighted_option.id if self.highlighted_option is not None else None
        # Who has something unread comes first in each group, then by name.
        people = sorted(state.contact_people(), key=lambda p: state.unread_for(p.name) == 0)
        bots = [p for p in people if p.bot]
        humans = [p for p in people if not p.bot]
        online = [p for p in humans if p.online]
        offline = [p for p in humans if not p.online]
        options: list[Option] = []

        def row(p: Person) -> Option:
            dm = rules.dm_room(state.me, p.name)
            return Option(render.buddy_line(p, state.unread_for(p.name),
                                            label=state.label(p.name),
                                            stale=state.presence_stale,
                                            mentioned=state.mentions_for(dm)),
                          id=USER + p.name)

        def group(title: str, key: str, count: int | None) -> None:
            options.append(Option(render.group_header(title, count), id=f"group:{key}",
                                  disabled=True))

        if bots:
            group("AI contacts", "ai", len(bots))
            options += [row(p) for p in bots]
        group("Online", "online", len(online))
        options += [row(p) for p in online]
        group("Offline", "offline", len(offline))
        options += [row(p) for p in offline]
        if state.blocked:
            group("Blocked", "blocked", len(state.blocked))
            options += [Option(render.buddy_line(state.person(n), blocked=True,
                                                 label=state.label(n)), id=USER + n)
                        for n in sorted(state.blocked)]
        rooms = sorted(state.group_rooms(),
                       key=lambda r: state.conversations[r].unread() == 0)
        group("Rooms", "rooms", len(rooms))
        for room in rooms:
            options.append(Option(render.room_line(room, state.conversations[room].unread(),
                                                   state.mentions_for(room)),
                                  id=ROOM + room))
        self._blocked = set(state.blocked)
        self.set_options(options)
        if keep is not None:
            try:
                self.highlighted = self.get_option_index(keep)
            except Exception:  # the row is gone (contact removed)
                self.highlighted = None

    def highlighted_user(self) -> str | None:
        option = self.highlighted_option
        if option is None or option.id is None or not option.id.startswith(USER):
            return None
        return option.id[len(USER):]

    def highlighted_room(self) -> str | None:
        option = self.highlighted_option
        if option is None or option.id is None or not option.id.startswith(ROOM):
            return None
        return option.id[len(ROOM):]

    def uses_key(self, key: str) -> bool:
        """Whether ``key`` does something on the highlighted row (b on a contact)."""
        return any(isinstance(b, Binding) and key in b.key.split(",")
                   and self.check_action(b.action, ())
                   for b in self.BINDINGS)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "remove_contact":
            name = self.highlighted_user()
            return name is not None and name not in self._blocked
        if action == "toggle_block":
            return self.highlighted_user() is not None
        if action == "leave_room":
            return self.highlighted_room() is not None
        return True

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self.refresh_bindings()  # the footer offers what works on this row

    def action_select(self) -> None:
        """Enter: open the highlighted row — or say that nothing opens. Either way the
        app learns when this Enter is done (it holds the keys typed after it)."""
        option = self.highlighted_option
        if option is not None and not option.disabled and option.id \
                and option.id.startswith((USER, ROOM)):
            self.post_message(self.Open(option.id))
        else:
            self.post_message(self.NothingToOpen())

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.post_message(self.Open(event.option.id))

    def action_remove_contact(self) -> None:
        name = self.highlighted_user()
        if name is not None and name not in self._blocked:
            self.post_message(self.ContactAction("remove", name))

    def action_leave_room(self) -> None:
        room = self.highlighted_room()
        if room is not None:
            self.post_message(self.LeaveRoom(room))

    def action_toggle_block(self) -> None:
        name = self.highlighted_user()
        if name is not None:
            self.post_message(self.ContactAction(
                "unblock" if name in self._blocked else "block", name))
