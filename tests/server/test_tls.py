"""TLS of cfm's own (wss:// and https:// on one port) and clients behind a trusted proxy."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from typer.testing import CliRunner
from websockets.exceptions import InvalidStatus

from cfm_cli.main import app
from cfm_common.client import Client, ClientError
from cfm_common.frames import Msg
from cfm_server.netaddr import TrustedProxies
from tests.wire import WireClient, eventually


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pem_files(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(certificate chain, key, CA) as PEM files; the certificate is for 127.0.0.1."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    return chain, key, ca_file


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_a_tls_server_serves_wss_and_https(
    server_factory: Any, pem_files: tuple[Path, Path, Path], ca: trustme.CA
) -> None:
    chain, key, ca_file = pem_files
    server = await server_factory(tls_cert=chain, tls_key=key)
    assert server.url.startswith("wss://127.0.0.1:") and server.url.endswith("/ws")
    assert server.http_url.startswith("https://127.0.0.1:")

    async with Client(server.url, "alice", token_file=False, ssl=client_context(ca)) as alice:
        await alice.join("#lobby")
        ack = await alice.say("over TLS", room="#lobby")
        assert ack.seq == 1
    # One client for both requests: the second must not go into a closed connection.
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=ca_file)) as http:
        health = await http.get(server.http_url + "/healthz")
        assert health.status_code == 200 and health.text == "ok\n"
        metrics = await http.get(server.http_url + "/metrics")
        assert "cfm_messages_stored_total 1.0" in metrics.text


async def test_ssl_cert_file_makes_a_private_ca_trusted(
    server_factory: Any, pem_files: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, key, ca_file = pem_files
    server = await server_factory(tls_cert=chain, tls_key=key)
    # What the TUI and bots get: no ssl= argument, only the environment.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    async with Client(server.url, "bob", token_file=False) as bob:
        assert (await bob.join("#lobby")).room == "#lobby"


async def test_an_untrusted_certificate_is_a_clear_error(
    server_factory: Any, pem_files: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    chain, key, _ = pem_files
    server = await server_factory(tls_cert=chain, tls_key=key)
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))
    client = Client(server.url, "carol", token_file=False, reconnect=False)
    with pytest.raises(ClientError) as refused:
        await client.connect()
    await client.close()
    assert refused.value.code == "bad_certificate"
    assert "not trusted" in refused.value.msg and "SSL_CERT_FILE" in refused.value.msg
    # Waiting for the server does not mean waiting out a certificate: that needs a person.
    waiting = Client(server.url, "carol", token_file=False)
    with pytest.raises(ClientError) as refused:
        await asyncio.wait_for(waiting.connect(wait=True), 10)
    await waiting.close()
    assert refused.value.code == "bad_certificate"
    # A plain ws:// client gets no WebSocket out of a TLS port either.
    plain = Client(server.url.replace("wss://", "ws://"), "carol", token_file=False,
                   reconnect=False, request_timeout=5)
    with pytest.raises(ClientError) as refused:
        await plain.connect()
    await plain.close()
    assert refused.value.code == "connect_failed"


def test_cfm_serve_explains_tls_files_it_cannot_use(
    tmp_path: Path, pem_files: tuple[Path, Path, Path], ca: trustme.CA
) -> None:
    chain, _, _ = pem_files
    runner = CliRunner()
    base = ["serve", "--port", "0", "--no-ai", "--data-dir", str(tmp_path / "data")]
    result = runner.invoke(app, [*base, "--tls-cert", str(chain)])
    assert result.exit_code == 2 and "tls_key" in result.output, result.output
    result = runner.invoke(app, [*base, "--tls-cert", str(chain), "--tls-key",
                                 str(tmp_path / "missing.pem")])
    assert result.exit_code == 2 and "does not exist" in result.output, result.output
    other_key = tmp_path / "other-key.pem"
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other_key))
    result = runner.invoke(app, [*base, "--tls-cert", str(chain), "--tls-key", str(other_key)])
    assert result.exit_code == 2, result.output
    assert "key must match" in result.output and "Traceback" not in result.output


# --- behind a reverse proxy ---------------------------------------------------------


def test_the_client_is_the_rightmost_address_not_a_trusted_proxy() -> None:
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])
    assert proxies.client_ip("127.0.0.1", "203.0.113.7") == "203.0.113.7"
    # The left part is the client's to write: a forged entry there changes nothing.
    assert proxies.client_ip("127.0.0.1", "1.2.3.4, 203.0.113.7, 10.1.2.3") == "203.0.113.7"
    assert proxies.client_ip("127.0.0.1", "10.0.0.2, 10.0.0.1") == "10.0.0.2"
    assert proxies.client_ip("127.0.0.1", "not-an-ip, 203.0.113.7") == "203.0.113.7"
    assert proxies.client_ip("127.0.0.1", "203.0.113.7, garbage") == "127.0.0.1"
    assert proxies.client_ip("127.0.0.1", " 2001:db8::1 ") == "2001:db8::1"
    assert proxies.client_ip("127.0.0.1", None) == "127.0.0.1"
    # Ports, brackets and IPv4 mapped into IPv6 (a dual-stack listener's view).
    assert proxies.client_ip("::ffff:127.0.0.1", "203.0.113.7:5678") == "203.0.113.7"
    assert proxies.client_ip("127.0.0.1", "[2001:db8::1]:443") == "2001:db8::1"
    assert proxies.client_ip("127.0.0.1", "::ffff:10.0.0.9, ::ffff:203.0.113.7") == \
        "203.0.113.7"
    # From an address that is no trusted proxy the header is ignored.
    assert proxies.client_ip("198.51.100.1", "203.0.113.7") == "198.51.100.1"
    assert TrustedProxies([]).client_ip("127.0.0.1", "203.0.113.7") == "127.0.0.1"


async def test_the_per_ip_cap_counts_clients_behind_a_trusted_proxy(server_factory) -> None:
    server = await server_factory(max_conns_per_ip=1, trusted_proxies=["127.0.0.1"])

    def via(client_ip: str) -> dict[str, Any]:
        return {"additional_headers": {"X-Forwarded-For": client_ip}}

    first = await WireClient.open(server.url, **via("203.0.113.7"))
    second = await WireClient.open(server.url, **via("203.0.113.8"))  # another person
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with WireClient.connect(server.url, **via("203.0.113.7")):
                pass
        assert refused.value.response.status_code == 429
    finally:
        await first.close()
        await second.close()
    await eventually(lambda: not server._ip_counter.counts)


async def test_several_x_forwarded_for_lines_are_one_list(server_factory) -> None:
    # A proxy may add its own header line beside the client's: the right-most still counts.
    # From an untrusted peer two lines are ignored like one (they once broke the handshake).
    for trusted in (["127.0.0.1"], []):
        server = await server_factory(max_conns_per_ip=1, trusted_proxies=trusted)
        headers = [("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "203.0.113.7")]
        async with WireClient.connect(server.url, additional_headers=headers) as client:
            assert (await client.hello("alice" if trusted else "bob"))["t"] == "welcome"
            counted = set(server._ip_counter.counts)
        assert counted == ({"203.0.113.7"} if trusted else {"127.0.0.1"})


async def test_without_trusted_proxies_x_forwarded_for_is_ignored(server_factory) -> None:
    server = await server_factory(max_conns_per_ip=1)
    first = await WireClient.open(server.url,
                                  additional_headers={"X-Forwarded-For": "203.0.113.7"})
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with WireClient.connect(
                    server.url, additional_headers={"X-Forwarded-For": "203.0.113.8"}):
                pass
        assert refused.value.response.status_code == 429
    finally:
        await first.close()


def test_an_encrypted_key_is_refused_rather_than_prompted_for(
    tmp_path: Path, pem_files: tuple[Path, Path, Path]
) -> None:
    import subprocess

    chain, key, _ = pem_files
    encrypted = tmp_path / "encrypted.pem"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret",
                    "-out", str(encrypted)], check=True, capture_output=True)
    result = CliRunner().invoke(app, ["serve", "--port", "0", "--no-ai", "--data-dir",
                                      str(tmp_path / "data"), "--tls-cert", str(chain),
                                      "--tls-key", str(encrypted)], input="")
    assert result.exit_code == 2, result.output
    assert "is encrypted" in result.output and "openssl pkey" in result.output


def test_trusted_proxies_must_be_addresses(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--port", "0", "--no-ai", "--data-dir",
                                      str(tmp_path), "--trusted-proxy", "my-proxy"])
    assert result.exit_code == 2 and "trusted_proxies" in result.output, result.output


async def test_the_ai_contacts_come_online_on_a_tls_server(
    server_factory: Any, pem_files: tuple[Path, Path, Path], ca: trustme.CA
) -> None:
    # The certificate names the public host, not what the server dials to reach itself.
    cert = ca.issue_cert("chat.example.org")
    chain, key = pem_files[0].with_name("public.pem"), pem_files[1].with_name("public.key")
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    server = await server_factory(tls_cert=chain, tls_key=key, ai_enabled=True)
    context = client_context(ca)
    context.check_hostname = False  # the test dials 127.0.0.1, the certificate names a host
    async with Client(server.url, "alice", token_file=False, ssl=context) as alice:
        ack = await alice.say("what is 2+2?", to="smartybot")
        async with asyncio.timeout(20):
            async for event in alice:
                if isinstance(event, Msg) and event.sender == "smartybot" \
                        and event.seq > ack.seq:
                    assert "4" in event.text
                    break
