"""``cfm serve`` as a process: SIGHUP reloads (never kills), descriptors run short
politely, the log goes where and how the operator asked (issue 15 items 3, 5 and 8)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import resource
import signal
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from tests.server.serve_proc import serve
from tests.wire import WireClient

pytestmark = pytest.mark.usefixtures("_no_cfm_env")


@pytest.fixture
def _no_cfm_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for key in list(os.environ):
        if key.startswith("CFM_"):
            monkeypatch.delenv(key)


def write_cert(ca: trustme.CA, chain: Path, key: Path) -> int:
    """A fresh certificate for 127.0.0.1 into ``chain``/``key``; its serial number."""
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).serial_number


async def served_serial(url: str, ca: trustme.CA) -> int:
    """The serial number of the certificate a new TLS handshake with the server shows."""
    host, port = re.match(r"wss://([\d.]+):(\d+)/", url).groups()  # type: ignore[union-attr]
    context = ssl.create_default_context()
    ca.configure_trust(context)
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port), ssl=context), 10)
    try:
        peer = writer.get_extra_info("peercert")
        return int(peer["serialNumber"], 16)
    finally:
        writer.close()


async def test_sighup_reloads_the_tls_certificate_and_keeps_everyone_connected(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    first = write_cert(ca, chain, key)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with serve("--data-dir", str(tmp_path / "data"), "--tls-cert", str(chain),
                     "--tls-key", str(key), "--log-level", "info") as server:
        assert server.url.startswith("wss://")
        assert await served_serial(server.url, ca) == first
        async with WireClient.connect(server.url, ssl=context) as alice:
            await alice.hello("alice")
            second = write_cert(ca, chain, key)  # the renewal
            mark = len(server.lines)
            server.proc.send_signal(signal.SIGHUP)
            await server.wait_line(r"SIGHUP: reloaded the TLS certificate", start=mark)
            assert await served_serial(server.url, ca) == second
            # A connection made before the reload carries on.
            await alice.send({"t": "join", "room": "#lobby"})
            assert (await alice.recv_until("joined"))["room"] == "#lobby"

            # A half-written renewal: refused, the server keeps the certificate it has.
            key.write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n")
            mark = len(server.lines)
            server.proc.send_signal(signal.SIGHUP)
            await server.wait_line(r"SIGHUP: .*still serving the old certificate", start=mark)
            assert await served_serial(server.url, ca) == second
            await alice.send({"t": "say", "room": "#lobby", "text": "still here", "id": "1"})
            assert (await alice.recv_until("ack"))["id"] == "1"

            # The whole pair again: taken. A refusal is not followed by "nothing to
            # reload (no TLS)", which told the operator TLS was off.
            third = write_cert(ca, chain, key)
            server.proc.send_signal(signal.SIGHUP)
            await server.wait_line(r"SIGHUP: reloaded the TLS certificate", start=mark)
            assert await served_serial(server.url, ca) == third
            assert "nothing to reload" not in "\n".join(server.lines[mark:])
        assert server.proc.returncode is None
    assert "Traceback" not in server.text()


async def test_sighup_reopens_the_log_file_after_rotation(tmp_path: Path) -> None:
    log_file = tmp_path / "cfm.log"
    async with serve("--data-dir", str(tmp_path / "data"), "--log-file", str(log_file),
                     "--log-level", "info", "--log-format", "json") as server:
        rotated = tmp_path / "cfm.log.1"
        log_file.rename(rotated)  # what logrotate does, before it signals
        server.proc.send_signal(signal.SIGHUP)
        for _ in range(200):  # bounded wait for the new file's first line
            if log_file.exists() and "SIGHUP" in log_file.read_text():
                break
            await asyncio.sleep(0.05)
        async with WireClient.connect(server.url) as alice:
            await alice.hello("alice")
        assert server.proc.returncode is None
    old = [json.loads(line) for line in rotated.read_text().splitlines()]
    new = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any("listening on" in line["msg"] for line in old)
    assert new[0]["msg"] == f"SIGHUP: reopened the log file {log_file}"
    assert {"ts", "level", "logger", "msg"} <= set(new[0])
    # Times carry their UTC offset.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", new[0]["ts"])
    assert all(line["level"] in ("debug", "info", "warning", "error") for line in old + new)


async def test_sighup_without_a_log_file_or_tls_is_harmless(tmp_path: Path) -> None:
    async with serve("--data-dir", str(tmp_path), "--log-level", "info") as server:
        server.proc.send_signal(signal.SIGHUP)
        await server.wait_line(r"SIGHUP: nothing to reload")
        async with WireClient.connect(server.url) as alice:
            assert (await alice.hello("alice"))["t"] == "welcome"
    assert server.proc.returncode == 0


async def test_cfm_log_level_is_honoured(tmp_path: Path) -> None:
    async with serve("--data-dir", str(tmp_path), env={"CFM_LOG_LEVEL": "debug"}) as server:
        await server.wait_line(r" DEBUG ")
    async with serve("--data-dir", str(tmp_path), env={"CFM_LOG_LEVEL": "error"}) as server:
        pass
    assert " INFO " not in server.text()


# The server runs on uvloop when it is installed (the `speed` extra).
UVLOOP = importlib.util.find_spec("uvloop") is not None


def _few_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


async def test_out_of_descriptors_is_one_line_per_interval_not_a_traceback_flood(
    tmp_path: Path,
) -> None:
    async with serve("--data-dir", str(tmp_path), "--log-level", "info",
                     "--max-conns-per-ip", "200", preexec_fn=_few_descriptors) as server:
        await server.wait_line(r"only 64 file descriptors are allowed")
        clients = await asyncio.gather(
            *(WireClient.open(server.url, open_timeout=2) for _ in range(100)),
            return_exceptions=True)
        assert any(isinstance(c, BaseException) for c in clients)  # some were turned away
        if not UVLOOP:  # libuv drops the excess connections itself, without a word
            await server.wait_line(r"cannot accept connections: Too many open files")
        for client in clients:
            if isinstance(client, WireClient):
                await client.close()
        # Once clients leave, new ones get in again.
        async with WireClient.connect(server.url, open_timeout=10) as late:
            assert (await late.hello("late"))["t"] == "welcome"
    text = server.text()
    assert "Traceback" not in text and "uvloop" not in text
    assert len(re.findall("cannot accept connections", text)) <= 3


def _soft_256() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    soft = 256 if hard == resource.RLIM_INFINITY else min(256, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_the_soft_descriptor_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("the hard descriptor limit here is too low to see a raise")
    async with serve("--data-dir", str(tmp_path), preexec_fn=_soft_256) as server:
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
    soft = int(re.search(r"Max open files\s+(\d+)", limits).group(1))  # type: ignore[union-attr]
    assert soft > 256


def test_an_error_in_the_server_is_not_chained_to_uvloops_absence() -> None:
    from cfm_common.eventloop import run_event_loop

    async def fails() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError) as caught:
        run_event_loop(fails())
    assert caught.value.__context__ is None


async def test_ctrl_c_with_the_output_piped_to_a_reader_that_died_still_shuts_down_cleanly(
        tmp_path: Path) -> None:
    """``cfm serve | tee log`` and Ctrl+C: tee dies of the same SIGINT, so the server's
    "shutting down" line meets a closed pipe. That write used to fail and skip the stop
    (clients lost the connection without a close code, exit status 1)."""
    from tests.faults.procs import ServerProcess
    from tests.wire import signed_in

    server = ServerProcess(tmp_path / "data", "--store", "memory")
    url = await server.start()
    assert server.proc is not None and server._drain is not None
    try:
        async with signed_in(url, "alice") as alice:
            # The reader of the server's output goes away (as tee does).
            server._drain.cancel()
            server.proc._transport.get_pipe_transport(1).close()  # type: ignore[attr-defined]
            await asyncio.sleep(0.2)
            server.proc.send_signal(signal.SIGINT)
            code = await alice.wait_closed(15)
            assert code in (1001, 1012), code  # a close frame, not a lost connection
        assert await asyncio.wait_for(server.proc.wait(), 15) == 0
    finally:
        if server.running:
            server.kill()
            await server.proc.wait()


async def test_a_failing_step_of_the_shutdown_still_closes_the_store(tmp_path: Path) -> None:
    """A step of ``stop`` that raises (here the AI contacts' stop) used to skip the
    store's close: the database stayed marked open, and once the process ended without
    its WAL the next start refused the data dir as a copy made without it."""
    from cfm_server.server import Server
    from tests.conftest import make_config
    from tests.ports import free_port

    config = make_config(tmp_path, data_dir=tmp_path / "data", store="sqlite",
                         port=free_port())
    server = Server(config)
    await server.start()

    async def fails() -> None:
        raise RuntimeError("a step that fails")

    server.ai_contacts.stop = fails  # type: ignore[method-assign]
    await server.stop()
    again = Server(config)
    await again.start()  # the data dir is free and whole
    await again.stop()
