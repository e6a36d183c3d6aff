"""Bot and message changes against a real server: change entries never reach
``on_message`` (an echo bot does not echo a 👍), they reach ``on_reaction``/``on_edit``/
``on_delete``; ``bot.reply(quote=True)``, ``bot.react`` and ``bot.target_of``."""

from __future__ import annotations

from typing import Any

from cfm_common.frames import Msg
from tests.sdk.conftest import Recorder
from tests.wire import eventually

ROOM = "#kitchen"


async def test_changes_go_to_their_decorators_and_never_to_on_message(
    server: Any, clients: Any, bots: Any
) -> None:
    bot = bots(server.url, "echo")
    heard: list[tuple[str, Any]] = []

    @bot.on_message
    async def echo(msg: Msg) -> None:
        heard.append(("message", msg.text))
        await bot.reply(msg, msg.text)

    @bot.on_reaction
    async def reaction(change: Msg) -> None:
        target = await bot.target_of(change)  # as it is now: maybe edited already
        assert target is not None
        heard.append((change.change or "", (change.emoji, target.seq)))

    @bot.on_edit
    async def edit(change: Msg) -> None:
        heard.append(("edit", (change.target, change.text)))

    @bot.on_delete
    async def delete(change: Msg) -> None:
        heard.append(("delete", change.target))

    await bot.start()
    await bot.client.join(ROOM)
    alice = clients(server.url, "alice")
    await alice.connect()
    await alice.join(ROOM)
    events = Recorder(alice)

    said = await alice.say("soup", room=ROOM)
    await events.wait(lambda r: any(m.sender == "echo" for m in r.msgs(ROOM)))
    await alice.react(ROOM, said.seq, "👍")
    await alice.unreact(ROOM, said.seq, "👍")
    await alice.edit(ROOM, said.seq, "soup!")
    await alice.delete(ROOM, said.seq)
    # Handled in order: once "done" is echoed, every change before it was handled.
    await alice.say("done", room=ROOM)
    await events.wait(lambda r: [m.text for m in r.msgs(ROOM) if m.sender == "echo"]
                      == ["soup", "done"])
    assert heard == [
        ("message", "soup"), ("react", ("👍", said.seq)), ("unreact", ("👍", said.seq)),
        ("edit", (said.seq, "soup!")), ("delete", said.seq), ("message", "done")]
    # Change entries count as handled: the read mark passes them, up to alice's "done".
    done = next(m.seq for m in events.msgs(ROOM) if m.text == "done" and m.sender == "alice")
    await eventually(lambda: bot.client._read_marks.get(ROOM, 0) >= done)


async def test_a_bot_quotes_what_it_answers_and_reacts_once_per_message(
    server: Any, clients: Any, bots: Any
) -> None:
    bot = bots(server.url, "quoter")

    @bot.on_message
    async def answer(msg: Msg) -> None:
        # With a key the id is derived from the message and the key alone: the second
        # call (as a handler run again after a restart) gets the first ack.
        first = await bot.react(msg, "👀", key="seen")
        again = await bot.react(msg, "👀", key="seen")
        assert again.seq == first.seq
        await bot.reply(msg, "noted", quote=True)

    @bot.on_reaction
    async def thanks(change: Msg) -> None:
        if change.change == "react":
            await bot.reply(change, f"thanks for the {change.emoji}", quote=True)

    await bot.start()
    await bot.client.join(ROOM)
    alice = clients(server.url, "alice")
    await alice.connect()
    await alice.join(ROOM)
    events = Recorder(alice)

    said = await alice.say("lunch at 1", room=ROOM)
    await events.wait(lambda r: any(m.text == "noted" for m in r.msgs(ROOM)))
    noted = next(m for m in events.msgs(ROOM) if m.text == "noted")
    assert noted.reply == said.seq
    await alice.react(ROOM, noted.seq, "🎉")
    await events.wait(lambda r: any(m.text == "thanks for the 🎉" for m in r.msgs(ROOM)))
    thanks_msg = next(m for m in events.msgs(ROOM) if m.text == "thanks for the 🎉")
    # Quoting a reaction quotes the message reacted to, not the change entry.
    assert thanks_msg.reply == noted.seq

    page = await alice.history(ROOM, after=0, limit=20)
    lunch = next(m for m in page.msgs if m.seq == said.seq)
    assert lunch.reactions is not None
    assert [(r.emoji, r.names) for r in lunch.reactions] == [("👀", ("quoter",))]
    assert [m.change for m in page.msgs if m.sender == "quoter"].count("react") == 1
