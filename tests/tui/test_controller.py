"""The TUI's controller without Textual and without a server: intents in, the state
changed and an Outcome (the update to render, the requests to make) out.

Nothing here imports textual (the import-linter contract keeps the controller from it;
test_the_controller_modules_load_without_textual checks it in a fresh interpreter).
A ``ChatSession`` that never connects stands in where only the requests' existence
matters: its jobs are counted, never run (tests/tui/test_controller_live.py runs them
against a real server).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cfm_common import rules
from cfm_common.client import ConnectionState, StateChanged
from cfm_common.errors import ClientError, ConnectionClosed, ServerRefused
from cfm_common.frames import Contact, Msg
from cfm_tui.config import ChatConfig
from cfm_tui.controller import TYPING_EVERY_S, ChatController
from cfm_tui.conversation import LineKind
from cfm_tui.idle import IdleTracker
from cfm_tui.palette import Intent
from cfm_tui.session import ChatSession, SignIn
from cfm_tui.state import ChatState, Link, NoticeKind
from tests.tui.seed import seeded_state, ts

DM = rules.dm_room("alice", "bob")
LOBBY = "#lobby"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def offline_session() -> ChatSession:
    """A session whose client is never connected: requests are made into jobs only."""
    return ChatSession("ws://127.0.0.1:9/ws", SignIn("alice"), token_file=None)


def controller(tmp_path: Path, *, session: bool = False, clock: Clock | None = None,
               state: ChatState | None = None) -> ChatController:
    return ChatController(state or seeded_state(), offline_session() if session else None,
                          config=ChatConfig(idle_minutes=1), config_path=tmp_path / "c.json",
                          clock=clock or Clock())


def notes(c: ChatController, room: str) -> list[str]:
    return [line.text for line in c.state.conversation(room).lines()
            if line.kind is LineKind.NOTE]


# --- the composer and slash commands ---------------------------------------------------

def test_a_draft_becomes_a_pending_message_and_a_request(tmp_path):
    c = controller(tmp_path, session=True)
    out = c.submit_draft(DM, "hello\r\nbob")
    assert out.ok and out.update.rooms == {DM} and len(out.jobs) == 1
    [pending] = c.state.conversation(DM).pending.values()
    assert pending.text == "hello\nbob"  # as the server will store it


def test_a_draft_too_long_stays_and_says_why(tmp_path):
    c = controller(tmp_path, session=True)
    out = c.submit_draft(DM, "x" * (rules.DEFAULT_MAX_TEXT + 1))
    assert not out.ok and not out.jobs
    assert not c.state.conversation(DM).pending
    assert notes(c, DM) == [f"Your message is too long ({rules.DEFAULT_MAX_TEXT + 1} "
                            f"characters; the limit is {rules.DEFAULT_MAX_TEXT})."]


def test_an_unknown_command_stays_in_the_composer(tmp_path):
    c = controller(tmp_path)
    out = c.submit_draft(DM, "/frobnicate now")
    assert not out.ok and out.update.rooms == {DM}
    assert notes(c, DM) == ["unknown command /frobnicate — /help lists them"]


def test_slash_commands_run_through_the_controller(tmp_path):
    c = controller(tmp_path, session=True)
    out = c.submit_draft(DM, "/me waves")
    assert out.ok and [p.text for p in c.state.conversation(DM).pending.values()] == \
        ["* alice waves"]
    assert c.submit_draft(DM, "/leave").ok
    assert notes(c, DM) == ["/leave is for group rooms; /close closes this conversation."]
    out = c.submit_draft(DM, "/close")
    assert out.update.closed == {DM} and DM in c.state.conversations  # the tab, not the DM
    out = c.submit_draft(LOBBY, "/members")
    assert notes(c, LOBBY) == ["In #lobby (3): Alice, Bob, Erin"] and not out.jobs
    c.submit_draft(DM, "/help")
    assert notes(c, DM)[-1].startswith("Commands (//text sends /text):")


def test_reconnect_is_refused_while_connected(tmp_path):
    c = controller(tmp_path)
    c.submit_draft(DM, "/reconnect")
    assert notes(c, DM) == ["/reconnect is for while the connection is down (Connected)."]
    c.on_event(StateChanged(ConnectionState.RECONNECTING, 5.0, "test"))
    c.submit_draft(DM, "/reconnect")
    assert len(notes(c, DM)) == 1  # tried, not refused


def test_a_close_by_the_server_says_why_and_what_to_do(tmp_path):
    c = controller(tmp_path)

    def closed(error: ClientError | None, reason: str = "closed by the client") -> str:
        out = c.on_event(StateChanged(ConnectionState.CLOSED, None,
                                      str(error) if error else reason, error))
        text = c.state.connection.describe()
        assert [n.text for n in out.update.notices] == ([text] if error else [])
        return text

    # The operator replaced the token (or removed the account): the server's words, and
    # what to do, whatever the SDK's reason says.
    reset = ConnectionClosed("closed with code 4003 (token replaced by the operator)",
                             close_code=4003, close_reason="token replaced by the operator")
    assert closed(reset) == (
        "Signed out by the server (token replaced by the operator): the sign-in token this "
        "computer has for 'alice' no longer works. Ask the operator for a new one (cfm "
        "admin reset-token alice) and start cfm chat --token-file FILE; a removed account "
        "has none: ask for a new account.")
    # Replaced while the connection was down: the reconnect's hello is refused.
    refused = ServerRefused(rules.ErrorCode.BAD_TOKEN, "wrong token for 'alice'")
    assert closed(refused).startswith("Signed out by the server: the sign-in token this "
                                      "computer has for 'alice' no longer works.")
    other = ConnectionClosed("closed with code 4008", close_code=4008,
                             close_reason="too many\x1b errors\x07")
    assert closed(other) == "Disconnected by the server (close code 4008: too many errors)."
    assert closed(None) == "Disconnected"  # the user's own close(): nothing to explain


def test_members_of_a_room_not_known_yet_are_asked_for(tmp_path):
    c = controller(tmp_path, session=True)
    c.state.conversation("#games")  # a room we are in since before this sign-in
    out = c.submit_draft("#games", "/members")
    assert notes(c, "#games") == ["Asking the server who is in #games: the list is beside "
                                  "the transcript."]
    assert len(out.jobs) == 1  # the join that answers with the members


def test_the_status_a_user_picks_is_kept_and_ends_an_idle_away(tmp_path):
    clock = Clock()
    c = controller(tmp_path, session=True, clock=clock)
    c.idle = IdleTracker(1, clock=clock)
    clock.now += 61
    out = c.check_idle()
    assert c.state.status == "away" and out.update.me and len(out.jobs) == 1
    out = c.submit_draft(DM, "/status busy")
    assert c.state.status == "busy" and len(out.jobs) == 1
    assert ChatConfig.load(tmp_path / "c.json")[0].status == "busy"
    assert c.activity().jobs == []  # the user chose Busy: activity does not undo it


def test_activity_ends_the_idle_away_it_set(tmp_path):
    clock = Clock()
    c = controller(tmp_path, session=True, clock=clock)
    c.idle = IdleTracker(1, clock=clock)
    clock.now += 61
    c.check_idle()
    out = c.activity()
    assert c.state.status == "online" and out.update.me and len(out.jobs) == 1


def test_psm_and_display_name(tmp_path):
    c = controller(tmp_path, session=True)
    out = c.submit_draft(DM, "/psm at the lake")
    assert c.state.psm == "at the lake" and out.update.me and len(out.jobs) == 1
    assert c.set_psm("at the lake").jobs == []  # unchanged: nothing to send
    out = c.submit_draft(DM, "/name Alice A.")
    assert c.state.display == "Alice A." and out.update.roster and len(out.jobs) == 1
    assert ChatConfig.load(tmp_path / "c.json")[0].display == "Alice A."


def test_typing_is_sent_at_most_every_few_seconds(tmp_path):
    clock = Clock()
    c = controller(tmp_path, session=True, clock=clock)
    assert len(c.typed(DM).jobs) == 1
    assert c.typed(DM).jobs == []
    clock.now += TYPING_EVERY_S
    assert len(c.typed(DM).jobs) == 1
    c.send_text(DM, "sent")  # the next key says "typing" again at once
    assert len(c.typed(DM).jobs) == 1


def test_nudges_are_for_one_to_one_conversations(tmp_path):
    c = controller(tmp_path, session=True)
    out = c.send_nudge(LOBBY)
    assert not out.jobs and notes(c, LOBBY) == ["Nudges are for one-to-one conversations."]
    assert len(c.send_nudge(DM).jobs) == 1 and notes(c, DM) == []
    c.on_event(StateChanged(ConnectionState.RECONNECTING, 5.0, "test"))
    assert len(c.send_nudge(DM).jobs) == 1  # kept by the SDK, and said so now
    assert notes(c, DM) == ["You are not connected: your nudge will be sent when the "
                            "connection is back."]


# --- events, conversations, read marks -------------------------------------------------

def test_events_change_the_state_and_say_what_to_tell(tmp_path):
    c = controller(tmp_path)
    out = c.on_event(Msg(DM, 5, "bob", "are you there?", ts(0), "text", "b5"))
    assert out.update.rooms == {DM}
    [notice] = out.update.notices
    assert (notice.kind, notice.who, notice.room) == (NoticeKind.MESSAGE, "bob", DM)
    out = c.on_event(StateChanged(ConnectionState.RECONNECTING, 3.0, "test"))
    assert c.state.connection.link is Link.RECONNECTING and out.update.connection
    out = c.on_event(Contact("added_you", "frank", "Frank", "online", "", False))
    assert c.state.added_you == ["frank"]
    assert c.run_intent(Intent("dismiss", "frank")).update.roster
    assert c.state.added_you == []


def test_unread_counts_end_when_the_conversation_is_seen(tmp_path):
    c = controller(tmp_path, session=True)
    assert c.state.unread_for("bob") == 2  # seeded: read up to 1, bob wrote 3 and 4
    out = c.run_intent(Intent("seen", DM))
    assert c.state.unread_for("bob") == 0 and out.update.roster and len(out.jobs) == 1
    assert c.mark_seen(DM).jobs == []  # nothing new: no second read mark


def test_opening_conversations(tmp_path):
    c = controller(tmp_path, session=True)
    out = c.open_dm("carol")
    room = rules.dm_room("alice", "carol")
    assert out.update.opened == {room: True} and room in c.state.conversations
    assert out.jobs == []  # a new DM: no history to fetch
    out = c.open_room("#games")  # members unknown: asked for, with the history
    assert out.update.opened == {"#games": True} and len(out.jobs) == 1


def test_reopened_tabs_are_only_ours(tmp_path):
    c = controller(tmp_path)
    out = c.reopen_tabs([DM, "#gone", rules.dm_room("bob", "carol"), LOBBY])
    assert list(out.update.opened) == [DM, LOBBY]
    assert not any(out.update.opened.values())  # in the background


def test_older_history_is_asked_for_once_at_a_time(tmp_path):
    c = controller(tmp_path, session=True)
    c.state.conversation(DM).messages.pop(0)  # seq 1 not loaded: there is older history
    assert len(c.load_older(DM).jobs) == 1
    assert c.load_older(DM).jobs == []  # the first is still on its way


def test_without_a_session_no_request_is_made(tmp_path):
    c = controller(tmp_path)
    for out in (c.join_room("#games"), c.contact("add", "frank"), c.leave_room(LOBBY),
                c.typed(DM), c.check_idle(), c.load_older(DM)):
        assert out.jobs == []


def test_settings_say_what_they_did(tmp_path):
    c = controller(tmp_path)
    out = c.run_intent(Intent("toggle_bell"))
    assert c.config.bell is False and [n.text for n in out.update.notices] == ["Bell off."]
    assert ChatConfig.load(tmp_path / "c.json")[0].bell is False
    out = c.run_intent(Intent("toggle_desktop"))
    assert [n.text for n in out.update.notices] == ["Desktop notifications on."]


def test_an_unknown_intent_is_a_bug(tmp_path):
    with pytest.raises(ValueError, match="no such intent"):
        controller(tmp_path).run_intent(Intent("launch_rockets"))


def test_the_controller_modules_load_without_textual():
    modules = ["cfm_tui.controller", "cfm_tui.alerts", "cfm_tui.palette", "cfm_tui.slash"]
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parents[2])
    assert done.stdout.strip() == "[]"
