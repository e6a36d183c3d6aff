"""Every messenger command the palette (Ctrl+P) lists, for the state as it is now.

Pure: :func:`entries` returns titles with an :class:`Intent` each — what to do, as data.
The palette's provider (:mod:`cfm_tui.commands`) posts the chosen intent as a message;
the main screen does those that are layout or a question, ``ChatController.run_intent``
the others (``quit``: the app). Titles hold contact names, which are untrusted: they are
cleaned here and never read as markup there.
"""

from __future__ import annotations

from dataclasses import dataclass

from cfm_common import rules
from cfm_tui import render
from cfm_tui.sanitize import clean_line
from cfm_tui.state import ChatState, Link


@dataclass(frozen=True, slots=True)
class Intent:
    """``action`` names what to do; ``arg`` whom or where (a handle, a room, a status).

    The screens post intents too (``seen`` when a conversation comes on screen,
    ``nudge``, ``psm``, the answers to their questions): one vocabulary for both."""

    action: str
    arg: str = ""
    # For what is done to one message (reply, react, edit, delete, jump): its seq in the
    # room ``arg``, and the emoji or the text.
    seq: int = 0
    value: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    title: str
    intent: Intent
    help: str


def entries(state: ChatState, open_rooms: list[str], active_room: str | None,
            selected: int | None = None) -> list[Entry]:
    """The commands for ``state``, with the open tabs (in order), the active one and the
    message selected in it (F7), if any."""
    out = [
        Entry("Add a contact…", Intent("ask_contact"), "Add someone by their handle"),
        Entry("Join a group room…", Intent("ask_room"), "Join or create a #room"),
        Entry("Switch between buddy list and conversation", Intent("switch_pane"),
              "One pane at a time on narrow terminals (F2)"),
        Entry("Edit personal message", Intent("edit_psm"), "What your contacts see"),
        Entry("Change display name", Intent("ask_display"),
              "The name your contacts see (/name)"),
        Entry("Search messages…", Intent("search_screen"), "In every conversation (Ctrl+F)"),
    ]
    if state.connection.link is Link.RECONNECTING:
        out.append(Entry("Reconnect now", Intent("reconnect"),
                         "Try the server at once (/reconnect)"))
    out += [
        Entry("Toggle desktop notifications", Intent("toggle_desktop"),
              "OSC 9 notifications through the terminal"),
        Entry("Toggle the bell", Intent("toggle_bell"), "Ring on nudges and new messages"),
        Entry("Quit", Intent("quit"), "Sign out and leave"),
    ]
    for number, room in enumerate(open_rooms, 1):
        title = clean_line(render.conversation_title(room, state))
        key = f"Alt+{number}, " if number < 10 else ""
        out.append(Entry(f"Go to {title}" if rules.is_group_room(room)
                         else f"Go to conversation with {title}", Intent("go_to", room),
                         f"{key}Ctrl+PageUp/PageDown: previous/next tab"))
    if active_room is not None:
        conv = state.conversations.get(active_room)
        if conv is not None and conv.peer is not None:
            out.append(Entry("Send a nudge", Intent("nudge", active_room),
                             "Shake their window (Ctrl+G)"))
        out.append(Entry("Close this conversation", Intent("close", active_room), "F4"))
        out += message_entries(state, active_room, selected)
        if conv is not None and conv.is_group:
            out.append(Entry(f"Leave {active_room}", Intent("leave", active_room),
                             "End your membership of the room"))
    for status, label in rules.STATUS_LABELS.items():
        if status is not rules.Status.OFFLINE:
            out.append(Entry(f"Status: {label}", Intent("status", status.value),
                             "Change your status"))
    for name in state.added_you:  # the "has added you" prompt's answers
        label = clean_line(state.label(name))
        out += [
            Entry(f"Add {label} ({name}) back", Intent("add", name),
                  "They added you to their contact list"),
            Entry(f"Block {label} ({name})", Intent("block", name),
                  "They added you; they won't reach you"),
            Entry(f"Not now: {label} ({name})", Intent("dismiss", name),
                  "Answer their request later"),
        ]
    for person in state.contact_people():
        label = clean_line(person.label)
        out += [
            Entry(f"Chat with {label} ({person.name})", Intent("chat", person.name),
                  "Open a DM"),
            Entry(f"Remove {label} ({person.name})", Intent("remove", person.name),
                  "From your contacts"),
            Entry(f"Block {label} ({person.name})", Intent("block", person.name),
                  "They can't reach you"),
        ]
    for name in sorted(state.blocked):
        out.append(Entry(f"Unblock {name}", Intent("unblock", name), "Let them reach you again"))
    for room in state.group_rooms():
        out.append(Entry(f"Open {room}", Intent("open_room", room), "Group room"))
    return out


def message_entries(state: ChatState, room: str, selected: int | None) -> list[Entry]:
    """Picking a message in the active conversation, and acting on the one picked."""
    conv = state.conversations.get(room)
    if conv is None or not conv.selectable():
        return []
    out = [Entry("Select a message", Intent("select", room),
                 "Then reply, react, edit or delete it (F7; Up/Down, Enter)")]
    if conv.last_own() is not None:
        out.append(Entry("Edit your last message", Intent("edit_last", room),
                         "Up in an empty composer"))
    msg = conv.message(selected) if selected is not None else None
    if msg is None or msg.deleted:
        return out
    mine = msg.sender == state.me
    for action, title, key in (("reply", "Reply to", "r"), ("react", "React to", "a"),
                               ("edit", "Edit", "e"), ("delete", "Delete", "d")):
        if action == "edit" and not mine:
            continue
        if action == "delete" and not (mine or conv.is_group):
            continue
        out.append(Entry(f"{title} the selected message", Intent("message_do", room, msg.seq,
                                                                  action), f"{key} in select mode"))
    return out
