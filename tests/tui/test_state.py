"""The domain state, fed the frames the SDK hands over; no Textual, no network."""

from __future__ import annotations

from cfm_common import rules
from cfm_common.frames import (
    Contact,
    Error,
    Joined,
    Member,
    Msg,
    Presence,
    Read,
    RoomState,
    RosterEntry,
    StoredMsg,
    Typing,
    Welcome,
)
from cfm_tui.conversation import LineKind
from cfm_tui.state import ChatState, Link, NoticeKind

DM = rules.dm_room("alice", "bob")


class FakeClock:
    """A clock the test moves by hand (state takes any callable)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def welcome(rooms=(), contacts=()) -> Welcome:
    return Welcome(1, "s1", "alice", "tok", "Alice", "online", "hi", "cfm", {},
                   tuple(rooms), tuple(contacts))


def entry(name, status="online", *, bot=False, blocked=None, display=None) -> RosterEntry:
    return RosterEntry(name, display or name.title(), status, f"{name}'s psm", bot, blocked)


def msg(seq, sender="bob", text="hello", room=DM, kind="text", id=None) -> Msg:
    return Msg(room, seq, sender, text, 1_700_000_000_000 + seq, kind, id)


def signed_in(**kw) -> ChatState:
    state = ChatState("alice", clock=FakeClock())
    state.on_welcome(welcome(**kw))
    return state


def test_welcome_fills_me_contacts_blocked_and_rooms():
    state = signed_in(
        rooms=[RoomState(DM, 7, 5, "e1"), RoomState("#lobby", 3, 3, "e2")],
        contacts=[entry("bob"), entry("carol", "offline"), entry("eve", blocked=True),
                  entry("eliza", bot=True)],
    )
    assert (state.me, state.display, state.status, state.psm) == ("alice", "Alice", "online", "hi")
    assert [p.name for p in state.contact_people()] == ["bob", "carol", "eliza"]
    assert state.blocked == {"eve"}
    assert state.conversations[DM].latest_seq == 7
    assert state.conversations[DM].read_mark == 5
    assert state.group_rooms() == ["#lobby"]
    assert state.connection.link is Link.CONNECTED


def test_messages_are_ordered_and_deduplicated_by_seq():
    state = signed_in()
    for seq in (3, 1, 2, 3, 1):
        state.apply(msg(seq, text=f"m{seq}"))
    lines = state.conversations[DM].lines()
    assert [line.text for line in lines] == ["m1", "m2", "m3"]
    assert state.unread_for("bob") == 3


def test_a_duplicate_message_changes_nothing_and_tells_nobody():
    state = signed_in()
    assert state.apply(msg(1)).notices
    again = state.apply(msg(1))
    assert not again.notices and not again.rooms


def test_message_from_someone_else_is_a_notice_own_is_not():
    state = signed_in()
    update = state.apply(msg(1, sender="bob", text="hey there"))
    assert [(n.kind, n.who, n.room, n.text) for n in update.notices] == [
        (NoticeKind.MESSAGE, "bob", DM, "hey there")
    ]
    assert state.apply(msg(2, sender="alice")).notices == []


def test_nudge_message_is_a_nudge_notice_and_line():
    state = signed_in()
    update = state.apply(msg(1, kind="nudge", text=""))
    assert update.notices[0].kind is NoticeKind.NUDGE
    assert state.conversations[DM].lines()[0].kind is LineKind.NUDGE


def test_pending_send_becomes_a_message_on_ack_and_is_never_shown_twice():
    state = signed_in()
    conv = state.dm_with("bob")
    conv.add_pending("id-1", "queued while offline", 5)
    assert [(line.kind, line.text) for line in conv.lines()] == [
        (LineKind.PENDING, "queued while offline")
    ]
    conv.confirm("id-1", seq=4, ts=6)
    # The same message coming back as an event (another session's catch-up) is a no-op.
    state.apply(msg(4, sender="alice", text="queued while offline", id="id-1"))
    assert [(line.kind, line.seq) for line in conv.lines()] == [(LineKind.SAY, 4)]
    assert conv.read_mark == 4


def test_own_message_event_clears_the_matching_pending_line():
    state = signed_in()
    conv = state.dm_with("bob")
    conv.add_pending("id-9", "hello", 5)
    state.apply(msg(1, sender="alice", text="hello", id="id-9"))
    assert [line.kind for line in conv.lines()] == [LineKind.SAY]


def test_failed_send_turns_into_a_note():
    state = signed_in()
    conv = state.dm_with("bob")
    conv.add_pending("x", "you there?", 5)
    conv.fail("x", "blocked", 6)
    [line] = conv.lines()
    assert line.kind is LineKind.NOTE and "you there?" in line.text


def test_notes_stay_after_the_message_they_followed():
    state = signed_in()
    conv = state.dm_with("bob")
    state.apply(msg(1, text="first"))
    conv.note("You can't send a nudge that often.", 0)
    state.apply(msg(2, text="second"))
    assert [line.text for line in conv.lines()] == [
        "first", "You can't send a nudge that often.", "second"
    ]


def test_history_pages_merge_and_stop_when_there_is_no_more():
    state = signed_in(rooms=[RoomState(DM, 60, 60, "e")])
    conv = state.conversations[DM]
    assert conv.can_load_older  # nothing loaded, but the room has messages
    page = [StoredMsg(DM, s, "bob", f"m{s}", s, "text", None) for s in range(11, 61)]
    conv.add_history(page, more=True)
    assert conv.oldest_seq == 11 and conv.can_load_older
    conv.add_history([StoredMsg(DM, s, "bob", "", s, "text", None) for s in range(1, 11)],
                     more=False)
    assert conv.oldest_seq == 1 and not conv.can_load_older
    assert len(conv.lines()) == 60


def test_mark_seen_returns_the_seq_to_send_once():
    state = signed_in()
    state.apply(msg(1))
    state.apply(msg(2))
    conv = state.conversations[DM]
    assert conv.mark_seen() == 2
    assert conv.mark_seen() is None
    assert state.unread_for("bob") == 0


def test_read_from_own_other_session_clears_unread_and_peer_read_is_kept():
    state = signed_in()
    state.apply(msg(1))
    state.apply(msg(2))
    state.apply(Read(DM, "alice", 2))
    assert state.unread_for("bob") == 0
    state.apply(Read(DM, "bob", 2))
    assert state.conversations[DM].peer_read == 2


def test_typing_expires_and_stops_when_the_typist_speaks():
    clock = FakeClock()
    state = ChatState("alice", clock=clock)
    state.on_welcome(welcome())
    state.apply(Typing(DM, "bob"))
    conv = state.conversations[DM]
    assert conv.typing_names(clock()) == ["bob"]
    clock.now += 6
    assert conv.typing_names(clock()) == []
    state.apply(Typing(DM, "bob"))
    state.apply(msg(1))
    assert conv.typing_names(clock()) == []
    # Our own typing (another session) is not shown.
    state.apply(Typing(DM, "alice"))
    assert conv.typing_names(clock()) == []


def test_contact_signing_in_is_a_notice_only_on_the_transition():
    state = signed_in(contacts=[entry("bob", "offline")])
    update = state.apply(Presence("bob", "Bob", "online", "", False))
    assert [n.kind for n in update.notices] == [NoticeKind.SIGNED_IN]
    assert state.apply(Presence("bob", "Bob", "busy", "", False)).notices == []
    assert state.person("bob").status == "busy"
    # A room member who is not a contact signs in silently.
    assert state.apply(Presence("zed", "Zed", "online", "", False)).notices == []


def test_own_presence_updates_me():
    state = signed_in()
    update = state.apply(Presence("alice", "Alice!", "away", "brb", False))
    assert update.me and (state.display, state.status, state.psm) == ("Alice!", "away", "brb")


def test_contact_ops_and_the_added_you_request():
    state = signed_in()
    update = state.apply(Contact("added_you", "bob", "Bob", "online", "", False))
    assert [n.kind for n in update.notices] == [NoticeKind.ADDED_YOU]
    assert state.added_you == ["bob"]
    state.apply(Contact("add", "bob", "Bob", "online", "", False))
    assert state.contacts == {"bob"} and state.added_you == []
    state.apply(Contact("block", "bob"))
    assert state.blocked == {"bob"} and state.contact_people() == []
    state.apply(Contact("unblock", "bob"))
    assert state.blocked == set() and [p.name for p in state.contact_people()] == ["bob"]
    state.apply(Contact("add", "carol", "Carol", "offline", "", False))
    state.apply(Contact("remove", "carol"))
    assert state.contacts == {"bob"}


def test_group_room_members_join_and_leave_with_notes():
    state = signed_in()
    state.apply(Joined("#lobby", 0, "e", (entry("alice"), entry("bob")), None, None))
    conv = state.conversations["#lobby"]
    assert conv.members == {"alice", "bob"}
    state.apply(Member("#lobby", "carol", "join"))
    state.apply(Member("#lobby", "bob", "leave"))
    assert conv.members == {"alice", "carol"}
    assert [line.text for line in conv.lines()] == [
        "carol has joined the conversation.", "Bob has left the conversation."
    ]


def test_epoch_change_resets_the_transcript():
    state = signed_in(rooms=[RoomState(DM, 2, 0, "old")])
    state.apply(msg(1))
    state.apply(msg(2))
    state.on_welcome(welcome(rooms=[RoomState(DM, 1, 0, "new")]))
    conv = state.conversations[DM]
    assert conv.messages == [] and conv.epoch == "new"
    state.apply(msg(1, text="after reset"))
    assert [line.text for line in conv.lines()] == ["after reset"]


def test_connection_text():
    state = ChatState("alice")
    assert state.connection.describe() == "Connecting…"
    state.on_connection("RECONNECTING", 3.2, "closed 1012")
    assert state.connection.describe() == "Reconnecting in 3 s…"
    state.on_connection("reconnecting", 0.1)
    assert state.connection.describe() == "Reconnecting…"
    state.on_connection("closed")
    assert state.connection.describe() == "Disconnected"


def test_a_session_ended_by_the_server_says_why_and_we_show_as_offline():
    state = signed_in()
    assert state.shown_status == "online"
    why = "Signed out by the server (token replaced by the operator): ask the operator."
    update = state.on_connection("closed", None, "disconnected: closed with code 4003", why)
    assert state.connection.describe() == why
    assert [(n.kind, n.text) for n in update.notices] == [(NoticeKind.ERROR, why)]
    assert update.me and update.roster  # the header and the list: offline, grey
    assert state.shown_status == "offline" and state.status == "online"  # chosen: kept
    # Only a close ends the session: the reason of a reconnect is not shown as one.
    update = state.on_connection("reconnecting", 3.0, "closed 1012", why)
    assert state.connection.describe() == "Reconnecting in 3 s…" and not update.notices
    state.on_welcome(welcome())
    assert state.shown_status == "online"


def test_errors_become_notices():
    state = signed_in()
    update = state.apply(Error("internal", "something broke"))
    assert update.notices[0].kind is NoticeKind.ERROR


def test_labels_prefer_display_names():
    state = signed_in(contacts=[entry("bob", display="Bobby")])
    assert state.label("bob") == "Bobby"
    assert state.label("alice") == "Alice"
    assert state.label("stranger") == "stranger"


def test_no_signed_in_notice_for_contacts_back_after_our_reconnect():
    # A server restart: every client reconnects, contacts come back one by one.
    state = signed_in(contacts=[entry("bob"), entry("carol", "offline")])
    state.on_connection("reconnecting", 1.0)
    state.on_welcome(welcome(contacts=[entry("bob", "offline"), entry("carol", "offline")]))
    assert state.apply(Presence("bob", "Bob", "online", "", False)).notices == []
    # carol was offline before the drop: her sign-in is news.
    update = state.apply(Presence("carol", "Carol", "online", "", False))
    assert [n.kind for n in update.notices] == [NoticeKind.SIGNED_IN]
    # Once bob is back, a later sign-in of his is news again.
    state.apply(Presence("bob", "Bob", "offline", "", False))
    update = state.apply(Presence("bob", "Bob", "online", "", False))
    assert [n.kind for n in update.notices] == [NoticeKind.SIGNED_IN]


def test_the_reconnect_grace_runs_out():
    state = signed_in(contacts=[entry("bob")])
    state.on_connection("reconnecting", 1.0)
    state.on_welcome(welcome(contacts=[entry("bob", "offline")]))
    state.clock.now += 3600  # bob only comes back an hour later: that is news
    update = state.apply(Presence("bob", "Bob", "online", "", False))
    assert [n.kind for n in update.notices] == [NoticeKind.SIGNED_IN]


def _seen_after(state: ChatState, room: str) -> list[str]:
    """Each transcript line's text, "Seen" included, in order."""
    return [line.text for line in state.conversation(room).lines()]


def test_seen_sits_under_the_newest_own_message_the_peer_has_read():
    state = ChatState("alice")
    for seq, sender, text in ((1, "bob", "hi"), (2, "alice", "one"), (3, "alice", "two"),
                              (4, "bob", "ok")):
        state.apply(Msg(DM, seq, sender, text, seq, "text", f"m{seq}"))
    # bob has read only his own message: nothing of ours is seen.
    state.apply(Read(DM, "bob", 1))
    assert "Seen" not in _seen_after(state, DM)
    state.apply(Read(DM, "bob", 2))
    assert _seen_after(state, DM) == ["hi", "one", "Seen", "two", "ok"]
    seen = [line for line in state.conversation(DM).lines() if line.kind is LineKind.SEEN]
    assert len(seen) == 1 and seen[0].seq == 2
    # Reading further moves it; past our last message it stays under that one.
    state.apply(Read(DM, "bob", 4))
    assert _seen_after(state, DM) == ["hi", "one", "two", "Seen", "ok"]


def test_seen_only_in_one_to_one_conversations():
    state = ChatState("alice")
    state.apply(Msg("#lobby", 1, "alice", "hello room", 1, "text", "a1"))
    state.apply(Read("#lobby", "bob", 1))
    assert "Seen" not in _seen_after(state, "#lobby")
    # Our own read mark from another session is no "Seen" either.
    state.apply(Msg(DM, 1, "alice", "hi", 1, "text", "a2"))
    state.apply(Read(DM, "alice", 1))
    assert "Seen" not in _seen_after(state, DM)


def test_seen_is_forgotten_when_the_room_is_reset():
    state = ChatState("alice")
    state.apply(Msg(DM, 1, "alice", "hi", 1, "text", "a1"))
    state.apply(Read(DM, "bob", 1))
    assert "Seen" in _seen_after(state, DM)
    state.conversation(DM).reset("new-epoch")
    state.apply(Msg(DM, 1, "alice", "again", 2, "text", "a2"))
    assert "Seen" not in _seen_after(state, DM)


def test_seen_renders_as_its_own_dim_line():
    from datetime import UTC

    from cfm_tui import render

    state = ChatState("alice")
    state.apply(Msg(DM, 1, "alice", "one", 0, "text", "a1"))
    state.apply(Msg(DM, 2, "alice", "two", 0, "text", "a2"))
    state.apply(Read(DM, "bob", 1))
    text = render.transcript(state.conversation(DM).lines(), state, UTC).plain
    lines = text.split("\n")
    assert lines[1:] == ["  one", "  Seen", "alice says (00:00):", "  two"]


def test_a_new_minute_starts_a_new_says_header():
    """Each "X says (hh:mm):" header only covers lines said in that minute: a message
    queued and sent four minutes later is not shown under the earlier time."""
    from datetime import UTC

    from cfm_tui import render

    def at(h: int, m: int, s: int = 0) -> int:
        return ((h * 60 + m) * 60 + s) * 1000

    state = ChatState("alice")
    state.apply(Msg(DM, 1, "bob", "first", at(3, 35, 10), "text", "b1"))
    state.apply(Msg(DM, 2, "bob", "same minute", at(3, 35, 50), "text", "b2"))
    state.apply(Msg(DM, 3, "bob", "queued", at(3, 39, 5), "text", "b3"))
    lines = render.transcript(state.conversation(DM).lines(), state, UTC).plain.split("\n")
    assert lines == ["bob says (03:35):", "  first", "  same minute",
                     "bob says (03:39):", "  queued"]


def test_the_reconnect_countdown_ticks():
    now = [100.0]
    state = ChatState("alice", clock=lambda: now[0])
    state.on_connection("reconnecting", 16.0)
    assert state.connection.describe(now[0]) == "Reconnecting in 16 s…"
    now[0] += 1.0
    assert state.connection.describe(now[0]) == "Reconnecting in 15 s…"
    now[0] += 14.8
    assert state.connection.describe(now[0]) == "Reconnecting…"
    assert state.connection.counting_down(now[0]) is False


def test_names_that_could_be_confused_show_the_handle():
    """Two contacts called "Echo", or carol calling herself "alice": the handle is added
    wherever the name is shown (list, tabs, transcript)."""
    from cfm_tui import render

    state = ChatState("me")
    state.on_welcome(Welcome(1, "s", "me", "t", "Me", "online", "", "cfm", {}, (), (
        RosterEntry("echo1", "Echo", "online", "", False),
        RosterEntry("echo2", "echo", "online", "", False),
        RosterEntry("carol", "alice", "online", "", False),
        RosterEntry("alice", "Alice", "online", "", False),
        RosterEntry("bob", "Bob", "online", "", False),
        RosterEntry("dave", "dave", "online", "", False),
    )))
    assert state.label("echo1") == "Echo <echo1>"
    assert state.label("echo2") == "echo <echo2>"
    assert state.label("carol") == "alice <carol>"
    assert state.label("alice") == "Alice <alice>"
    assert state.label("bob") == "Bob"
    assert state.label("dave") == "dave"  # a display name equal to its own handle
    room = state.dm_with("echo2").room
    assert render.conversation_title(room, state) == "echo <echo2>"
    assert render.buddy_line(state.person("carol"), label=state.label("carol")).plain \
        .startswith("  ● alice <carol>")
    state.apply(Msg(rules.dm_room("me", "carol"), 1, "carol", "hi", 0, "text", "c1"))
    text = render.transcript(state.conversation(rules.dm_room("me", "carol")).lines(), state,
                             None).plain
    assert text.startswith("alice <carol> says")


def test_a_me_message_is_an_action_line_for_everyone():
    from datetime import UTC

    from cfm_tui import render

    state = ChatState("bob")
    room = rules.dm_room("alice", "bob")
    state.apply(Msg(room, 1, "alice", "hi", 0, "text", "a1"))
    state.apply(Msg(room, 2, "alice", "* alice waves (Y)", 0, "text", "a2"))
    state.apply(Msg(room, 3, "alice", "still me", 0, "text", "a3"))
    state.apply(Msg(room, 4, "bob", "* alice is not bob", 0, "text", "b1"))  # no spoofing
    lines = render.transcript(state.conversation(room).lines(), state, UTC).plain.split("\n")
    assert lines == ["alice says (00:00):", "  hi", "* alice waves 👍",
                     "alice says (00:00):", "  still me",
                     "bob says (00:00):", "  * alice is not bob"]


def test_statuses_are_stale_while_the_connection_is_down():
    from cfm_tui import render

    state = signed_in(contacts=[entry("bob", "busy")])
    assert not state.presence_stale
    update = state.on_connection("reconnecting", 3.0)
    assert state.presence_stale and update.roster  # the list is redrawn: grey dots
    assert not state.on_connection("reconnecting", 1.0).roster  # still down: nothing new
    bob = state.person("bob")
    line = render.buddy_line(bob, stale=True)
    assert "(Busy)" not in line.plain and "(Busy)" in render.buddy_line(bob).plain

    def dot_colour(text) -> str:
        return next(span.style.color.name for span in text.spans if span.start == 2)

    assert dot_colour(line) == render.STATUS_COLOURS["offline"]  # grey: unknown
    assert dot_colour(render.buddy_line(bob)) == render.STATUS_COLOURS["busy"]
    update = state.on_welcome(welcome(contacts=[entry("bob", "busy")]))
    assert not state.presence_stale and update.roster


def test_a_member_change_before_the_member_list_does_not_make_one():
    # A room we were in before this sign-in: no `joined` yet, so no member list; one
    # `member` frame is not the list ("1 member" in a room of three).
    state = ChatState("alice")
    state.conversation("#trio")
    state.apply(Member("#trio", "dave", "join"))
    conv = state.conversations["#trio"]
    assert conv.members is None
    assert any("dave has joined" in line.text for line in conv.lines())
