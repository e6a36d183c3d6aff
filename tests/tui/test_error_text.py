"""The TUI's sentences for failures come from the error's kind and fields: the SDK's and
the server's words are shown at most, never read to choose the sentence."""

from __future__ import annotations

from cfm_common.errors import (
    ConnectCause,
    ConnectFailed,
    ConnectionClosed,
    LocalRefusal,
    ServerRefused,
    TimedOut,
)
from cfm_common.rules import CloseCode, ErrorCode
from cfm_tui.session import friendly_error

# Words that name other failures: a reader of text would be misled by them.
MISLEADING = "timeout: closed connect_failed no such user HTTP 404"


def test_each_kind_has_its_sentence() -> None:
    assert friendly_error(TimedOut("join", 10)) == "The server did not answer in time."
    assert friendly_error(ConnectionClosed(MISLEADING, by_client=True)) == "You are signed out."
    assert friendly_error(ConnectionClosed(MISLEADING, close_code=CloseCode.BAD_TOKEN)) == \
        "The connection to the server was closed."
    refused = ConnectFailed(ConnectCause.REFUSED, "ws://h:1/ws", MISLEADING)
    assert friendly_error(refused).startswith("Nothing answers at ws://h:1/ws")


def test_a_refusal_is_told_by_its_code() -> None:
    assert friendly_error(ServerRefused(ErrorCode.NO_SUCH_USER, MISLEADING), "bob") == \
        "There is no user called 'bob' on this server."
    assert friendly_error(LocalRefusal(ErrorCode.TOO_LONG, MISLEADING)) == \
        "That is too long for the server."
    assert friendly_error(LocalRefusal(ErrorCode.RATE_LIMITED, MISLEADING, 500)) == \
        "Wait a moment before sending that again."


def test_an_unknown_code_shows_the_servers_words() -> None:
    newer = ServerRefused("from_the_future", "try the new client")
    assert friendly_error(newer) == "try the new client"


def test_an_ending_is_told_by_its_close_code_and_the_servers_words_only_shown() -> None:
    from cfm_tui.session import ended_text

    told = ended_text(ConnectionClosed(MISLEADING, close_code=CloseCode.BAD_TOKEN,
                                       close_reason="account removed by the operator"),
                      "alice")
    assert told is not None
    assert told.startswith("Signed out by the server (account removed by the operator): "
                           "the sign-in token this computer has for 'alice' no longer works.")
    assert "timeout" not in told and "--token-file" in told
    # reset-token has no account to reset once it is removed: the text says what then.
    assert told.endswith("a removed account has none: ask for a new account.")
    assert ended_text(ConnectionClosed(MISLEADING, close_code=1011), "alice") == \
        "Disconnected by the server (close code 1011)."
    assert ended_text(ServerRefused(ErrorCode.UNSUPPORTED_VERSION, MISLEADING), "alice") == \
        "Disconnected: That server speaks another version of the cfm protocol."
    assert ended_text(None, "alice") is None


def test_a_refused_token_at_sign_in_names_its_file_and_both_causes() -> None:
    from pathlib import Path

    from cfm_tui.session import bad_token_text

    text = bad_token_text("alice", Path("/srv/tokens/alice.token"))
    assert text == ("The server refuses the token in /srv/tokens/alice.token for 'alice': "
                    "the handle is someone else's, or the operator replaced its token. If "
                    "it is yours, get the new one (cfm admin reset-token alice) and start "
                    "cfm chat --token-file FILE.")
    assert friendly_error(ServerRefused(ErrorCode.BAD_TOKEN, MISLEADING), "alice") == \
        text.replace("the token in /srv/tokens/alice.token", "this computer's sign-in token")
