"""contrib/nginx/cfm.conf and contrib/caddy/Caddyfile in front of a real server, where
nginx and Caddy are installed: WebSocket upgrades pass, the client's address reaches
the server (a forged X-Forwarded-For does not), /metrics stays private."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.ports import free_port
from tests.wire import WireClient, eventually

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"


async def start(*command: str, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    for _ in range(200):  # bounded wait until it listens
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if proc.returncode is not None:
                out = await proc.stdout.read() if proc.stdout else b""
                raise AssertionError(f"{command[0]} exited: {out.decode()[-2000:]}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return proc
    proc.kill()
    raise AssertionError(f"{command[0]} did not listen on {port}")


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def check_through(proxy_url: str, http_base: str, server: Any,
                        caplog: pytest.LogCaptureFixture, **tls: Any) -> None:
    caplog.set_level(logging.INFO, logger="cfm_server.conn")
    headers = {"X-Forwarded-For": "203.0.113.66"}  # forged by the client
    async with WireClient.connect(proxy_url, additional_headers=headers, **tls) as alice:
        assert (await alice.hello("alice"))["t"] == "welcome"
        await alice.send({"t": "join", "room": "#lobby"})
        assert (await alice.recv_until("joined"))["room"] == "#lobby"
    await eventually(lambda: any("closed alice" in r.getMessage() for r in caplog.records))
    connections = [r.getMessage() for r in caplog.records
                   if r.getMessage().startswith("connection from")]
    assert connections == ["connection from 127.0.0.1"], connections
    verify = tls.get("ssl", True)
    async with httpx.AsyncClient(verify=verify) as http:
        assert (await http.get(http_base + "/readyz")).status_code == 200
        assert (await http.get(http_base + "/healthz")).status_code == 200
        assert (await http.get(http_base + "/metrics")).status_code == 404


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
async def test_the_nginx_sample(server_factory: Any, tmp_path: Path,
                                caplog: pytest.LogCaptureFixture) -> None:
    server = await server_factory(trusted_proxies=["127.0.0.1"])
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    (tmp_path / "chain.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    port = free_port()
    site = (CONTRIB / "nginx" / "cfm.conf").read_text()
    site = site.replace("127.0.0.1:1863", f"127.0.0.1:{server.port}")
    site = re.sub(r"listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;", site)
    site = re.sub(r"\n\s*listen \[::\]:443 ssl;", "", site)
    site = re.sub(r"ssl_certificate .*;", f"ssl_certificate {tmp_path / 'chain.pem'};", site)
    site = re.sub(r"ssl_certificate_key .*;", f"ssl_certificate_key {tmp_path / 'key.pem'};",
                  site)
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off;\nmaster_process off;\npid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'logs' / 'error.log'};\nevents {{}}\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {tmp_path};\n"
        f"proxy_temp_path {tmp_path};\n{site}\n}}\n")
    proc = await start("nginx", "-p", str(tmp_path), "-c", str(conf), port=port)
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        await check_through(f"wss://127.0.0.1:{port}/ws", f"https://127.0.0.1:{port}",
                            server, caplog, ssl=context)
    finally:
        await stop(proc)


@pytest.mark.skipif(shutil.which("caddy") is None, reason="Caddy is not installed")
async def test_the_caddy_sample(server_factory: Any, tmp_path: Path,
                                caplog: pytest.LogCaptureFixture) -> None:
    server = await server_factory(trusted_proxies=["127.0.0.1"])
    sample = (CONTRIB / "caddy" / "Caddyfile").read_text()
    port = free_port()
    # The sample as it is, but on a plain loopback port (no certificate to fetch).
    config = ("{\n\tadmin off\n\tauto_https off\n\tstorage file_system "
              f"{tmp_path / 'caddy'}\n}}\n\n"
              + sample.replace("chat.example.org", f"http://127.0.0.1:{port}")
              .replace("127.0.0.1:1863", f"127.0.0.1:{server.port}"))
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(config)
    proc = await start("caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile",
                       port=port)
    try:
        await check_through(f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}",
                            server, caplog)
    finally:
        await stop(proc)
