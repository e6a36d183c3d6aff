"""Every message handled at least once, every reply landing once — across kill -9.

The guarantee a Bot gives (docs/bots.md, "Delivery guarantees"): a message counts as
handled once its handlers finished and their sends were acked; a bot killed before that
handles it again after its restart, and the replies' ids, derived from the message
answered, make the server store the repeated replies once. With a ``seen_file`` and
without one alike.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cfm_common.bot import Bot
from cfm_common.client import Client
from cfm_common.frames import Msg
from tests.sdk.conftest import Recorder
from tests.sdk.test_echo_bot import child_env, say_when_online, stop

SLOW_BOT = Path(__file__).with_name("bots") / "slow_bot.py"


async def start_bot(url: str, tmp_path: Path, seen: Path | None,
                    procs: list[asyncio.subprocess.Process]) -> asyncio.subprocess.Process:
    args = [sys.executable, str(SLOW_BOT), url] + ([str(seen)] if seen else [])
    proc = await asyncio.create_subprocess_exec(
        *args, env=child_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    procs.append(proc)
    return proc


async def wait_line(proc: asyncio.subprocess.Process, text: str, timeout: float = 30) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(timeout):
        while text not in (await proc.stdout.readline()).decode():
            if proc.returncode is not None:
                raise AssertionError("the bot exited")


def bot_texts(events: Recorder) -> list[str]:
    return [m.text for m in events.msgs() if m.sender == "slowbot"]


@pytest.fixture
async def procs() -> Any:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        await stop(proc)


@pytest.mark.parametrize("with_seen_file", [True, False])
async def test_a_handler_killed_midway_runs_again_and_its_replies_land_once(
    server: Any, tmp_path: Path, procs: list[asyncio.subprocess.Process], with_seen_file: bool
) -> None:
    seen = tmp_path / "seen.json" if with_seen_file else None
    bot = await start_bot(server.url, tmp_path, seen, procs)
    async with Client(server.url, "alice", token_file=False) as alice:
        events = Recorder(alice)
        await say_when_online(alice, "job1", "slowbot")
        await wait_line(bot, "started job1")
        # Killed 1.5 s into the 3 s handler: it replied once and has not finished. (The
        # seen file of old was written 1 s after a message was handed over.)
        await asyncio.sleep(1.5)
        bot.send_signal(signal.SIGKILL)
        await bot.wait()

        bot = await start_bot(server.url, tmp_path, seen, procs)
        await events.wait(lambda r: "done with job1" in bot_texts(r), timeout=30)
        # A later message shows the bot is past job1 (one handler at a time, in order).
        await alice.say("job2", to="slowbot")
        await events.wait(lambda r: "done with job2" in bot_texts(r), timeout=30)
        assert bot_texts(events) == [
            "working on job1", "done with job1", "working on job2", "done with job2"]


async def test_the_read_mark_never_passes_a_message_still_being_handled(
    server: Any, clients: Any
) -> None:
    bot = Bot(server.url, "helper", token_file=False, concurrency=4)
    release = asyncio.Event()
    finished: list[str] = []

    @bot.on_message
    async def handle(msg: Msg) -> None:
        if msg.text == "slow":
            await release.wait()
        await bot.reply(msg, f"re: {msg.text}")
        finished.append(msg.text)

    await bot.start()
    try:
        alice = clients(server.url, "alice")
        await alice.connect()
        events = Recorder(alice)
        await alice.say("slow", to="helper")  # seq 1
        await alice.say("fast", to="helper")  # seq 2; its reply is seq 3
        await events.wait(lambda r: any(m.text == "re: fast" for m in r.msgs()))
        # The fast handler's task is over (its message counted as done), the slow one's not.
        await asyncio.wait_for(_until(lambda: len(bot._tasks) == 1), 10)
        room = "dm:alice:helper"
        assert bot.client._read_marks.get(room, 0) == 0, "marked past a running handler"
        release.set()
        await events.wait(lambda r: any(m.text == "re: slow" for m in r.msgs()))
        await asyncio.wait_for(_until(lambda: bot.client._read_marks.get(room) == 4), 10)
    finally:
        await bot.stop()
    assert sorted(finished) == ["fast", "slow"]


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)
