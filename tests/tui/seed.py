"""A fixed, believable ChatState for snapshots and demos (no server, no clock drift)."""

from __future__ import annotations

from datetime import UTC

from cfm_common import rules
from cfm_common.frames import Contact, Joined, Msg, Presence, RoomState, RosterEntry, Welcome
from cfm_tui.state import ChatState

NOW = 1_764_237_600.0  # 2025-11-27 10:00 UTC
TZ = UTC


def fixed_clock() -> float:
    return NOW


def ts(minutes: float) -> int:
    return int((NOW + minutes * 60) * 1000)


def seeded_state(*, with_request: bool = False) -> ChatState:
    state = ChatState("alice", clock=fixed_clock)
    dm_bob = rules.dm_room("alice", "bob")
    state.on_welcome(Welcome(
        1, "s1", "alice", "tok", "Alice", "online", "Listening to: Daft Punk (8)", "cfm", {},
        (RoomState(dm_bob, 4, 1, "e"), RoomState("#lobby", 2, 2, "e")),
        (
            RosterEntry("eliza", "Eliza", "online", "Tell me about your day", True),
            RosterEntry("bob", "Bob", "busy", "exams :(", False),
            RosterEntry("carol", "Carol [bold]x[/]", "away", "at lunch (B)", False),
            RosterEntry("dave", "Dave", "offline", "", False),
            RosterEntry("erin", "Erin", "online", "", False),
        ),
    ))
    state.apply(Joined("#lobby", 2, "e", (
        RosterEntry("alice", "Alice", "online", "", False),
        RosterEntry("bob", "Bob", "busy", "", False),
        RosterEntry("erin", "Erin", "online", "", False),
    )))
    for msg in (
        Msg(dm_bob, 1, "bob", "hey alice :)", ts(-12), "text", "b1"),
        Msg(dm_bob, 2, "alice", "hi bob! how are the exams? (Y)", ts(-11), "text", "a1"),
        Msg(dm_bob, 3, "bob", "awful :( but nearly done\nthree to go, then it is summer at "
            "last and we can all go to the lake for a whole week (H)", ts(-10), "text", "b2"),
        Msg(dm_bob, 4, "bob", "\x1b]0;pwned\x07[bold]not bold[/] \x1b[2Jstill here", ts(-9),
            "text", "b3"),
        Msg("#lobby", 1, "erin", "welcome to the lobby (H)", ts(-30), "text", "e1"),
        Msg("#lobby", 2, "bob", "hi all", ts(-29), "text", "b0"),
    ):
        state.apply(msg)
    state.apply(Presence("erin", "Erin", "online", "new here", False))
    if with_request:
        state.apply(Contact("added_you", "frank", "Frank", "online", "", False))
    return state
