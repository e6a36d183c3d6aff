"""Slash commands: the pure parser (cfm_tui.slash)."""

from __future__ import annotations

import pytest

from cfm_tui.slash import COMMANDS, Command, Refusal, Say, help_text, me_text, parse, parse_status


@pytest.mark.parametrize("draft", ["hello", "a/b", " /status busy", ":/", "http://x"])
def test_plain_text_is_said(draft):
    assert parse(draft) == Say(draft)


def test_double_slash_sends_the_literal_text():
    assert parse("//status busy") == Say("/status busy")
    assert parse("//") == Say("/")


@pytest.mark.parametrize(("draft", "expected"), [
    ("/nudge", Command("nudge")),
    ("/NUDGE", Command("nudge")),
    ("/leave", Command("leave")),
    ("/close ", Command("close")),
    ("/help", Command("help")),
    ("/status busy", Command("status", "busy")),
    ("/status  Be-Right-Back ", Command("status", "brb")),
    ("/status appear-offline", Command("status", "invisible")),
    ("/status on-the-phone", Command("status", "phone")),
    ("/status online", Command("status", "online")),
    ("/psm exams :(", Command("psm", "exams :(")),
    ("/psm", Command("psm", "")),
    ("/psm   ", Command("psm", "")),
    ("/name  Alice Liddell (H) ", Command("name", "Alice Liddell (H)")),
    ("/name", Command("name", "")),
    ("/join #games", Command("join", "#games")),
    ("/join games", Command("join", "#games")),
    ("/join #Games", Command("join", "#games")),
    ("/add Bob", Command("add", "bob")),
    ("/block carol", Command("block", "carol")),
    ("/unblock carol", Command("unblock", "carol")),
    ("/me waves", Command("me", "waves")),
    ("/me waves at\neveryone", Command("me", "waves at\neveryone")),
    ("/search  lunch   Friday ", Command("search", "lunch Friday")),
])
def test_commands(draft, expected):
    assert parse(draft) == expected


@pytest.mark.parametrize("draft", ["/foo", "/foo bar", "/", "/ status", "/home/user/x"])
def test_unknown_commands_are_refused_never_said(draft):
    parsed = parse(draft)
    assert isinstance(parsed, Refusal)
    assert "unknown command /" in parsed.text and "/help lists them" in parsed.text


def test_unknown_command_line_names_it():
    assert parse("/foo bar") == Refusal("unknown command /foo — /help lists them")


def test_a_very_long_unknown_name_is_cut():
    parsed = parse("/" + "x" * 500)
    assert isinstance(parsed, Refusal) and len(parsed.text) < 80


@pytest.mark.parametrize("draft", [
    "/status", "/status sleepy", "/join", "/join #", "/join #no spaces", "/join #" + "a" * 33,
    "/add", "/add x", "/add bad name", "/block @bob", "/me", "/me   ", "/nudge bob",
    "/close now", "/psm " + "x" * 129, "/psm two\nlines",
    "/name " + "x" * 65, "/name two\nlines", "/name bell\x07", "/search", "/search   ",
    "/search " + "x" * 201,
])
def test_bad_arguments_are_refused_with_usage(draft):
    assert isinstance(parse(draft), Refusal)


def test_status_refusal_lists_the_states():
    parsed = parse("/status sleepy")
    assert isinstance(parsed, Refusal)
    for status in ("busy", "away", "brb", "phone", "lunch", "online", "invisible"):
        assert status in parsed.text


def test_parse_status_matches_the_cli():
    from cfm_tui.cli import parse_status as cli_parse_status

    for value in ("busy", "Out to Lunch", "out_to_lunch", "appear-offline", "offline", "BRB"):
        assert parse_status(value) == cli_parse_status(value)
    assert parse_status("sleepy") is None


def test_help_lists_every_command():
    text = help_text()
    for name in COMMANDS:
        assert f"/{name}" in text
    assert "//text" in text


def test_me_text():
    assert me_text("alice", "waves") == "* alice waves"
