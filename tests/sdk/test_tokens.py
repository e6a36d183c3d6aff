"""Token and seen-state files (cfm_common.tokens)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cfm_common import tokens


def test_token_round_trip_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "alice.token"
    tokens.write_token(path, "s3cret")
    assert tokens.read_token(path) == "s3cret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_missing_or_empty_token_files_read_as_none(tmp_path: Path) -> None:
    assert tokens.read_token(tmp_path / "absent") is None
    (tmp_path / "empty").write_text("\n")
    assert tokens.read_token(tmp_path / "empty") is None


def test_default_token_file_is_per_server_and_per_handle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    a = tokens.default_token_file("ws://127.0.0.1:1863/ws", "Alice")
    b = tokens.default_token_file("ws://127.0.0.1:1864/ws", "alice")
    c = tokens.default_token_file("ws://127.0.0.1:1863/ws", "bob")
    assert len({a, b, c}) == 3
    assert a.name == "alice.token"
    assert a.is_relative_to(tmp_path)


def test_server_key_is_file_name_safe() -> None:
    assert tokens.server_key("ws://Example.COM:1863/ws") == "example.com_1863_ws"
    assert tokens.server_key("wss://chat.example/") == "chat.example_443"
    assert "/" not in tokens.server_key("ws://h/a/../../b")


def test_seen_state_round_trip_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "seen.json"
    tokens.write_seen(path, {"#lobby": (12, "e1"), "dm:a1:b2": (3, None)})
    assert tokens.read_seen(path) == {"#lobby": (12, "e1"), "dm:a1:b2": (3, None)}
    path.write_text("{not json")
    assert tokens.read_seen(path) == {}
    path.write_text('{"rooms": {"#x": {"seq": "nope"}, "#y": {"seq": 2}}}')
    assert tokens.read_seen(path) == {"#y": (2, None)}
    assert tokens.read_seen(tmp_path / "absent.json") == {}
