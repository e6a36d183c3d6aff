"""A contact's account removed by the operator, as ``cfm chat``'s state and controller
take it (no network; docs/protocol.md, "A removed account"). Live, in both server
modes: tests/server/test_admin_remove_dm.py."""

from __future__ import annotations

from cfm_common.frames import Contact, Member, Presence, RoomState
from cfm_tui.controller import ChatController
from cfm_tui.conversation import LineKind
from cfm_tui.state import ChatState
from tests.tui.test_state import DM, entry, msg, signed_in, welcome

GONE = "no longer has an account"


def notes(state: ChatState) -> list[str]:
    return [line.text for line in state.conversation(DM).lines() if line.kind is LineKind.NOTE]


def with_dm() -> ChatState:
    """alice, with a DM with bob (not a contact) the server listed (its epoch known)."""
    state = signed_in(rooms=[RoomState(DM, 1, 1, "e1")])
    state.apply(msg(1))
    return state


def added_by(state: ChatState, name: str) -> None:
    state.apply(Contact("added_you", name, name.title(), "online", "", False))
    assert state.added_you == [name]


def test_a_dm_leave_says_once_that_the_account_is_gone_and_nothing_more_is_sent():
    state = with_dm()
    added_by(state, "bob")
    update = state.apply(Member(DM, "bob", "leave"))
    assert DM in update.rooms and "bob" in state.gone
    assert state.added_you == [] and not state.people["bob"].online
    state.apply(Member(DM, "bob", "leave"))  # told again (another node's copy): once
    assert [n for n in notes(state) if GONE in n] == [f"Bob {GONE} on this server: "
                                                      "nothing more can be sent here."]
    assert [m.text for m in state.conversation(DM).messages] == ["hello"]  # kept
    controller = ChatController(state)
    sent = controller.submit_draft(DM, "still there?")
    assert not sent.ok and not sent.jobs and not state.conversation(DM).pending
    assert not controller.typed(DM).jobs and not controller.send_nudge(DM).jobs


def test_a_dm_room_gone_from_the_next_welcome_is_a_removed_account():
    state = with_dm()
    state.on_welcome(welcome(contacts=[]))  # a single node, after remove-user and a restart
    assert "bob" in state.gone and any(GONE in n for n in notes(state))
    state.on_welcome(welcome(contacts=[]))  # and the next reconnect says nothing new
    assert len([n for n in notes(state) if GONE in n]) == 1


def test_a_dm_the_server_never_listed_is_not_taken_for_gone():
    state = signed_in(contacts=[entry("bob")])
    state.conversation(DM)  # opened here, nothing written yet: no room on the server
    state.on_welcome(welcome(contacts=[entry("bob")]))
    assert state.gone == set() and notes(state) == []


def test_a_contact_remove_withdraws_a_pending_request():
    state = signed_in()
    added_by(state, "carol")
    state.apply(Contact("remove", "carol", "Carol", "offline", "", False, False))
    assert state.added_you == []


def test_the_handle_in_use_again_takes_messages_again():
    state = with_dm()
    state.apply(Member(DM, "bob", "leave"))
    state.apply(Presence("bob", "Bob", "offline", "", False))  # stale: still gone
    assert "bob" in state.gone
    state.apply(Presence("bob", "Bob", "online", "", False))  # someone signed in as bob
    assert "bob" not in state.gone
    state.apply(Member(DM, "bob", "leave"))
    state.apply(msg(1, room="#lobby"))  # an old group message of the old bob: still gone
    assert "bob" in state.gone
    state.apply(msg(2))  # a new message in the DM
    assert "bob" not in state.gone


def test_a_dm_leave_for_a_conversation_not_shown_opens_nothing():
    state = signed_in()
    added_by(state, "bob")
    update = state.apply(Member(DM, "bob", "leave"))
    assert DM not in state.conversations and update.rooms == set()
    assert "bob" in state.gone and state.added_you == []


def test_a_dm_started_this_session_and_gone_from_the_next_welcome_is_a_removed_account():
    """bob wrote first in this session: the room came with no welcome or `joined`,
    only with his message; a single node's remove-user and restart drop it."""
    state = signed_in(contacts=[entry("bob")])
    state.apply(msg(1))
    state.on_welcome(welcome(contacts=[]))
    assert "bob" in state.gone and any(GONE in n for n in notes(state))
    assert not state.people["bob"].online  # not the status from before the restart


def test_the_new_holder_of_the_handle_starts_the_dm_over():
    """The new account's DM room is a new one: its seqs start at 1 again. Its messages,
    and ours to it, are shown (not dropped as duplicates of the old seqs), and the
    removed account's lines go."""
    state = with_dm()
    state.apply(msg(2, text="old two"))
    state.apply(Member(DM, "bob", "leave"))
    state.apply(Contact("added_you", "bob", "Bob", "online", "", False))  # a new bob
    controller = ChatController(state)
    assert controller.submit_draft(DM, "hi new bob").ok
    (pending,) = state.conversation(DM).pending
    state.conversation(DM).confirm(pending, 1, 1_700_000_000_500)
    state.apply(msg(2, text="hi, I am new"))
    conv = state.conversation(DM)
    assert [(m.seq, m.text) for m in conv.messages] == [(1, "hi new bob"), (2, "hi, I am new")]
    assert not any(GONE in n for n in notes(state))
    assert any("new account" in n for n in notes(state))


def test_a_superseded_dm_listed_again_by_a_welcome_starts_over():
    """The new bob wrote while we were away: the next welcome lists the room with the
    new epoch and its seqs, which are not the old room's."""
    state = signed_in(contacts=[entry("bob")])
    state.apply(msg(1))
    state.apply(msg(2, text="old two"))  # a DM of this session: no epoch known
    state.apply(Member(DM, "bob", "leave"))
    state.on_welcome(welcome(rooms=[RoomState(DM, 1, 0, "e2")]))
    conv = state.conversation(DM)
    assert conv.messages == [] and conv.epoch == "e2" and conv.latest_seq == 1
    state.apply(msg(1, text="new bob here"))
    assert [m.text for m in conv.messages] == ["new bob here"]


def test_a_superseded_dm_is_not_told_gone_again_while_the_new_holder_is_silent():
    state = with_dm()
    state.apply(Member(DM, "bob", "leave"))
    state.apply(Presence("bob", "Bob", "online", "", False))  # a new bob signed in
    state.on_welcome(welcome(contacts=[]))  # a reconnect: no DM with the new bob yet
    assert "bob" not in state.gone
    assert len([n for n in notes(state) if GONE in n]) == 1


def test_the_display_name_a_contact_frame_brings_redraws_the_dm():
    """After a live removal the DM's `member{leave}` comes before `contact{remove}`,
    whose display name the DM's header showed only once something else redrew it (the
    tab, redrawn with the list, said "New Bob", the header still "bob")."""
    state = with_dm()
    update = state.apply(Contact("remove", "bob", "New Bob", "offline", "", False, False))
    assert DM in update.rooms and state.label("bob") == "New Bob"
