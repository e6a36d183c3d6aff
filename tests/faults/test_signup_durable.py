"""A new identity's welcome (and its token) goes out only once the identity is stored:
a full disk answers `internal` and leaves the handle free, never a token the next start
would not know."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.faults.closing import read_until_closed
from tests.faults.test_storage import fill, tmpfs
from tests.wire import WireClient, signed_in


async def test_a_sign_up_the_disk_cannot_store_gets_no_token(
    tmp_path: Path, server_factory: Any
) -> None:
    data_dir = tmp_path / "tiny"
    with tmpfs(data_dir, "4m"):
        server = await server_factory(data_dir=data_dir, rate_limits=False)
        async with signed_in(server.url, "alice") as alice:
            await alice.send({"t": "join", "room": "#lobby"})
            await alice.recv_until("joined")
            ballast = fill(data_dir)
            # Fill what room the WAL had left, until a write is refused.
            for i in range(400):
                await alice.send({"t": "say", "room": "#lobby", "text": "x" * 4000,
                                  "id": f"a{i}"})
                reply = await alice.recv()
                while reply["t"] not in ("ack", "error"):
                    reply = await alice.recv()
                if reply["t"] == "error":
                    break
            else:
                raise AssertionError("the disk never filled up")

            async with WireClient.connect(server.url) as bob:
                await bob.send({"t": "hello", "v": 1, "name": "bob"})
                refused = await bob.recv()
                assert refused["t"] == "error" and refused["code"] == "internal", refused
                assert refused["ref"] == "hello" and "token" not in refused
                assert await read_until_closed(bob, timeout=10) == 1013

            ballast.unlink()
            # The handle is still free: the same name signs up now, no token needed.
            async with signed_in(server.url, "bob") as bob:
                assert bob.welcome["name"] == "bob" and bob.welcome["token"]
        port = server.port
        await server.stop()
        # ... and that identity is the one the next start knows.
        server = await server_factory(data_dir=data_dir, port=port)
        async with WireClient.connect(server.url) as impostor:
            await impostor.send({"t": "hello", "v": 1, "name": "bob"})
            assert (await impostor.recv())["code"] == "name_taken"
        await server.stop()


async def test_a_failed_sign_up_gives_its_invite_use_back(
    tmp_path: Path, server_factory: Any
) -> None:
    from typer.testing import CliRunner

    from cfm_cli.main import app

    data_dir = tmp_path / "tiny"
    with tmpfs(data_dir, "4m"):
        server = await server_factory(data_dir=data_dir, rate_limits=False,
                                      registration="invite")
        made = CliRunner().invoke(app, ["admin", "invite", "--uses", "1",
                                        "--data-dir", str(data_dir)])
        assert made.exit_code == 0, made.output
        code = next(line.strip() for line in made.output.splitlines()
                    if line.startswith("  ") and line.count("-") == 3)
        ballast = fill(data_dir)
        # Whatever room the WAL had left: sign-ups until one cannot be stored.
        for i in range(200):
            async with WireClient.connect(server.url) as client:
                await client.send({"t": "hello", "v": 1, "name": f"u{i}", "invite": code})
                reply = await client.recv()
            if reply["t"] == "error":
                break
            raise AssertionError(f"u{i} signed up while the disk was full: {reply}")
        assert reply["code"] == "internal", reply
        ballast.unlink()
        async with WireClient.connect(server.url) as client:
            welcome = await client.hello("carol", invite=code)  # the one use is still there
            assert welcome["t"] == "welcome", welcome
        async with WireClient.connect(server.url) as client:
            used_up = await client.hello("dave", invite=code)
            assert used_up["code"] == "forbidden" and "used up" in used_up["msg"]
        await server.stop()
