"""What people type as a server address, and the sentences for a server that fails."""

from __future__ import annotations

import pytest

from cfm_common.errors import ClientError, ConnectCause, ConnectFailed
from cfm_tui.session import connect_error, server_url, server_urls


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


def failure(cause: ConnectCause, url: str, *, status: int | None = None,
            detail: str = "") -> ConnectFailed:
    return ConnectFailed(cause, url, f"cannot reach {url}: {detail or cause}", status=status,
                         detail=detail)


def test_nothing_listening():
    exc = failure(ConnectCause.REFUSED, "ws://127.0.0.1:9/ws")
    assert connect_error(exc) == \
        "Nothing answers at ws://127.0.0.1:9/ws: is `cfm serve` running there?"


def test_wrong_path():
    exc = failure(ConnectCause.HTTP_STATUS, "ws://127.0.0.1:1863/chat", status=404)
    text = connect_error(exc)
    assert "HTTP 404" in text and "ws://127.0.0.1:1863/ws" in text


def test_too_many_connections_from_your_address():
    exc = failure(ConnectCause.HTTP_STATUS, "ws://127.0.0.1:1863/ws", status=429)
    text = connect_error(exc)
    assert "too many connections from your address" in text and "not a cfm" not in text


def test_unknown_host():
    exc = failure(ConnectCause.DNS, "ws://nowhere.invalid/ws")
    assert "nowhere.invalid" in connect_error(exc)
    assert "Can't find" in connect_error(exc)


def test_other_failures_keep_the_sdks_words():
    exc = ConnectFailed(ConnectCause.NOT_CFM, "ws://x/ws", "ws://x/ws does not speak cfm.v1")
    assert connect_error(exc) == "Can't reach the server: ws://x/ws does not speak cfm.v1"


def test_the_sdks_reason_is_shown_once():
    exc = failure(ConnectCause.NETWORK, "ws://x:1/ws", detail="connection reset")
    assert connect_error(exc) == "Can't reach ws://x:1/ws: connection reset"


def test_the_sentence_comes_from_the_cause_not_the_words():
    """Words that look like another failure change nothing: the cause decides."""
    exc = ConnectFailed(ConnectCause.REFUSED, "ws://h:1/ws", "HTTP 404 Name or service not known")
    assert connect_error(exc).startswith("Nothing answers at ws://h:1/ws")
    plain = ClientError("connect_failed", "cannot reach ws://h:1/ws: Connect call failed")
    assert connect_error(plain) == f"Can't reach the server: {plain.msg}"


def test_an_answer_that_is_not_http_suggests_tls():
    exc = failure(ConnectCause.NO_HANDSHAKE, "ws://h:1863/ws")
    assert connect_error(exc) == \
        "h:1863 answered, but not as a cfm server: if it uses TLS, try wss://h:1863/ws"
    exc = failure(ConnectCause.NO_HANDSHAKE, "wss://h:1863/ws")
    assert "TLS" not in connect_error(exc)


async def test_ws_to_a_tls_server_says_try_wss(server_factory, tmp_path, monkeypatch):
    """The newcomer's case, live: ws:// to a server that speaks TLS on that port."""
    import trustme
    from textual.widgets import Static

    from cfm_tui.screens.signin import SignInScreen
    from tests.tui.helpers import SIZE, make_app, plain, wait_until

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    cert = trustme.CA().issue_cert("127.0.0.1")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    server = await server_factory(tls_cert=chain, tls_key=key)
    plain_url = server.url.replace("wss://", "ws://")
    app = make_app(tmp_path, plain_url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, SignInScreen), "sign-in")
        error = app.screen.query_one("#signin-error", Static)
        await wait_until(pilot, lambda: plain(error), "the error")
        text = "".join(plain(error).split())  # as wrapped: compare without blanks
        assert "answered,butnotasacfmserver:ifitusesTLS,try" + server.url in text, text
        assert "reach" not in text


async def test_wss_to_a_plain_server_says_the_tls_handshake_failed(server, tmp_path):
    """wss:// to a server without TLS: the reason, and the address to try instead."""
    from textual.widgets import Static

    from cfm_tui.screens.signin import SignInScreen
    from tests.tui.helpers import SIZE, make_app, plain, wait_until

    tls_url = server.url.replace("ws://", "wss://")
    app = make_app(tmp_path, tls_url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, SignInScreen), "sign-in")
        error = app.screen.query_one("#signin-error", Static)
        await wait_until(pilot, lambda: plain(error), "the error")
        text = " ".join(plain(error).split())  # as wrapped: one line again
        assert f"Can't reach {tls_url}: the TLS handshake failed" in text, text
        assert f"the server may not use TLS, try {server.url}" in text, text


@pytest.mark.parametrize(("typed", "urls"), [
    ("localhost:1863", ["ws://localhost:1863/ws"]),
    ("a:1, b:2", ["ws://a:1/ws", "ws://b:2/ws"]),
    ("ws://a:1/ws,wss://b/ws,a:1", ["ws://a:1/ws", "wss://b/ws"]),  # a repeat counts once
])
def test_several_addresses_are_completed_each(typed, urls):
    assert server_urls(typed) == urls


@pytest.mark.parametrize(("typed", "words"), [
    ("a:1,,b:2", "empty server between its commas"),
    ("a:1,", "empty server between its commas"),
    ("a:1,ftp://b/ws", "'ftp://b/ws' is not a server address"),
])
def test_a_bad_item_in_a_list_is_named(typed, words):
    with pytest.raises(ValueError, match=words):
        server_urls(typed)


def test_when_several_fail_each_says_why():
    first, second = "ws://127.0.0.1:9/ws", "ws://127.0.0.1:1863/chat"
    refused = failure(ConnectCause.REFUSED, first)
    not_found = failure(ConnectCause.HTTP_STATUS, second, status=404)
    both = ConnectFailed(ConnectCause.SEVERAL, f"{first}, {second}",
                         "none of the 2 servers answered",
                         by_url={first: refused, second: not_found})
    text = connect_error(both, f"{first},{second}")
    assert text.startswith(f"Nothing answers at {first}: is `cfm serve` running there? ")
    assert "127.0.0.1:1863 answered HTTP 404" in text
