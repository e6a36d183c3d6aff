"""A bot started before its server (or while it restarts) waits for it, and a signal
ends that wait cleanly."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from cfm_common.client import Client
from tests.ports import free_port
from tests.sdk.conftest import Recorder
from tests.sdk.test_echo_bot import ECHO_BOT, child_env, echoes, say_when_online


async def test_the_echo_bot_waits_for_a_server_that_is_not_up_yet(
    server_factory: Any, tmp_path: Path
) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    bot = await asyncio.create_subprocess_exec(
        sys.executable, str(ECHO_BOT), url, env=child_env(tmp_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        assert bot.stderr is not None
        # It says it will try again, and does not exit.
        async with asyncio.timeout(30):
            line = b""
            while b"trying again" not in line:
                line = await bot.stderr.readline()
                assert line, "the bot exited instead of waiting"
        assert bot.returncode is None
        server = await server_factory(port=port)
        async with Client(server.url, "alice", token_file=False) as alice:
            events = Recorder(alice)
            await say_when_online(alice, "you waited", "echo")
            await events.wait(lambda r: "you waited" in echoes(r), timeout=30)
    finally:
        if bot.returncode is None:
            bot.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(bot.wait(), 20) == 0


async def test_a_signal_ends_a_bot_still_waiting_for_its_server(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    bot = await asyncio.create_subprocess_exec(
        sys.executable, str(ECHO_BOT), url, env=child_env(tmp_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    assert bot.stderr is not None
    async with asyncio.timeout(30):
        while b"trying again" not in await bot.stderr.readline():
            pass
    bot.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(bot.wait(), 20) == 0
