"""The operator drill (issue 15, "Done when"), every step a real process: start with
TLS and invites → users chat → an online backup while they write → restore into a new
directory → start there → every message acked before the backup, every token and every
invite still valid."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.server.serve_proc import serve
from tests.wire import WireClient

CFM = str(Path(sys.executable).with_name("cfm"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    for key in list(os.environ):
        if key.startswith("CFM_"):
            monkeypatch.delenv(key)


async def cfm(*args: str, cwd: Path) -> str:
    """Run the ``cfm`` command; its output (it must succeed)."""
    proc = await asyncio.create_subprocess_exec(
        CFM, *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, f"cfm {' '.join(args)} exited {proc.returncode}:\n{text}"
    return text


def invite_code(output: str) -> str:
    match = re.search(r"^\s+([0-9a-f]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+)$", output, re.M)
    assert match, output
    return match.group(1)


async def history(client: WireClient, room: str) -> list[dict[str, Any]]:
    await client.send({"t": "history", "room": room, "limit": 200})
    return (await client.recv_until("history", room=room))["msgs"]


async def test_the_operator_drill(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    flags = ("--registration", "invite", "--tls-cert", str(chain), "--tls-key", str(key))

    # 1. Start with TLS and invites; the operator makes the codes (relative paths).
    async with serve("--data-dir", str(tmp_path / "live"), *flags) as live:
        assert live.url.startswith("wss://")
        team = invite_code(await cfm("admin", "invite", "--uses", "2", "--data-dir", "live",
                                     cwd=tmp_path))
        spare = invite_code(await cfm("admin", "invite", "--data-dir", "live", cwd=tmp_path))

        # 2. Two invited users chat, in a room and directly.
        async with WireClient.connect(live.url, ssl=context) as alice, \
                WireClient.connect(live.url, ssl=context) as bob:
            assert (await alice.hello("alice", invite=team))["t"] == "welcome"
            assert (await bob.hello("bob", invite=team))["t"] == "welcome"
            tokens = {"alice": alice.token, "bob": bob.token}
            for client in (alice, bob):
                await client.send({"t": "join", "room": "#lobby"})
                await client.recv_until("joined")
            await bob.send({"t": "say", "to": "alice", "text": "psst", "id": "dm1"})
            await bob.recv_until("ack", id="dm1")

            # 3. An online backup while alice writes as fast as acks come back.
            acked: list[str] = []

            backed_up = asyncio.Event()

            async def write() -> None:
                i = after = 0
                while after < 5:  # on until five messages after the backup finished
                    if i >= 40:  # past a part of the burst: under the default 20 say/s
                        await asyncio.sleep(0.055)
                    await alice.send({"t": "say", "room": "#lobby", "text": f"m{i}",
                                      "id": f"m{i}"})
                    acked.append((await alice.recv_until("ack", id=f"m{i}"))["id"])
                    i += 1
                    after += backed_up.is_set()

            writer = asyncio.create_task(write())
            while len(acked) < 20 and not writer.done():
                await asyncio.sleep(0.01)
            acked_before = list(acked)
            report = await cfm("admin", "backup", "bk", "--data-dir", "live", cwd=tmp_path)
            backed_up.set()
            await writer
        assert "invite.key   yes" in report
    assert live.proc.returncode == 0

    backup = tmp_path / "bk"
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in backup.rglob("*")
               if p.is_file())

    # 4. Restore into a new directory and start there.
    restored = await cfm("admin", "restore", "bk", "--data-dir", "restored", cwd=tmp_path)
    assert "invite key restored" in restored
    async with serve("--data-dir", str(tmp_path / "restored"), *flags) as again:
        async with WireClient.connect(again.url, ssl=context) as alice, \
                WireClient.connect(again.url, ssl=context) as bob:
            # 5. Every token still signs in ...
            assert (await alice.hello("alice", tokens["alice"]))["t"] == "welcome"
            assert (await bob.hello("bob", tokens["bob"]))["t"] == "welcome"
            # ... every message acked before the backup is there, in order, no gap ...
            lobby = await history(alice, "#lobby")
            ids = [m["id"] for m in lobby]
            assert ids[: len(acked_before)] == acked_before
            assert ids == [f"m{i}" for i in range(len(ids))]
            assert len(ids) < len(acked)  # the writes went on after the backup's moment
            assert [m["seq"] for m in lobby] == list(range(1, len(lobby) + 1))
            assert [m["text"] for m in await history(bob, "dm:alice:bob")] == ["psst"]
        # ... an unused invite still lets someone in, a used-up one stays used up.
        async with WireClient.connect(again.url, ssl=context) as carol:
            assert (await carol.hello("carol", invite=spare))["t"] == "welcome"
        async with WireClient.connect(again.url, ssl=context) as dave:
            refused = await dave.hello("dave", invite=team)
            assert refused["code"] == "forbidden" and "used up" in refused["msg"]
        again.proc.send_signal(signal.SIGTERM)
    assert again.proc.returncode == 0
