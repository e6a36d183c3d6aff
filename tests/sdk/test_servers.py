"""Several server URLs: how they are given and checked, the rotation, and the token file
they share (pure parts; the failover itself is in test_failover.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfm_common import tokens
from cfm_common.client import Client
from cfm_common.servers import ServerList, parse_servers, primary

A = "ws://127.0.0.1:1863/ws"
B = "ws://127.0.0.1:1864/ws"
C = "wss://chat.example/ws"


@pytest.mark.parametrize("given", [
    f"{A},{B},{C}", f" {A} , {B},{C} ", [A, B, C], (A, f"{B},{C}"), [A, B, A, C],
])
def test_urls_given_every_way_give_the_same_list(given: object) -> None:
    assert parse_servers(given) == (A, B, C)  # type: ignore[arg-type]


@pytest.mark.parametrize(("given", "words"), [
    (f"{A},,{B}", "server URL 2 of 3 is empty"),
    (f"{A},", "server URL 2 of 2 is empty"),
    ("", "no server URL"),
    ([], "no server URL"),
    (f"{A},http://127.0.0.1:1864/ws", "ws://127.0.0.1:1864/ws"),  # the fix, spelled out
    (f"{A},127.0.0.1:1864", "not a server URL"),
    (f"ftp://x/ws,{A}", "not a server URL"),
])
def test_bad_lists_are_refused_naming_the_item(given: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_servers(given)  # type: ignore[arg-type]


def test_a_client_refuses_a_bad_list_at_once() -> None:
    with pytest.raises(ValueError, match="is empty"):
        Client(f"{A},,{B}", "alice", token_file=False)
    with pytest.raises(ValueError, match="web address"):
        Client([A, "https://chat.example/ws"], "alice", token_file=False)


def test_a_client_shows_its_urls_and_starts_on_the_first() -> None:
    client = Client(f"{A}, {B}", "alice", token_file=False)
    assert client.urls == (A, B) and client.url == A
    single = Client(A, "alice", token_file=False)
    assert single.urls == (A,) and single.url == A


def test_a_round_is_every_url_once_then_it_starts_over() -> None:
    servers = ServerList([A, B, C])
    assert [servers.failed() for _ in range(3)] == [False, False, True]
    assert servers.current == A  # round robin: back to the first
    servers.failed()
    servers.succeeded()  # on B now; a success starts a new round
    assert servers.current == B
    assert [servers.failed() for _ in range(3)] == [False, False, True]
    assert servers.current == B
    one = ServerList([A])
    assert one.failed() and one.failed() and one.current == A  # every failure is a round


def test_the_token_file_of_a_cluster_is_the_first_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    single = tokens.default_token_file(A, "Alice")
    assert primary(f"{A},{B}") == A
    # A single URL keeps its old place; the nodes listed after it change nothing.
    assert tokens.default_token_file(f"{A},{B}", "alice") == single
    assert tokens.default_token_file([A, B, C], "alice") == single
    assert tokens.default_token_file(B, "alice") != single


def test_a_token_saved_under_another_node_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    tokens.write_token(tokens.default_token_file(B, "alice"), "secret-b")
    # The same cluster listed B first before, A first now: the token is still found.
    assert Client([A, B], "alice").token == "secret-b"
    assert Client(A, "alice").token is None  # one URL: only its own file
    tokens.write_token(tokens.default_token_file(A, "alice"), "secret-a")
    assert Client([A, B], "alice").token == "secret-a"  # the first URL's own file wins
