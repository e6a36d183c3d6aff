"""What a reconnect's welcome does to the rooms' member lists (no network): the lists we
had become unknown and are asked again, who joined or left meanwhile is noted once, and
rooms we are no longer in close. The live version: test_reconnect_members_live.py."""

from __future__ import annotations

from pathlib import Path

from cfm_common.client import Connected
from cfm_common.frames import Joined, Member, RoomState
from cfm_tui.config import ChatConfig
from cfm_tui.controller import ChatController
from cfm_tui.conversation import LineKind
from cfm_tui.session import ChatSession, SignIn
from cfm_tui.state import ChatState
from tests.tui.test_state import entry, signed_in, welcome

ROOM = "#trio"
ROOMS = [RoomState(ROOM, 0, 0, "e")]


def in_trio(*names: str, count: int | None = None) -> Joined:
    return Joined(ROOM, 0, "e", tuple(entry(n) for n in names), None, None, count)


def with_members(*names: str) -> ChatState:
    state = signed_in(rooms=ROOMS)
    state.apply(in_trio(*names))
    return state


def notes(state: ChatState) -> list[str]:
    return [line.text for line in state.conversations[ROOM].lines()
            if line.kind is LineKind.NOTE]


def test_a_reconnect_makes_the_members_unknown_until_asked_again():
    state = with_members("alice", "bob", "carol")
    state.on_welcome(welcome(rooms=ROOMS))
    assert state.conversations[ROOM].members is None  # no stale "3 members"
    assert state.rooms_to_refresh() == [ROOM]
    state.apply(in_trio("alice", "carol", "dave"))
    assert state.conversations[ROOM].members == {"alice", "carol", "dave"}
    assert notes(state) == ["Dave has joined the conversation.",
                            "Bob has left the conversation."]
    assert state.rooms_to_refresh() == []


def test_a_room_never_shown_is_not_asked_for():
    state = signed_in(rooms=ROOMS)  # in it, but its tab was never opened
    state.on_welcome(welcome(rooms=ROOMS))
    assert state.rooms_to_refresh() == []


def test_a_change_heard_before_the_answer_is_said_once():
    state = with_members("alice", "bob")
    state.on_welcome(welcome(rooms=ROOMS))
    state.apply(Member(ROOM, "bob", "leave"))
    state.apply(Member(ROOM, "carol", "join"))
    state.apply(in_trio("alice", "carol"))
    assert notes(state) == ["Bob has left the conversation.",
                            "carol has joined the conversation."]


def test_a_list_cut_short_notes_nobody():
    # `count`: the server listed only the first members; the others did not leave.
    state = with_members("alice", "bob", "carol")
    state.on_welcome(welcome(rooms=ROOMS))
    state.apply(in_trio("alice", "bob", count=5))
    assert notes(state) == []


def test_a_room_left_meanwhile_closes():
    state = with_members("alice", "bob")
    update = state.on_welcome(welcome(rooms=[]))
    assert ROOM not in state.conversations and update.closed == {ROOM}


def test_the_controller_asks_again_on_a_reconnect(tmp_path: Path):
    state = with_members("alice", "bob")
    session = ChatSession("ws://127.0.0.1:9/ws", SignIn("alice"), token_file=None)
    c = ChatController(state, session, config=ChatConfig(), config_path=tmp_path / "c.json")
    out = c.on_event(Connected(welcome(rooms=ROOMS)))
    assert len(out.jobs) == 1  # the join that answers with the members


def test_the_first_welcome_taken_twice_keeps_what_was_joined_in_between():
    """The sign-in hands the first welcome to the state, then the SDK's Connected event
    brings the same one: a room joined in between is not a room left while away, and
    its members are not asked again."""
    first = welcome(rooms=[])
    state = ChatState("alice")
    state.on_welcome(first)
    state.apply(in_trio("alice", "bob"))  # joined after the welcome was made
    state.on_welcome(first)
    assert state.conversations[ROOM].members == {"alice", "bob"}
    assert state.rooms_to_refresh() == []
    state.on_welcome(welcome(rooms=[]))  # a real reconnect: the room is gone
    assert ROOM not in state.conversations


def test_while_the_connection_is_down_the_dm_header_shows_no_status():
    """As the buddy list: a grey dot and no status word, not the last one known (the
    header said "(Online)" in green all through a server restart)."""
    from cfm_common import rules
    from cfm_tui.render import conversation_header

    dm = rules.dm_room("alice", "bob")
    state = signed_in(contacts=[entry("bob", "busy")], rooms=[RoomState(dm, 0, 0, "e")])
    assert "(Busy)" in conversation_header(dm, state).plain
    update = state.on_connection("reconnecting", 3.0, "closed 1012")
    assert dm in update.rooms  # redrawn
    assert "(Busy)" not in conversation_header(dm, state).plain
    state.on_welcome(welcome(contacts=[entry("bob", "busy")], rooms=[RoomState(dm, 0, 0, "e")]))
    assert "(Busy)" in conversation_header(dm, state).plain
