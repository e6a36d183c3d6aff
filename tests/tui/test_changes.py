"""Message changes in cfm chat's state, rendering, policy and controller (no Textual):
edits, deletes, reactions, replies, mentions, unread counts, search parts."""

from __future__ import annotations

from cfm_common import rules
from cfm_common.frames import Msg, Reaction, RoomState, StoredMsg, Welcome
from cfm_tui import palette, render, slash
from cfm_tui.alerts import Alert, NotificationPolicy
from cfm_tui.changes import apply_change
from cfm_tui.config import ChatConfig
from cfm_tui.controller import ChatController
from cfm_tui.conversation import Conversation, LineKind
from cfm_tui.outcome import run_all
from cfm_tui.palette import Intent
from cfm_tui.state import ChatState, Notice, NoticeKind
from tests.tui.seed import TZ, seeded_state, ts

LOBBY = "#lobby"
BOB = rules.dm_room("alice", "bob")


def msg(seq: int, sender: str, text: str, **kw) -> Msg:
    return Msg(LOBBY, seq, sender, text, ts(seq), "text", f"{sender}-{seq}", **kw)


def change(seq: int, sender: str, kind: str, target: int, text: str = "",
           emoji: str | None = None) -> Msg:
    return msg(seq, sender, text, change=kind, target=target, emoji=emoji)


def lobby(*msgs: Msg) -> Conversation:
    conv = Conversation(LOBBY, "alice")
    for m in msgs:
        conv.add_message(m)
    return conv


# --- change entries --------------------------------------------------------------------

def test_change_entries_change_their_target_and_are_never_lines_of_their_own():
    conv = lobby(msg(1, "bob", "helo"), msg(2, "carol", "hi"),
                 change(3, "bob", "edit", 1, "hello"),
                 change(4, "carol", "react", 1, "👍", "👍"),
                 change(5, "alice", "react", 1, "👍", "👍"),
                 change(6, "carol", "delete", 2))
    lines = conv.lines()
    assert [line.seq for line in lines] == [1, 2]
    first, second = lines
    assert (first.text, first.edited) == ("hello", True)
    assert first.reactions == (("👍", ("carol", "alice")),)
    assert (second.text, second.deleted) == ("", True)
    assert conv.latest_seq == 6  # the entries take their seqs: the next join{since} is right


def test_unreact_removes_a_name_and_the_emoji_with_its_last_name():
    conv = lobby(msg(1, "bob", "x"), change(2, "carol", "react", 1, "😂", "😂"),
                 change(3, "dave", "react", 1, "😂", "😂"),
                 change(4, "carol", "unreact", 1, "", "😂"))
    assert conv.lines()[0].reactions == (("😂", ("dave",)),)
    conv.add_message(change(5, "dave", "unreact", 1, "", "😂"))
    assert conv.lines()[0].reactions == ()


def test_a_tombstone_takes_no_further_change_and_loses_its_reactions_and_mentions():
    conv = lobby(msg(1, "bob", "@alice hi", mentions=("alice",)),
                 change(2, "carol", "react", 1, "👍", "👍"), change(3, "bob", "delete", 1),
                 change(4, "bob", "edit", 1, "back again"))
    line = conv.lines()[0]
    assert (line.deleted, line.text, line.reactions, line.mentions_me) == (True, "", (), False)
    assert conv.unread() == 0 and conv.unread_mentions() == 0


def test_a_replay_over_messages_in_their_current_state_ends_where_an_online_client_is():
    """Offline during an edit, a delete and reactions: the page shows the current state,
    and the replayed entries change nothing more (they are idempotent in seq order)."""
    online = lobby(msg(1, "bob", "helo"), msg(2, "bob", "oops"),
                   change(3, "bob", "edit", 1, "hello"), change(4, "bob", "delete", 2),
                   change(5, "carol", "react", 1, "👍", "👍"))
    resumed = Conversation(LOBBY, "alice")
    page = (StoredMsg(LOBBY, 1, "bob", "hello", ts(1), "text", "bob-1", edited=ts(3),
                      reactions=(Reaction("👍", ("carol",)),)),
            StoredMsg(LOBBY, 2, "bob", "", ts(2), "text", "bob-2", deleted=True))
    resumed.add_history(page, more=False)
    for entry in (change(3, "bob", "edit", 1, "hello"), change(4, "bob", "delete", 2),
                  change(5, "carol", "react", 1, "👍", "👍")):
        resumed.add_message(entry)
    assert resumed.lines() == online.lines()


def test_an_entry_for_a_message_not_held_is_skipped():
    conv = lobby(msg(5, "bob", "new"), change(6, "bob", "edit", 2, "fixed"))
    assert [line.seq for line in conv.lines()] == [5]
    assert conv.latest_seq == 6


def test_apply_change_is_idempotent():
    m = msg(1, "bob", "x")
    once = apply_change(m, change(2, "carol", "react", 1, "👍", "👍"))
    assert apply_change(once, change(2, "carol", "react", 1, "👍", "👍")) is once


# --- replies ---------------------------------------------------------------------------

def test_a_reply_carries_the_answered_line_or_asks_for_it():
    conv = lobby(msg(1, "bob", "lunch?\nat noon"), msg(5, "carol", "yes", reply=1),
                 msg(6, "carol", "and you?", reply=3))
    lines = {line.seq: line for line in conv.lines()}
    assert lines[5].quote is not None and lines[5].quote.text == "lunch?\nat noon"
    assert lines[6].reply == 3 and lines[6].quote is None
    assert conv.missing_quotes() == {3}
    conv.quotes[3] = msg(3, "dave", "hungry")
    assert conv.missing_quotes() == set()


# --- unread and mentions ----------------------------------------------------------------

def test_unread_leaves_out_tombstones_and_change_entries_and_counts_mentions():
    conv = lobby(msg(1, "bob", "a"), msg(2, "bob", "@alice b", mentions=("alice",)),
                 msg(3, "bob", "c"), change(4, "bob", "delete", 3),
                 change(5, "carol", "react", 1, "👍", "👍"))
    assert conv.unread() == 2
    assert conv.unread_mentions() == 1


def test_welcome_counts_stand_for_what_is_not_loaded_until_the_mark_moves():
    state = ChatState("alice")
    state.on_welcome(Welcome(1, "s", "alice", "t", "", "online", "", "x", {},
                             (RoomState(LOBBY, 48, 40, "e", 5, 1),), ()))
    conv = state.conversations[LOBBY]
    assert (conv.unread(), conv.unread_mentions()) == (5, 1)
    state.apply(msg(49, "bob", "@alice more", mentions=("alice",)))
    assert (conv.unread(), conv.unread_mentions()) == (6, 2)
    conv.mark_seen()
    assert (conv.unread(), conv.unread_mentions()) == (0, 0)


def test_a_message_that_mentions_me_is_a_mention_notice_and_a_change_no_notice():
    state = ChatState("alice")
    update = state.apply(msg(1, "bob", "@alice look", mentions=("alice",)))
    assert [n.kind for n in update.notices] == [NoticeKind.MENTION]
    assert state.apply(change(2, "bob", "edit", 1, "@alice look!")).notices == []
    assert state.apply(msg(3, "bob", "@carol hi", mentions=("carol",))).notices[0].kind \
        is NoticeKind.MESSAGE


def test_a_mention_toasts_and_rings_every_time_even_in_a_busy_room():
    now = [0.0]
    policy = NotificationPolicy(ChatConfig(bell=True), clock=lambda: now[0])
    state = seeded_state()
    said = Notice(NoticeKind.MESSAGE, "bob", LOBBY, "hi all")
    named = Notice(NoticeKind.MENTION, "bob", LOBBY, "@alice look (Y)")
    assert policy.decide(said, state).text == "Bob says: hi all"
    assert policy.decide(said, state) == Alert()  # the same second: quiet
    assert policy.decide(named, state) == Alert("Bob mentioned you in #lobby: @alice look 👍",
                                                ring=True)
    assert policy.decide(named, state).ring
    assert policy.decide(named, state, in_view=True) == Alert()


def test_unread_conversations_sort_first_and_counts_show_mentions():
    state = seeded_state()
    for room in ("#games", "#zoo"):
        state.conversation(room)
    state.apply(Msg("#zoo", 1, "bob", "@alice hey", ts(1), "text", "z1", mentions=("alice",)))
    # The order the buddy list uses (sorted is stable: by name among equals).
    rooms = sorted(state.group_rooms(), key=lambda r: state.conversations[r].unread() == 0)
    assert rooms[0] == "#zoo"
    assert render.room_line("#zoo", 1, state.mentions_for("#zoo")).plain == "  # zoo (1 @1)"
    assert render.counts(150, 0).plain == " (99+)"


# --- rendering at 80 columns ------------------------------------------------------------

def test_the_transcript_shows_edits_tombstones_quotes_reactions_and_mentions():
    state = seeded_state()
    conv = state.conversation(LOBBY)
    for m in (msg(3, "bob", "lunch at noon?"), msg(4, "erin", "yes!", reply=3),
              change(5, "bob", "edit", 3, "lunch at one?"),
              msg(6, "bob", "@alice coming?", mentions=("alice",)),
              change(7, "erin", "react", 6, "(Y)", "(Y)"),
              change(8, "alice", "react", 6, "👍", "👍"),
              msg(9, "erin", "wrong window"), change(10, "erin", "delete", 9)):
        state.apply(m)
    text = render.transcript(conv.lines(), state, TZ, width=78, selected=6)
    plain = text.plain
    assert "  lunch at one? (edited)" in plain
    assert "  ┆ Bob: lunch at one?" in plain
    assert "  👍 1  👍 1" in plain  # the code as cfm shows it, and the emoji itself
    assert "  message deleted" in plain and "wrong window" not in plain
    mention = plain.index("@alice coming?")
    assert any(span.style == render.MENTION_STYLE and span.start <= mention < span.end
               for span in text.spans)
    assert any(span.style == render.SELECTED_STYLE and span.start <= mention < span.end
               for span in text.spans)
    assert all(len(line) <= 78 for line in plain.split("\n"))


def test_a_quote_is_one_line_cut_to_the_width():
    state = seeded_state()
    conv = state.conversation(LOBBY)
    state.apply(msg(3, "bob", "word " * 40))
    state.apply(msg(4, "erin", "ok", reply=3))
    line = next(line for line in conv.lines() if line.seq == 4)
    quote = render.quote_line(line, state, 40)
    assert quote.endswith("…") and len(quote) == 40
    deleted = render.quote_line(line.__class__(LineKind.SAY, "ok", 0, "erin", 4, reply=3,
                                               quote=msg(3, "bob", "", deleted=True)),
                                state, 80)
    assert deleted == "  ┆ Bob: message deleted"


# --- the controller, without a server ---------------------------------------------------

def controller() -> ChatController:
    return ChatController(seeded_state(), None)


def test_an_edit_to_nothing_is_refused_and_the_same_text_is_not_sent():
    c = controller()
    refused = c.submit_draft(BOB, "   ", edit=2)
    assert not refused.ok and "cannot be empty" in c.state.conversations[BOB]._notes[-1].text
    same = c.submit_draft(BOB, "hi bob! how are the exams? (Y)", edit=2)
    assert same.ok and same.jobs == []
    assert len(c.submit_draft(BOB, "hi bob!", edit=2).jobs) == 1


def test_a_reply_is_pending_with_what_it_answers():
    c = controller()
    c.submit_draft(BOB, "same here", reply=3)
    pending = c.state.conversations[BOB].lines()[-1]
    assert (pending.kind, pending.reply) == (LineKind.PENDING, 3)
    assert pending.quote is not None and pending.quote.sender == "bob"


def test_the_last_own_message_is_the_one_up_edits():
    c = controller()
    assert c.messages.last_own(BOB) == (2, "hi bob! how are the exams? (Y)")
    c.state.apply(Msg(BOB, 5, "alice", "", ts(5), "text", "a9", change="delete", target=2))
    assert c.messages.last_own(BOB) is None


async def test_jumping_to_a_hit_opens_its_conversation_with_it_selected():
    c = controller()
    done = await run_all(c.run_intent(Intent("jump", BOB, 3)))
    assert done.update.opened == {BOB: True} and done.update.select == (BOB, 3)


async def test_a_search_without_a_server_says_so_and_opens_the_list():
    c = controller()
    out = c.run_intent(Intent("search", value="  lake  week "))
    assert out.update.open_search and c.search.results.text == "lake week"
    assert c.search.results.error == "Not signed in."


def test_slash_search_needs_words():
    assert slash.parse("/search lake") == slash.Command("search", "lake")
    assert isinstance(slash.parse("/search"), slash.Refusal)


def test_the_palette_offers_what_can_be_done_to_the_selected_message():
    state = seeded_state()
    own = {e.title for e in palette.entries(state, [BOB], BOB, selected=2)}
    assert {"Reply to the selected message", "React to the selected message",
            "Edit the selected message", "Delete the selected message",
            "Select a message", "Edit your last message", "Search messages…"} <= own
    theirs = {e.title for e in palette.entries(state, [BOB], BOB, selected=3)}
    assert "Edit the selected message" not in theirs
    assert "Delete the selected message" not in theirs  # a DM has no moderators
