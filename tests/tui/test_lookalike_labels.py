"""Look-alike display names show the handle: the TUI compares names by their skeleton
(Cyrillic letters, zero-width and blank-looking characters, fullwidth forms, I for l)."""

from __future__ import annotations

import pytest

from cfm_common.frames import RosterEntry, Welcome
from cfm_tui.state import ChatState


def state_with(*entries: RosterEntry) -> ChatState:
    state = ChatState("me")
    state.on_welcome(Welcome(1, "s", "me", "t", "Me", "online", "", "cfm", {}, (), entries))
    return state


@pytest.mark.parametrize("fake", [
    "Alice Liddell\u200b",  # stored before invisible characters were refused
    "\u0410lice Liddell",  # Cyrillic A
    "Alice\u3164Liddell",  # Hangul filler, looks like a space
    "AIice Liddell",  # capital I for l
    "\uff21lice Liddell",  # fullwidth A
    "alice  liddell",
])
def test_a_lookalike_of_a_contacts_name_shows_its_handle(fake: str) -> None:
    state = state_with(RosterEntry("alice", "Alice Liddell", "online", "", False),
                       RosterEntry("mallory", fake, "online", "", False))
    assert state.label("mallory") == f"{fake} <mallory>"
    assert state.label("alice") == "Alice Liddell <alice>"


def test_a_display_name_that_passes_for_a_handle_shows_its_own() -> None:
    state = state_with(RosterEntry("smartybot", "SmartyBot", "online", "", True),
                       RosterEntry("bob", "smarty_b0t", "online", "", True))
    assert state.label("bob") == "smarty_b0t <bob>"


def test_different_names_stay_bare() -> None:
    state = state_with(RosterEntry("alice", "Alice Liddell", "online", "", False),
                       RosterEntry("bob", "Bob", "online", "", False))
    assert state.label("bob") == "Bob"
    assert state.label("alice") == "Alice Liddell"
