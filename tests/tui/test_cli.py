"""`cfm chat`'s command line: options are checked before Textual starts."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from cfm_cli.main import app
from cfm_tui.cli import parse_status


@pytest.mark.parametrize(("given", "status"), [
    ("online", "online"), ("Busy", "busy"), ("be-right-back", "brb"), ("On the Phone", "phone"),
    ("out_to_lunch", "lunch"), ("appear-offline", "invisible"), ("away", "away"),
])
def test_statuses_by_code_or_label(given, status):
    assert parse_status(given) == status


def test_unknown_status_is_refused():
    with pytest.raises(typer.BadParameter):
        parse_status("sleeping")


def test_bad_options_exit_with_usage_errors():
    runner = CliRunner()
    result = runner.invoke(app, ["chat", "--status", "sleeping"])
    assert result.exit_code == 2 and "sleeping" in result.output
    result = runner.invoke(app, ["chat", "--name", "x"])
    assert result.exit_code == 2
    # The rule, not just the verdict (the usage box may wrap the sentence).
    assert "2-24" in result.output and "starting with a letter or digit" in result.output


def test_help_lists_the_options():
    result = CliRunner().invoke(app, ["chat", "--help"])
    assert result.exit_code == 0
    for option in ("--server", "--name", "--status"):
        assert option in result.output


def test_invite_is_passed_to_the_sign_in(monkeypatch):
    seen: dict[str, object] = {}

    def fake_run_chat(**kwargs: object) -> int:
        seen.update(kwargs)
        return 0

    monkeypatch.setattr("cfm_tui.launch.run_chat", fake_run_chat)
    monkeypatch.setenv("CFM_INVITE", "from-the-environment")  # not read: see cfm_tui.cli
    runner = CliRunner()
    result = runner.invoke(app, ["chat", "--name", "alice", "--invite", " 3f9a-0-1-9b7c \n"])
    assert result.exit_code == 0, result.output
    assert seen["invite"] == "3f9a-0-1-9b7c" and seen["name"] == "alice"
    result = runner.invoke(app, ["chat"])
    assert result.exit_code == 0 and seen["invite"] is None
    result = runner.invoke(app, ["chat", "--invite", "x" * 129])
    assert result.exit_code == 2 and "--invite" in result.output
    assert "--invite" in runner.invoke(app, ["chat", "--help"]).output


def test_token_file_is_passed_to_the_sign_in(monkeypatch, tmp_path):
    seen: dict[str, object] = {}

    def fake_run_chat(**kwargs: object) -> int:
        seen.update(kwargs)
        return 0

    monkeypatch.setattr("cfm_tui.launch.run_chat", fake_run_chat)
    runner = CliRunner()
    path = tmp_path / "gina.token"
    result = runner.invoke(app, ["chat", "--name", "gina", "--token-file", str(path)])
    assert result.exit_code == 0, result.output
    assert seen["token_file"] == path
    assert runner.invoke(app, ["chat"]).exit_code == 0 and seen["token_file"] is None
    assert "--token-file" in runner.invoke(app, ["chat", "--help"]).output


@pytest.mark.parametrize("args", [[], ["chat"], ["serve"], ["admin", "users"], ["bot", "ai"]])
def test_dash_h_is_help_everywhere(args):
    result = CliRunner().invoke(app, [*args, "-h"])
    assert result.exit_code == 0, result.output
    assert "Usage: cfm" in result.output


def test_switches_show_no_value_placeholder():
    result = CliRunner().invoke(app, ["serve", "--help"], terminal_width=120)
    assert "--no-ai" in result.output and "<bool>" not in result.output
    assert "<int>" in result.output  # options that take a value still say what


def test_several_servers_repeated_or_comma_separated(monkeypatch):
    seen: dict[str, object] = {}

    def fake_run_chat(**kwargs: object) -> int:
        seen.update(kwargs)
        return 0

    monkeypatch.setattr("cfm_tui.launch.run_chat", fake_run_chat)
    monkeypatch.delenv("CFM_SERVER", raising=False)
    runner = CliRunner()
    both = "ws://a:1863/ws,ws://b:1/ws"
    result = runner.invoke(app, ["chat", "--server", "a", "--server", "ws://b:1/ws"])
    assert result.exit_code == 0, result.output
    assert seen["server"] == both
    result = runner.invoke(app, ["chat", "--server", "a, ws://b:1/ws"])
    assert result.exit_code == 0 and seen["server"] == both
    result = runner.invoke(app, ["chat"], env={"CFM_SERVER": "a,ws://b:1/ws"})
    assert result.exit_code == 0 and seen["server"] == both
    result = runner.invoke(app, ["chat"])
    assert result.exit_code == 0 and seen["server"] is None  # the last one used


@pytest.mark.parametrize(("given", "words"), [
    (["--server", "a:1,,b:2"], "empty server"),
    (["--server", "a:1", "--server", "ftp://b/ws"], "'ftp://b/ws' is not a server address"),
])
def test_a_bad_server_list_is_a_usage_error(monkeypatch, given, words):
    monkeypatch.setattr("cfm_tui.launch.run_chat", lambda **kwargs: 0)
    result = CliRunner().invoke(app, ["chat", *given])
    assert result.exit_code == 2 and "--server" in result.output
    assert words in " ".join(result.output.replace("│", " ").split())
