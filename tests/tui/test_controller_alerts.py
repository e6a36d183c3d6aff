"""The notification policy (cfm_tui.alerts) and the palette's list (cfm_tui.palette),
without Textual: what a notice becomes, which commands Ctrl+P offers."""

from __future__ import annotations

from cfm_common import rules
from cfm_common.client import ConnectionState, StateChanged
from cfm_tui.alerts import TOAST_EVERY_S, Alert, NotificationPolicy
from cfm_tui.config import ChatConfig
from cfm_tui.controller import ChatController
from cfm_tui.palette import Intent, entries
from cfm_tui.state import Notice, NoticeKind
from tests.tui.seed import seeded_state

DM = rules.dm_room("alice", "bob")


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def policy(**config: object) -> tuple[NotificationPolicy, Clock]:
    clock = Clock()
    return NotificationPolicy(ChatConfig(**config), clock=clock), clock  # type: ignore[arg-type]


def message(text: str, room: str = DM) -> Notice:
    return Notice(NoticeKind.MESSAGE, "bob", room, text)


def test_a_message_out_of_view_is_a_toast_with_a_short_preview_and_the_bell():
    p, _ = policy()
    alert = p.decide(message("one two three four five six seven eight nine :)"),
                     seeded_state())
    assert alert == Alert("Bob says: one two three four five six seven eight…", ring=True)


def test_a_message_in_view_is_nothing():
    p, _ = policy()
    assert p.decide(message("hi"), seeded_state(), in_view=True) == Alert()


def test_a_burst_of_messages_is_one_toast_and_one_ring():
    p, clock = policy(desktop_notifications=True)
    state = seeded_state()
    first = p.decide(message("one"), state)
    assert first.text == "Bob says: one" and first.desktop and first.ring
    clock.now += TOAST_EVERY_S - 0.5
    assert p.decide(message("two"), state) == Alert()
    other = p.decide(message("elsewhere", "#lobby"), state)  # another conversation's own
    assert other.text == "Bob says: elsewhere"
    clock.now += 0.5
    assert p.decide(message("three"), state).text == "Bob says: three"


def test_a_nudge_always_shakes_and_rings_and_toasts_only_out_of_view():
    p, _ = policy(bell=False)
    state = seeded_state()
    nudge = Notice(NoticeKind.NUDGE, "bob", DM)
    assert p.decide(nudge, state, in_view=True) == Alert(shake=True)
    assert p.decide(nudge, state) == Alert("Bob just sent you a nudge!", shake=True)


def test_sign_ins_requests_and_errors():
    p, _ = policy()
    state = seeded_state(with_request=True)
    assert p.decide(Notice(NoticeKind.SIGNED_IN, "erin"), state) == \
        Alert("Erin has just signed in")
    added = p.decide(Notice(NoticeKind.ADDED_YOU, "frank"), state)
    assert added == Alert("Frank (frank) has added you to their contact list. F3 to answer: "
                          "Add back, Block or Not now.", ring=True)
    error = p.decide(Notice(NoticeKind.ERROR, text="bad\x1b]0;x\x07 thing"), state)
    assert error.warning and error.text is not None and "\x1b" not in error.text


def test_the_palette_offers_what_the_state_allows():
    state = seeded_state(with_request=True)
    titles = {e.title: e.intent for e in entries(state, [DM, "#lobby"], DM)}
    assert titles["Go to conversation with Bob"] == Intent("go_to", DM)
    assert titles["Go to #lobby"] == Intent("go_to", "#lobby")
    assert titles["Send a nudge"] == Intent("nudge", DM)
    assert titles["Not now: Frank (frank)"] == Intent("dismiss", "frank")
    assert titles["Status: Be Right Back"] == Intent("status", "brb")
    assert "Reconnect now" not in titles and "Leave #lobby" not in titles
    in_room = {e.title for e in entries(state, [DM, "#lobby"], "#lobby")}
    assert "Leave #lobby" in in_room and "Send a nudge" not in in_room
    state.on_connection(ConnectionState.RECONNECTING.value, 5.0)
    assert "Reconnect now" in {e.title for e in entries(state, [], None)}


def test_every_palette_intent_is_carried_out_by_the_screen_or_the_controller(tmp_path):
    """The screen does these (layout and questions); the controller knows all the rest."""
    screen_intents = {"ask_contact", "ask_room", "ask_display", "switch_pane", "edit_psm",
                      "go_to", "close", "quit", "search_screen", "select", "edit_last",
                      "message_do"}
    state = seeded_state(with_request=True)
    state.on_connection(ConnectionState.RECONNECTING.value, 5.0)
    c = ChatController(state, config=ChatConfig(), config_path=tmp_path / "c.json")
    c.on_event(StateChanged(ConnectionState.RECONNECTING, 5.0, "test"))
    for entry in entries(state, [DM, "#lobby"], "#lobby"):
        if entry.intent.action not in screen_intents:
            c.run_intent(entry.intent)  # raises for an intent nobody carries out
