"""Emoticons, sanitising, OSC 9, idle and the config file: the TUI's pure helpers."""

from __future__ import annotations

import json

import pytest

from cfm_tui.config import ChatConfig
from cfm_tui.emoticons import replace_emoticons
from cfm_tui.idle import IdleTracker
from cfm_tui.notify import desktop_notification, osc9
from cfm_tui.sanitize import clean_line, clean_text, for_escape_sequence


@pytest.mark.parametrize(
    ("code", "emoji"),
    [(":)", "🙂"), (":(", "🙁"), (":D", "😃"), (";)", "😉"), (":P", "😛"), (":O", "😮"),
     ("(H)", "😎"), ("(L)", "💖"), ("(Y)", "👍"), ("(N)", "👎"), ("(A)", "😇"), ("(6)", "😈")],
)
def test_every_required_emoticon(code, emoji):
    assert replace_emoticons(f"well {code} ok") == f"well {emoji} ok"


def test_emoticons_are_case_insensitive_but_letter_codes_stand_alone():
    assert replace_emoticons("(h) (y)") == "😎 👍"
    assert replace_emoticons(":d") == "😃"
    assert replace_emoticons("a:Dog x:P1 http://x") == "a:Dog x:P1 http://x"
    assert replace_emoticons("lol:)") == "lol🙂"


def test_clean_text_keeps_lines_and_drops_escape_sequences():
    hostile = "a\x1b]0;pwned\x07b\x1b[2Jc\r\nd\te\u202ef\x9bg"
    assert clean_text(hostile) == "a]0;pwnedb[2Jc\nd    efg"
    assert "\x1b" not in clean_line(hostile) and "\n" not in clean_line(hostile)


def test_markup_is_just_text():
    assert clean_line("[bold]x[/]") == "[bold]x[/]"


def test_osc9_cannot_be_broken_out_of():
    seq = osc9("bob\x07\x1b]0;pwned\x07\x9c: hi")
    assert seq.startswith("\x1b]9;") and seq.endswith("\x07")
    inner = seq[len("\x1b]9;"):-1]
    assert "\x1b" not in inner and "\x07" not in inner and "\x9c" not in inner
    assert len(for_escape_sequence("x" * 1000)) == 200


def test_tmux_passthrough_doubles_escapes():
    seq = desktop_notification("hi", in_tmux=True)
    assert seq == "\x1bPtmux;\x1b\x1b]9;hi\x07\x1b\\"
    assert desktop_notification("hi", in_tmux=False) == "\x1b]9;hi\x07"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_idle_goes_away_and_comes_back_only_if_it_set_away():
    clock = Clock()
    idle = IdleTracker(5, clock=clock)
    assert idle.check("online") is None
    clock.now = 5 * 60
    assert idle.check("online") == "away"
    assert idle.check("away") is None
    assert idle.activity("away") == "online"
    # A status the user chose stays.
    clock.now += 10 * 60
    assert idle.check("busy") is None
    assert idle.activity("busy") is None


def test_idle_does_not_undo_a_status_changed_by_hand():
    clock = Clock()
    idle = IdleTracker(1, clock=clock)
    clock.now = 61
    assert idle.check("online") == "away"
    assert idle.activity("busy") is None


def test_idle_zero_minutes_is_off():
    clock = Clock()
    idle = IdleTracker(0, clock=clock)
    clock.now = 1e9
    assert idle.check("online") is None


def test_config_round_trip(tmp_path):
    path = tmp_path / "chat.json"
    config = ChatConfig(name="alice", server="ws://h:1/ws", idle_minutes=3)
    assert config.save(path) is None
    loaded, warning = ChatConfig.load(path)
    assert warning is None and loaded == config


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", json.dumps({"idle_minutes": "x"}),
                                     json.dumps({"bell": 1}), json.dumps({"name": 5})])
def test_broken_config_is_a_warning_not_a_crash(tmp_path, content):
    path = tmp_path / "chat.json"
    path.write_text(content)
    loaded, warning = ChatConfig.load(path)
    assert loaded == ChatConfig() and warning and str(path) in warning


def test_missing_config_is_a_fresh_start(tmp_path):
    assert ChatConfig.load(tmp_path / "nope.json") == (ChatConfig(), None)


def test_a_wrapped_help_line_keeps_its_column():
    from cfm_tui import render, slash
    from cfm_tui.conversation import LineKind, TranscriptLine
    from cfm_tui.state import ChatState

    note = TranscriptLine(LineKind.NOTE, slash.help_text(), 0)
    lines = render.transcript([note], ChatState("alice"), None, width=50).plain.split("\n")
    assert all(len(line) <= 50 for line in lines)
    column = lines[1].index("nudge (")  # where the descriptions start
    for line in lines[1:]:
        assert line.startswith("  /") or line[:column].strip() == "", line
    assert any(not line.startswith("  /") for line in lines[1:])  # something did wrap


def test_a_name_and_its_handle_are_shown_once():
    from cfm_common.frames import RosterEntry, Welcome
    from cfm_tui import render
    from cfm_tui.state import ChatState

    state = ChatState("alice")
    state.on_welcome(Welcome(1, "s1", "alice", "tok", "Alice", "online", "", "cfm", {}, (), (
        RosterEntry("bob", "Bob", "online", "", False),
        RosterEntry("dave", "Bob", "online", "", False),  # a second "Bob"
        RosterEntry("erin", "", "online", "", False),
    )))
    assert render.label_with_handle("dave", state) == "Bob <dave>"  # not "(dave)" too
    assert render.label_with_handle("erin", state) == "erin"
    state.people["bob"].display = "Robert"
    assert render.label_with_handle("bob", state) == "Robert (bob)"


def test_an_action_line_shows_the_senders_display_name():
    from cfm_tui import render
    from cfm_tui.conversation import LineKind, TranscriptLine
    from cfm_tui.state import ChatState

    state = ChatState("alice")
    state.person("bob").display = "Bob B."
    line = TranscriptLine(LineKind.SAY, "* bob waves", 0, "bob", 1)
    assert render.transcript([line], state, None).plain == "* Bob B. waves"
