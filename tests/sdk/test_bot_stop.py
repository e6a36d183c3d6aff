"""Bot.stop() lets running handlers finish before it closes the connection, so their
read marks move and a restarted bot does not answer the same message again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cfm_common.bot import Bot
from cfm_common.frames import Msg
from tests.sdk.conftest import Recorder


async def test_a_handler_still_working_at_stop_is_not_answered_again(
    server: Any, clients: Any, tmp_path: Path
) -> None:
    answered: list[str] = []
    replied = asyncio.Event()
    finish = asyncio.Event()

    def make() -> Bot:
        bot = Bot(server.url, "counter", token_file=tmp_path / "counter.token")

        @bot.on_message
        async def count(msg: Msg) -> None:
            answered.append(msg.text)
            await bot.reply(msg, f"#{len(answered)}")
            replied.set()
            await finish.wait()  # still working when stop() is called

        return bot

    first = make()
    await first.start()
    alice = clients(server.url, "alice")
    await alice.connect()
    events = Recorder(alice)
    await alice.say("one", to="counter")
    await asyncio.wait_for(replied.wait(), 10)
    stopping = asyncio.create_task(first.stop())
    # While the handler works, stop() waits, and the connection stays up for it (its
    # read mark still has to go out): nothing closes within a second.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while loop.time() < deadline:
        assert not stopping.done()
        assert first.client.state.value == "connected"
        await asyncio.sleep(0.02)
    finish.set()
    await asyncio.wait_for(stopping, 10)
    assert first.client.state.value == "closed"

    second = make()
    await second.start()
    try:
        # Something new after the restart is answered: the bot is up and reading.
        await alice.say("two", to="counter")
        await events.wait(lambda r: "#2" in [m.text for m in r.msgs()])
        assert answered == ["one", "two"]  # "one" was not answered a second time
    finally:
        await second.stop()


async def test_a_handler_that_stops_the_bot_is_not_handled_again(
    server: Any, clients: Any, tmp_path: Path
) -> None:
    handled: list[str] = []

    def make() -> Bot:
        bot = Bot(server.url, "quitter", token_file=tmp_path / "quitter.token")

        @bot.on_message
        async def on_message(msg: Msg) -> None:
            handled.append(msg.text)
            if msg.text == "!quit":
                await bot.stop()

        return bot

    first = make()
    await first.start()
    alice = clients(server.url, "alice")
    await alice.connect()
    await alice.say("hello", to="quitter")
    await alice.say("!quit", to="quitter")
    await asyncio.wait_for(first.wait_closed(), 10)
    assert handled == ["hello", "!quit"]

    second = make()
    await second.start()
    try:
        await alice.say("still there?", to="quitter")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while "still there?" not in handled and loop.time() < deadline:
            await asyncio.sleep(0.02)
        # "!quit" was marked read before the first bot closed: not handled again.
        assert handled == ["hello", "!quit", "still there?"]
    finally:
        await second.stop()
