"""Bot against a real server: handlers, replies, its own messages, restarts."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from cfm_common.bot import Bot
from cfm_common.frames import Contact, Msg
from tests.sdk.conftest import Recorder

LOBBY = "#lobby"


def texts_from(recorder: Recorder, sender: str) -> list[str]:
    return [m.text for m in recorder.msgs() if m.sender == sender and m.kind == "text"]


async def test_a_bot_answers_others_and_ignores_its_own_messages(
    server: Any, clients: Any, bots: Any
) -> None:
    bot = bots(server.url, "parrot", display="Parrot")

    @bot.on_message
    async def parrot(msg: Msg) -> None:
        # Were its own messages not ignored, it would answer "re: hi" with "re: re: hi".
        await bot.reply(msg, f"re: {msg.text}")

    await bot.start()
    await bot.client.join(LOBBY)
    alice = clients(server.url, "alice")
    await alice.connect()
    await alice.join(LOBBY)
    events = Recorder(alice)

    await alice.say("hi", room=LOBBY)
    await events.wait(lambda r: "re: hi" in texts_from(r, "parrot"))
    await alice.say("again", to="parrot")
    await events.wait(lambda r: "re: again" in texts_from(r, "parrot"))
    await alice.say("done", room=LOBBY)
    await events.wait(lambda r: "re: done" in texts_from(r, "parrot"))
    assert texts_from(events, "parrot") == ["re: hi", "re: again", "re: done"]
    [dm_reply] = [m for m in events.msgs() if m.text == "re: again"]
    assert dm_reply.room == "dm:alice:parrot"


async def test_nudges_and_contact_requests_reach_their_handlers(
    server: Any, clients: Any, bots: Any
) -> None:
    bot = bots(server.url, "buddy")
    added: asyncio.Queue[Contact] = asyncio.Queue()
    bot.on_nudge(bot.nudge_back)

    @bot.on_added_you
    async def welcome_new_friend(contact: Contact) -> None:
        await added.put(contact)
        await bot.client.say(f"hello {contact.name}!", to=contact.name)

    await bot.start()
    alice = clients(server.url, "alice")
    await alice.connect()
    events = Recorder(alice)

    await alice.nudge("buddy")
    await events.wait(lambda r: any(m.kind == "nudge" and m.sender == "buddy" for m in r.msgs()))
    await alice.contact("add", "buddy")
    contact = await asyncio.wait_for(added.get(), 5)
    assert (contact.op, contact.name) == ("added_you", "alice")
    await events.wait(lambda r: "hello alice!" in texts_from(r, "buddy"))


async def test_a_failing_handler_is_logged_and_the_bot_goes_on(
    server: Any, clients: Any, bots: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bot = bots(server.url, "fragile")

    @bot.on_message
    async def fragile(msg: Msg) -> None:
        if msg.text == "boom":
            raise RuntimeError("kaboom")
        await bot.reply(msg, "fine")

    await bot.start()
    alice = clients(server.url, "alice")
    await alice.connect()
    events = Recorder(alice)
    with caplog.at_level(logging.ERROR, logger="cfm_common.bot"):
        await alice.say("boom", to="fragile")
        await alice.say("ok?", to="fragile")
        await events.wait(lambda r: "fine" in texts_from(r, "fragile"))
    assert "kaboom" in caplog.text
    assert texts_from(events, "fragile") == ["fine"]


async def test_a_restarted_bot_does_not_answer_the_same_message_twice(
    server: Any, clients: Any, bots: Any, tmp_path: Path
) -> None:
    token_file = tmp_path / "counter.token"
    answered: list[str] = []

    def make_bot() -> Bot:
        bot = bots(server.url, "counter", token_file=token_file)

        @bot.on_message
        async def count(msg: Msg) -> None:
            answered.append(msg.text)
            await bot.reply(msg, f"#{len(answered)}")

        return bot

    first = make_bot()
    await first.start()
    alice = clients(server.url, "alice")
    await alice.connect()
    events = Recorder(alice)
    await alice.say("one", to="counter")
    await events.wait(lambda r: "#1" in texts_from(r, "counter"))
    await first.stop()

    await alice.say("two", to="counter")  # arrives while the bot is away
    second = make_bot()
    await second.start()
    await events.wait(lambda r: "#2" in texts_from(r, "counter"))
    await alice.say("three", to="counter")
    await events.wait(lambda r: "#3" in texts_from(r, "counter"))
    assert answered == ["one", "two", "three"]


async def test_handlers_run_concurrently_when_asked(server: Any, clients: Any, bots: Any) -> None:
    bot = bots(server.url, "juggler", concurrency=4)
    both_inside = asyncio.Event()
    inside = 0

    @bot.on_message
    async def slow(msg: Msg) -> None:
        nonlocal inside
        inside += 1
        if inside == 2:
            both_inside.set()
        await asyncio.wait_for(both_inside.wait(), 5)  # with one slot this would time out
        await bot.reply(msg, f"done {msg.text}")

    await bot.start()
    alice = clients(server.url, "alice")
    await alice.connect()
    events = Recorder(alice)
    await alice.say("a", to="juggler")
    await alice.say("b", to="juggler")
    await events.wait(lambda r: len(texts_from(r, "juggler")) == 2)
    assert sorted(texts_from(events, "juggler")) == ["done a", "done b"]


async def test_a_handler_may_stop_the_bot(server: Any, clients: Any, bots: Any) -> None:
    bot = bots(server.url, "quitter")

    @bot.on_message
    async def quit_on_bye(msg: Msg) -> None:
        if msg.text == "bye":
            await bot.reply(msg, "bye!")
            await bot.stop()

    await bot.start()
    alice = clients(server.url, "alice")
    await alice.connect()
    events = Recorder(alice)
    await alice.say("bye", to="quitter")
    await alice.say("anyone?", to="quitter")  # may or may not reach the bot: no answer
    await asyncio.wait_for(bot.wait_closed(), 5)
    assert bot.client.state.value == "closed"
    await events.wait(lambda r: "bye!" in texts_from(r, "quitter"))
    assert texts_from(events, "quitter") == ["bye!"]
