"""What people type as a server address, and the sentences for a server that fails."""

from __future__ import annotations

import socket

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from cfm_common.client import ClientError
from cfm_tui.session import connect_error, server_url


@pytest.mark.parametrize(("typed", "url"), [
    ("ws://127.0.0.1:1863/ws", "ws://127.0.0.1:1863/ws"),
    ("ws://127.0.0.1:1863", "ws://127.0.0.1:1863/ws"),
    ("ws://127.0.0.1:1863/", "ws://127.0.0.1:1863/ws"),
    ("localhost:1863", "ws://localhost:1863/ws"),
    ("  localhost:1863  ", "ws://localhost:1863/ws"),
    ("chat.example.org", "ws://chat.example.org:1863/ws"),
    ("wss://chat.example.org", "wss://chat.example.org/ws"),
    ("WS://Host:1863", "ws://Host:1863/ws"),
    ("http://127.0.0.1:1863", "ws://127.0.0.1:1863/ws"),
    ("https://chat.example.org/ws", "wss://chat.example.org/ws"),
    ("wss://proxy.example.org/cfm/ws", "wss://proxy.example.org/cfm/ws"),
    ("[::1]:1863", "ws://[::1]:1863/ws"),
])
def test_addresses_are_completed(typed, url):
    assert server_url(typed) == url


@pytest.mark.parametrize("typed", ["ftp://x:1/ws", "ws://", "localhost:port", "a b:1863",
                                   "ws://host:99999/ws"])
def test_unusable_addresses_say_what_to_type(typed):
    with pytest.raises(ValueError, match=r"ws://127\.0\.0\.1:1863/ws"):
        server_url(typed)


def failure(cause: BaseException, url: str) -> ClientError:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise ClientError("connect_failed", f"cannot reach {url}: {exc}") from exc
    except ClientError as exc:
        return exc


def test_nothing_listening():
    exc = failure(ConnectionRefusedError(111, "Connect call failed"), "ws://127.0.0.1:9/ws")
    assert connect_error(exc, "ws://127.0.0.1:9/ws") == \
        "Nothing answers at ws://127.0.0.1:9/ws: is `cfm serve` running there?"


def test_wrong_path():
    response = Response(404, "Not Found", Headers())
    exc = failure(InvalidStatus(response), "ws://127.0.0.1:1863/chat")
    text = connect_error(exc, "ws://127.0.0.1:1863/chat")
    assert "HTTP 404" in text and "ws://127.0.0.1:1863/ws" in text


def test_unknown_host():
    exc = failure(socket.gaierror(-2, "Name or service not known"), "ws://nowhere.invalid/ws")
    assert "nowhere.invalid" in connect_error(exc, "ws://nowhere.invalid/ws")
    assert "Can't find" in connect_error(exc, "ws://nowhere.invalid/ws")


def test_other_failures_keep_the_sdks_words():
    exc = ClientError("connect_failed", "ws://x/ws does not speak cfm.v1")
    assert connect_error(exc, "ws://x/ws") == \
        "Can't reach the server: ws://x/ws does not speak cfm.v1"
