"""The operator's log lines (issue 15 item 5): connections with their address, sign-ups
with the invite they used, refused handshakes and sign-ups, how each connection ended
— and a flood of them costs a few lines, not a disk."""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from cfm_server import oplog
from cfm_server.invites import make_code
from cfm_server.logsetup import setup_logging
from tests.wire import WireClient, eventually, signed_in


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cfm_server.conn"]


async def wait_for(caplog: pytest.LogCaptureFixture, text: str) -> str:
    def found() -> bool:
        return any(text in line for line in lines(caplog))

    await eventually(found, timeout=10)
    return next(line for line in lines(caplog) if text in line)


async def test_connections_sign_ups_and_closes_are_logged_with_the_address(
    server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cfm_server.conn")
    server = await server_factory(registration="invite", hello_timeout=0.5)
    code = make_code(server.hub.invites.key, uses=2)
    async with signed_in(server.url, "alice", invite=code) as alice:
        assert alice.token
    nonce = code.split("-")[0]
    assert await wait_for(caplog, "sign-up: alice") == (
        f"sign-up: alice (person) from 127.0.0.1 with invite {nonce} (use 1 of 2)")
    assert "connection from 127.0.0.1" in lines(caplog)
    closed = await wait_for(caplog, "closed alice")
    assert closed.startswith("closed alice from 127.0.0.1, session s1, after ")
    assert closed.endswith(": code 1000 by the client")

    async with WireClient.connect(server.url) as bob:
        refused = await bob.hello("bob", invite="not-a-code")
        assert refused["code"] == "forbidden"
    assert (await wait_for(caplog, "sign-up of bob")).startswith(
        "sign-up of bob from 127.0.0.1 refused: that is not an invite code")

    async with WireClient.connect(server.url) as silent:  # never says hello
        assert await silent.wait_closed(timeout=10) == 4001
    line = await wait_for(caplog, "code 4001")
    assert line.startswith("closed (not signed in) from 127.0.0.1 after ")
    assert line.endswith("code 4001 (no hello in time) by the server")


async def test_a_refused_handshake_is_logged(
    server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cfm_server.conn")
    server = await server_factory(max_conns_per_ip=1, allowed_origins=["https://ok.example"])
    async with WireClient.connect(server.url):
        with pytest.raises(InvalidStatus):
            async with WireClient.connect(server.url):
                pass
    assert ("refused 127.0.0.1: too many connections from that address (HTTP 429)"
            in lines(caplog))
    # websockets' own refusals: no cfm.v1 subprotocol, a foreign Origin, no upgrade.
    with pytest.raises(InvalidStatus):
        async with WireClient.connect(server.url, subprotocols=["chat"]):
            pass
    with pytest.raises(InvalidStatus):
        async with WireClient.connect(server.url, origin="https://evil.example"):
            pass
    async with httpx.AsyncClient() as http:
        assert (await http.get(server.http_url + "/ws")).status_code == 426
        metrics = (await http.get(server.http_url + "/metrics")).text
    refused = [line for line in lines(caplog) if line.startswith("refused")]
    assert [re.search(r"\(HTTP (\d+)\)$", line).group(1) for line in refused] == [  # type: ignore[union-attr]
        "429", "400", "403", "426"], refused
    for reason in ("too_many_from_address", "bad_handshake", "origin_not_allowed",
                   "not_websocket"):
        assert f'cfm_refused_handshakes_total{{reason="{reason}"}} 1.0' in metrics, reason


def test_a_flood_of_lines_is_cut_to_the_rate_and_says_how_many_were_left_out(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="cfm_server.conn")
    now = [1000.0]
    monkeypatch.setattr(oplog.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(oplog, "_budgets", {})
    for i in range(5000):
        oplog.connected(f"10.0.0.{i % 250}")
    assert len(lines(caplog)) == oplog.BURST
    now[0] += 1.0  # a second later: LINES_PER_S more, the first saying what was cut
    for _ in range(100):
        oplog.connected("10.0.0.1")
    later = lines(caplog)[oplog.BURST:]
    assert len(later) == oplog.LINES_PER_S
    assert later[0] == ("connection from 10.0.0.1 (4800 more connection lines were left "
                        "out: over 20/s)")


def test_json_lines_carry_the_event_and_the_peer() -> None:
    stream = io.StringIO()
    logs = setup_logging("info", "json", stream=stream)
    token = oplog.PEER.set("192.0.2.7")
    try:
        oplog.signed_up("carol", False)
    finally:
        oplog.PEER.reset(token)
        logs.close()
    record = json.loads(stream.getvalue().splitlines()[-1])
    assert record["msg"] == "sign-up: carol (person) from 192.0.2.7"
    assert record["event"] == "sign-up" and record["peer"] == "192.0.2.7"
    assert record["logger"] == "cfm_server.conn" and record["level"] == "info"


def test_json_lines_name_the_user_and_the_close_code_as_keys() -> None:
    """A log pipeline counts 4008s per user, or sign-ups per invite, from keys rather
    than by parsing the sentence."""
    stream = io.StringIO()
    logs = setup_logging("info", "json", stream=stream)
    token = oplog.PEER.set("192.0.2.7")
    try:
        oplog.signed_up("carol", False, invite="68e1fc1a6b1238ec", used=2, uses=5)
        oplog.sign_up_refused("mallory", "that invite code has expired")
        oplog.closed("192.0.2.7", "carol", 3.2, 4008, "too many errors", True)
        oplog.closed("192.0.2.7", None, 10.0, None, "", False)
    finally:
        oplog.PEER.reset(token)
        logs.close()
    signed, refused, closed, lost = (json.loads(line)
                                     for line in stream.getvalue().splitlines()[-4:])
    assert signed["user"] == "carol" and signed["invite"] == "68e1fc1a6b1238ec"
    assert refused["user"] == "mallory" and refused["event"] == "sign-up"
    assert (closed["user"], closed["code"], closed["by"]) == ("carol", 4008, "server")
    assert closed["peer"] == "192.0.2.7"
    assert "user" not in lost and lost["code"] is None and lost["by"] == "lost"


def test_a_refusals_json_peer_is_the_refused_address() -> None:
    """Handshakes are refused before a connection's task names its peer: the key was
    "-" while the sentence named the address."""
    stream = io.StringIO()
    logs = setup_logging("info", "json", stream=stream)
    try:
        oplog.refused("198.51.100.4", 429, "too many connections from that address")
    finally:
        logs.close()
    record = json.loads(stream.getvalue().splitlines()[-1])
    assert (record["peer"], record["status"]) == ("198.51.100.4", 429)
