"""The example bots (examples/) against a real ``cfm serve`` process at its default
limits: a burst of users, the server stopped with SIGTERM and killed with -9 while the
bot works, and every request answered exactly once, in order where order matters.

``CFM_EXAMPLE_USERS=200`` runs them with 200 users (by hand; the suite uses 30).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cfm_common import Bot
from cfm_common.client import Client
from cfm_common.frames import Msg
from tests.faults.conftest import quick_backoff
from tests.faults.procs import ServerProcess
from tests.sdk.conftest import Recorder

ROOT = Path(__file__).resolve().parents[2]
USERS = int(os.environ.get("CFM_EXAMPLE_USERS", "30"))
WAIT = 30 + USERS / 2  # seconds: the bot's replies are paced at 20/s


def example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples"
                                                  / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", "--max-conns-per-ip", str(USERS + 20))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def people(serve: ServerProcess) -> AsyncIterator[list[Client]]:
    users = [Client(serve.url, f"u{i}", token_file=False, backoff=quick_backoff(i + 1))
             for i in range(USERS)]
    for user in users:
        await user.connect()
    yield users
    for user in users:
        await user.close()


async def bounce(server: ServerProcess, how: str) -> None:
    """Take the server down (SIGTERM: close 1012; kill: -9) and start it again."""
    if how == "kill":
        server.kill()
    else:
        server.terminate()
    await server.wait()
    await server.start()


async def start(bot: Bot) -> Bot:
    await bot.start()
    return bot


async def befriend(users: list[Client], bot: str) -> None:
    """Each user adds the bot to their contacts, as the chat window does: its answers are
    then not DMs from a stranger (which a server may limit per user)."""
    await asyncio.gather(*(user.contact("add", bot) for user in users))


def said(recorder: Recorder, sender: str, room: str | None = None) -> list[str]:
    return [m.text for m in recorder.msgs(room) if m.sender == sender]


async def test_trivia(serve: ServerProcess, people: list[Client], tmp_path: Path) -> None:
    trivia = example("trivia_bot")
    bot = await start(trivia.make_bot(serve.url, state_file=str(tmp_path / "trivia.json"),
                                      token_file=False, backoff=quick_backoff(0)))
    inboxes = [Recorder(user) for user in people]
    try:
        await befriend(people, "trivia")
        await asyncio.gather(*(u.say("!question", to="trivia") for u in people))
        await bounce(serve, "sigterm")  # while the bot answers
        await asyncio.gather(*(r.wait(lambda r: len(said(r, "trivia")) >= 1, WAIT)
                               for r in inboxes))
        answers = {q: a for q, a in trivia.QUESTIONS}
        for user, inbox in zip(people, inboxes, strict=True):
            asked = said(inbox, "trivia")[0].removeprefix("Question: ").split(" (!")[0]
            await user.say(f"!answer {answers[asked]}", to="trivia")
            await user.say("!score", to="trivia")
        await bounce(serve, "kill")
        for user in people:
            await user.say("!score", to="trivia")  # the last: all before it are answered
        await asyncio.gather(*(r.wait(lambda r: len(said(r, "trivia")) >= 4, WAIT)
                               for r in inboxes))
        for user, inbox in zip(people, inboxes, strict=True):
            name = user.name
            assert said(inbox, "trivia")[1:] == [
                f"Correct, {name}!", f"{name}: 1 point", f"{name}: 1 point"]
    finally:
        await bot.stop()


async def test_remind_me(serve: ServerProcess, people: list[Client], tmp_path: Path) -> None:
    remind = example("remind_bot")
    state = str(tmp_path / "reminders.json")
    bot = await start(remind.make_bot(serve.url, state_file=state, tick=0.2,
                                      token_file=False, backoff=quick_backoff(0)))
    inboxes = [Recorder(user) for user in people]
    await befriend(people, "remindme")
    await asyncio.gather(*(u.say(f"!remind 3s tea-{u.name}", to="remindme") for u in people))
    await bounce(serve, "sigterm")
    await asyncio.gather(*(r.wait(lambda r: len(said(r, "remindme")) >= 1, WAIT)
                           for r in inboxes))
    # The bot restarts too, before the reminders are due: they are in its state file.
    token = bot.client.token
    await bot.stop()
    bot = await start(remind.make_bot(serve.url, state_file=state, tick=0.2, token=token,
                                      token_file=False, backoff=quick_backoff(0)))
    try:
        await bounce(serve, "kill")
        await asyncio.gather(*(r.wait(lambda r: len(said(r, "remindme")) >= 2, WAIT)
                               for r in inboxes))
        # One more request and its reminder: nothing of the first ones comes after.
        await asyncio.gather(*(u.say("!remind 0s last", to="remindme") for u in people))
        await asyncio.gather(*(r.wait(lambda r: len(said(r, "remindme")) >= 4, WAIT)
                               for r in inboxes))
        for user, inbox in zip(people, inboxes, strict=True):
            assert said(inbox, "remindme") == [
                "OK, I'll remind you in 3s.", f"⏰ tea-{user.name}",
                "OK, I'll remind you in 0s.", "⏰ last"]
    finally:
        await bot.stop()


async def test_bridge(serve: ServerProcess, people: list[Client]) -> None:
    bridge = example("bridge_bot")
    bot = await start(bridge.make_bot(serve.url, token_file=False, backoff=quick_backoff(0)))
    try:
        for user in people:
            await user.join("#left")
            await user.join("#right")
        watch = Recorder(people[0])
        # A burst of 3 messages per user into #left, then into #right, the server going
        # down in the middle of each.
        sends = [asyncio.create_task(u.say(f"{u.name}-{k}", room="#left"))
                 for k in range(3) for u in people]
        await bounce(serve, "sigterm")
        await asyncio.gather(*sends)
        sends = [asyncio.create_task(u.say(f"{u.name}-r{k}", room="#right"))
                 for k in range(2) for u in people]
        await bounce(serve, "kill")
        await asyncio.gather(*sends)
        total = USERS * 5
        await watch.wait(lambda r: sum(1 for m in r.msgs() if m.sender == "bridge") >= total,
                         WAIT + total / 10)
        for room, other in (("#left", "#right"), ("#right", "#left")):
            originals = [f"[{m.sender}] {m.text}" for m in watch.msgs(room)
                         if m.sender != "bridge"]
            mirrors = said(watch, "bridge", other)
            assert mirrors == originals  # each once, in the order of the source room
    finally:
        await bot.stop()


async def test_greeter(serve: ServerProcess, people: list[Client]) -> None:
    greeter = example("greeter_bot")
    bot = await start(greeter.make_bot(serve.url, token_file=False, backoff=quick_backoff(0)))
    token = bot.client.token
    half = USERS // 2
    watch = Recorder(people[0])
    await people[0].join("#lobby")
    await asyncio.gather(*(u.join("#lobby") for u in people[1:half]))
    await bounce(serve, "sigterm")
    # The greeter is away while the rest join: it greets them from the member list.
    await bot.stop()
    await asyncio.gather(*(u.join("#lobby") for u in people[half:]))
    await bounce(serve, "kill")
    bot = await start(greeter.make_bot(serve.url, token=token, token_file=False,
                                       backoff=quick_backoff(0)))
    try:
        expected = sorted(f"Welcome to #lobby, {u.name}!" for u in people)
        await watch.wait(lambda r: len(said(r, "greeter", "#lobby")) >= USERS, WAIT)
        # Another join and its greeting: any second greeting would have come before it.
        late = Client(serve.url, "late", token_file=False, backoff=quick_backoff(99))
        await late.connect()
        await late.join("#lobby")
        await watch.wait(lambda r: "Welcome to #lobby, late!" in said(r, "greeter"), WAIT)
        await late.close()
        greetings = said(watch, "greeter", "#lobby")
        assert sorted(greetings[:-1]) == expected and greetings[-1] == "Welcome to #lobby, late!"
    finally:
        await bot.stop()


async def test_thread(serve: ServerProcess, people: list[Client]) -> None:
    thread = example("thread_bot")
    bot = await start(thread.make_bot(serve.url, token_file=False, backoff=quick_backoff(0)))
    await asyncio.gather(*(u.join("#lobby") for u in people))
    inboxes = [Recorder(user) for user in people]

    def answer_to(inbox: Recorder, seq: int) -> list[Msg]:
        return [m for m in inbox.msgs("#lobby") if m.sender == "thread" and m.reply == seq]

    try:
        asks = await asyncio.gather(*(u.say(f"@thread hi from {u.name}", room="#lobby")
                                      for u in people))
        await bounce(serve, "sigterm")  # while the bot answers
        await asyncio.gather(*(r.wait(lambda r, s=a.seq: answer_to(r, s), WAIT)
                               for r, a in zip(inboxes, asks, strict=True)))
        invites = [answer_to(r, a.seq)[0] for r, a in zip(inboxes, asks, strict=True)]
        # A reaction and a reply to another user's message: not the bot's business.
        await people[0].react("#lobby", invites[0].seq, "👍")
        await people[0].say("me too", room="#lobby", reply=asks[1].seq)
        replies = await asyncio.gather(*(
            u.say(f"blue, says {u.name}", room="#lobby", reply=invite.seq)
            for u, invite in zip(people, invites, strict=True)))
        await bounce(serve, "kill")
        await asyncio.gather(*(r.wait(lambda r, s=a.seq: answer_to(r, s), WAIT)
                               for r, a in zip(inboxes, replies, strict=True)))
        watch = inboxes[0]  # it sees every answer: wait until it has them all
        await watch.wait(lambda r: all(answer_to(r, a.seq) for a in replies), WAIT)
        for user, invite, reply in zip(people, invites, replies, strict=True):
            (answer,) = answer_to(watch, reply.seq)  # once, whatever the restarts
            assert answer.text == (f"{user.name}, you answered “{invite.text}” with "
                                   f"“blue, says {user.name}”")
        # Handled in order: the reaction and the other reply came before the last
        # replies were answered, and got nothing.
        bots_msgs = [m for m in watch.msgs("#lobby") if m.sender == "thread"]
        assert len(bots_msgs) == 2 * USERS and not [m for m in bots_msgs if m.is_change]
    finally:
        await bot.stop()
