"""The HTTP side of the port, the handshake's checks, rate limits and abuse closes."""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.wire import WireClient, eventually, signed_in


async def get(server, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(server.http_url + path)


async def test_healthz_and_unknown_paths(server) -> None:
    response = await get(server, "/healthz")
    assert response.status_code == 200
    assert (await get(server, "/nope")).status_code == 404


async def test_metrics_report_the_servers_activity(server_factory) -> None:
    server = await server_factory()
    other = await server_factory()  # its own registry: no clash, no shared counts
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#lobby"})
        await alice.send({"t": "say", "room": "#lobby", "text": "hi", "id": "1"})
        await alice.recv_until("ack")
        await alice.send({"t": "join", "room": "bad"})
        await alice.recv_until("error")
        text = (await get(server, "/metrics")).text
    assert "cfm_connections 1.0" in text
    assert "cfm_sessions 1.0" in text
    assert "cfm_users_online 1.0" in text
    assert "cfm_rooms 1.0" in text
    assert "cfm_messages_stored_total 1.0" in text
    assert 'cfm_frames_in_total{type="say"} 1.0' in text
    assert 'cfm_frames_out_total{type="ack"} 1.0' in text
    assert 'cfm_errors_total{code="bad_frame"} 1.0' in text
    assert "cfm_commit_seconds_count 1.0" in text
    assert "cfm_messages_stored_total 0.0" in (await get(other, "/metrics")).text


async def test_a_handshake_without_the_subprotocol_is_refused(server) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with WireClient.connect(server.url, subprotocols=None):
            pass
    assert refused.value.response.status_code in (400, 426)
    with pytest.raises(InvalidStatus):
        async with WireClient.connect(server.url, subprotocols=["chat"]):
            pass
    # Plain HTTP to /ws is not an upgrade.
    assert (await get(server, "/ws")).status_code in (400, 426)


async def test_origins_are_checked_when_configured(server_factory) -> None:
    server = await server_factory(allowed_origins=["https://ok.example"])
    with pytest.raises(InvalidStatus) as refused:
        async with WireClient.connect(server.url, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with WireClient.connect(server.url, origin="https://ok.example") as client:
        assert (await client.hello("alice"))["t"] == "welcome"
    async with WireClient.connect(server.url) as client:  # terminal clients send none
        assert (await client.hello("bob"))["t"] == "welcome"


async def test_connections_per_ip_are_capped(server_factory) -> None:
    server = await server_factory(max_conns_per_ip=2)
    first = await WireClient.open(server.url)
    second = await WireClient.open(server.url)
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with WireClient.connect(server.url):
                pass
        assert refused.value.response.status_code == 429
    finally:
        await first.close()
        await second.close()
    await eventually(lambda: not server._ip_counter.counts)
    async with WireClient.connect(server.url) as client:
        assert (await client.hello("carol"))["t"] == "welcome"


async def test_no_rate_limits_lifts_the_ip_cap_and_the_buckets(server_factory) -> None:
    server = await server_factory(max_conns_per_ip=1, say_burst=1, say_rate=0.1,
                                  rate_limits=False)
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob"):
        await alice.send({"t": "join", "room": "#lobby"})
        for i in range(5):
            await alice.send({"t": "say", "room": "#lobby", "text": "x", "id": str(i)})
        assert len(await alice.recv_n("ack", 5)) == 5
        assert "rates" not in alice.welcome["limits"]


async def test_rate_limited_frames_get_retry_ms(server_factory) -> None:
    server = await server_factory(say_rate=0.5, say_burst=2)
    async with signed_in(server.url, "alice") as alice:
        assert alice.welcome["limits"]["rates"]["say"] == {"per_s": 0.5, "burst": 2}
        await alice.send({"t": "join", "room": "#lobby"})
        for i in range(3):
            await alice.send({"t": "say", "room": "#lobby", "text": "x", "id": f"s{i}"})
        error = await alice.recv_until("error")
        assert error["code"] == "rate_limited" and error["ref"] == "s2"
        assert 0 < error["retry_ms"] <= 2000
        assert [a["id"] for a in await alice.recv_n("ack", 2)] == ["s0", "s1"]


async def test_repeated_errors_close_4008(server_factory) -> None:
    server = await server_factory(abuse_max=5)
    async with signed_in(server.url, "alice") as alice:
        for _ in range(5):
            await alice.send({"t": "nope"})
        assert await alice.wait_closed() == 4008


async def test_repeated_rate_limit_breaches_close_4008(server_factory) -> None:
    server = await server_factory(abuse_max=5, typing_rate=0.1, typing_burst=1)
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#lobby"})
        # One passes; the first refusal tells the client to wait; the five sent regardless
        # of it are counted (limits.AbuseMeter.refused).
        for _ in range(7):
            await alice.send({"t": "typing", "room": "#lobby"})
        assert await alice.wait_closed() == 4008
