"""The Bot's conveniences against a real server, written with ``cfm_common.testing`` as
a bot author would: on_ready, every(), typed handlers, commands, typing(), and the
package-level imports."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cfm_common import Bot, Client, ClientError
from cfm_common.frames import Member, Msg, Presence, Read, Typing, Welcome
from cfm_common.testing import TestServer, cfm_server, running_server
from tests.wire import eventually

__all__ = ["cfm_server"]  # the fixture, as `pytest_plugins = ["cfm_common.testing"]` gives it


async def test_commands_are_routed_with_their_arguments(cfm_server: TestServer) -> None:
    bot = Bot(cfm_server.url, "scorer", token_file=False)
    plain: list[str] = []

    @bot.command("score")
    async def score(msg: Msg, args: list[str]) -> None:
        """the score of a player"""
        await bot.reply(msg, f"score {args}")

    @bot.on_message
    async def other(msg: Msg) -> None:
        plain.append(msg.text)

    await bot.start()
    try:
        alice = await cfm_server.client("alice")
        for text in ('!score bob "big team"', "!SCORE", "!nope", "!help", "hello"):
            await alice.say(text, to="scorer")
        replies = [(await cfm_server.next_message(alice, sender="scorer")).text
                   for _ in range(4)]
        assert replies == [
            "score ['bob', 'big team']",
            "score []",
            "I don't know !nope. Try: !score",
            "Commands:\n!score — the score of a player",
        ]
        await eventually(lambda: plain == ["hello"])
    finally:
        await bot.stop()


async def test_on_ready_runs_after_every_sign_in_and_joins_rooms(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        bot = Bot(server.url, "greeter", token_file=False)
        readies: list[Welcome] = []

        @bot.on_ready
        async def ready(welcome: Welcome) -> None:
            await bot.client.join("#lobby")
            readies.append(welcome)

        heard: list[str] = []

        @bot.on_message
        async def hear(msg: Msg) -> None:
            heard.append(msg.text)

        await bot.start()
        try:
            await eventually(lambda: len(readies) == 1)
            alice = await server.client("alice")
            await alice.join("#lobby")
            await alice.say("one", room="#lobby")
            await eventually(lambda: heard == ["one"])
            await server.restart()
            await eventually(lambda: len(readies) == 2, timeout=15)
            await alice.say("two", room="#lobby")
            await eventually(lambda: heard == ["one", "two"], timeout=15)
        finally:
            await bot.stop()


async def test_every_runs_a_job_on_schedule_and_keyed_says_post_once(
    cfm_server: TestServer,
) -> None:
    bot = Bot(cfm_server.url, "ticker", token_file=False)
    runs: list[int] = []

    @bot.on_ready
    async def ready(welcome: Welcome) -> None:
        await bot.client.join("#lobby")

    @bot.every(0.05, first=0)
    async def tick() -> None:
        runs.append(len(runs))
        # The same key each time: the server stores the post once.
        await bot.say("daily news", room="#lobby", key="news-1")
        if len(runs) == 2:
            raise RuntimeError("a failing run is logged; the job goes on")

    await bot.start()
    try:
        await eventually(lambda: len(runs) >= 4)
    finally:
        await bot.stop()
    alice = await cfm_server.client("alice")
    await alice.join("#lobby")
    page = await alice.history("#lobby", after=0)
    assert [m.text for m in page.msgs] == ["daily news"]


async def test_typed_handlers_get_their_events(cfm_server: TestServer) -> None:
    bot = Bot(cfm_server.url, "watcher", token_file=False)
    got: dict[str, list[object]] = {"presence": [], "typing": [], "read": [], "member": []}
    for kind in got:
        def make(kind: str = kind) -> Any:  # one handler per kind
            async def handler(event: object) -> None:
                got[kind].append(event)
            return handler
        getattr(bot, f"on_{kind}")(make())

    @bot.on_ready
    async def ready(welcome: Welcome) -> None:
        await bot.client.join("#lobby")

    await bot.start()
    try:
        await eventually(lambda: bot.client.welcome is not None)
        alice = await cfm_server.client("alice")
        await alice.join("#lobby")
        await alice.set_presence(status="busy")
        await alice.typing(room="#lobby")
        await alice.say("hi", room="#lobby")
        ack = await alice.say("hi", to="watcher")
        await alice.mark_read(ack.room, ack.seq)  # a read mark in a DM goes to the other side
        await eventually(lambda: all(got.values()), timeout=10)
    finally:
        await bot.stop()
    assert isinstance(got["member"][0], Member) and got["member"][0].name == "alice"
    assert any(isinstance(p, Presence) and p.status == "busy" for p in got["presence"])
    assert isinstance(got["typing"][0], Typing) and isinstance(got["read"][0], Read)


async def test_typing_context_keeps_the_indicator_alive(
    cfm_server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cfm_common import bot as bot_module

    monkeypatch.setattr(bot_module, "TYPING_REFRESH", 0.6)  # within the typing budget
    bot = Bot(cfm_server.url, "thinker", token_file=False)
    release = asyncio.Event()

    @bot.on_message
    async def think(msg: Msg) -> None:
        async with bot.typing(msg):
            await release.wait()
        await bot.reply(msg, "done")

    await bot.start()
    try:
        alice = await cfm_server.client("alice")
        typings: list[Typing] = []

        async def watch() -> None:
            async for event in alice:
                if isinstance(event, Typing):
                    typings.append(event)

        watcher = asyncio.create_task(watch())
        await alice.say("think", to="thinker")
        await eventually(lambda: len(typings) >= 3, timeout=10)  # renewed, not sent once
        release.set()
        await eventually(lambda: bot.client.pending == 0 and not bot._tasks)
        watcher.cancel()
    finally:
        await bot.stop()


async def test_an_empty_say_is_refused_locally(cfm_server: TestServer) -> None:
    alice: Client = await cfm_server.client("alice")
    with pytest.raises(ClientError) as empty:
        await alice.say("", to="alice")
    assert empty.value.code == "bad_frame" and alice.pending == 0
