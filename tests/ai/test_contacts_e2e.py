"""The cast on a real server: DMs, @mentions in #lobby, nudges, and no bot loops.

Everything runs on loopback with the offline engine: a real ``Server`` (SQLite in
tmp_path), the personas as SDK bots in this process, and people as SDK clients.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cfm_common import frames as f
from cfm_common.client import Client
from cfm_server.ai import AIConfig, start_ai_contacts
from cfm_server.ai.personas import SK8R_JAY, SMARTYBOT
from cfm_server.ai.service import AIContacts
from cfm_server.ai.voices import VOICES, lines_for
from tests.ai.llm_stub import LLMStub

TIMEOUT = 10.0  # generous: replies take milliseconds, but the machine is shared


def filled(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{\w+\\\}", ".+", re.escape(template)), re.S)


def in_voice(text: str, voice: str, category: str) -> bool:
    return any(filled(t).fullmatch(text) for t in lines_for(VOICES[voice], category))


async def next_event(client: Client, match: Callable[[Any], bool],
                     timeout: float = TIMEOUT) -> Any:
    async with asyncio.timeout(timeout):
        async for event in client:
            if match(event):
                return event
    raise AssertionError("the client closed before the event came")


def msg_from(sender: str, room: str | None = None, kind: str = "text") -> Callable[[Any], bool]:
    def match(event: Any) -> bool:
        return (isinstance(event, f.Msg) and event.sender == sender and event.kind == kind
                and (room is None or event.room == room))
    return match


@pytest.fixture
async def cast(server: Any, tmp_path: Path) -> AsyncIterator[AIContacts]:
    contacts = await start_ai_contacts(AIConfig(), server.url, token_dir=tmp_path / "ai",
                                       registry=CollectorRegistry())
    yield contacts
    await contacts.stop()


@pytest.fixture
async def alice(server: Any) -> AsyncIterator[Client]:
    async with Client(server.url, "alice", token_file=False) as client:
        yield client


async def test_the_whole_cast_signs_in_and_joins_the_lobby(cast: AIContacts,
                                                            alice: Client) -> None:
    assert set(cast.handles) == {"smartybot", "sk8r_jay", "xxmidnightxx", "clippo", "tamago"}
    joined = await alice.join("#lobby")
    members = {m.name: m for m in joined.members}
    for handle in cast.handles:
        assert members[handle].bot is True
    assert members["sk8r_jay"].status == "away"
    assert members["smartybot"].display == "SmartyBot"


async def test_a_dm_gets_an_in_character_answer(cast: AIContacts, alice: Client) -> None:
    await alice.say("hi! my name is Alice", to="smartybot")
    first = await next_event(alice, msg_from("smartybot"))
    assert first.room == "dm:alice:smartybot"
    assert in_voice(first.text, "smartybot", "name_learned"), first.text
    await alice.say("what is 6*7?", to="smartybot")
    second = await next_event(alice, msg_from("smartybot"))
    assert "42" in second.text
    await alice.say("what's my name?", to="smartybot")
    third = await next_event(alice, msg_from("smartybot"))
    assert "Alice" in third.text


async def test_the_persona_types_before_it_answers(cast: AIContacts, alice: Client) -> None:
    await alice.say("sup", to="sk8r_jay")
    typing = await next_event(
        alice, lambda e: isinstance(e, f.Typing | f.Msg) and e.sender == "sk8r_jay")
    assert isinstance(typing, f.Typing)
    assert typing.room == "dm:alice:sk8r_jay"
    await next_event(alice, msg_from("sk8r_jay"))


async def test_a_mention_in_the_lobby_gets_an_answer_there(cast: AIContacts,
                                                           alice: Client) -> None:
    await alice.join("#lobby")
    await alice.say("hey @Tamago, feed time!", room="#lobby")
    answer = await next_event(alice, msg_from("tamago", "#lobby"))
    assert answer.text.startswith("@alice ")
    assert in_voice(answer.text.removeprefix("@alice "), "pet", "fed"), answer.text


async def test_lobby_chatter_without_a_mention_is_left_alone(cast: AIContacts,
                                                             alice: Client) -> None:
    await alice.join("#lobby")
    await alice.say("anyone here like clippo?", room="#lobby")  # a name, not a mention
    await alice.say("@clippo how do i make a table?", room="#lobby")
    answer = await next_event(alice, lambda e: isinstance(e, f.Msg) and e.room == "#lobby"
                              and e.sender != "alice")
    assert answer.sender == "clippo"
    assert "make a table" in answer.text  # the answer to the mention, not to the chatter


async def test_a_nudge_gets_a_reaction_and_a_nudge_back(cast: AIContacts,
                                                        alice: Client) -> None:
    await alice.nudge("xxmidnightxx")
    reaction = await next_event(alice, msg_from("xxmidnightxx"))
    assert in_voice(reaction.text, "emo", "nudge"), reaction.text
    back = await next_event(alice, msg_from("xxmidnightxx", kind="nudge"))
    assert back.room == "dm:alice:xxmidnightxx"
    received = cast.metrics.registry.get_sample_value(
        "cfm_ai_nudges_received_total", {"persona": "xxmidnightxx"})
    assert received == 1


async def test_messages_from_bots_are_not_answered(cast: AIContacts, server: Any) -> None:
    room = "dm:robo:smartybot"
    async with Client(server.url, "robo", token_file=False, bot=True) as robo:
        ack = await robo.say("hello smartybot, are you a bot?", to="smartybot")
        # The persona marks a message read once its handlers are done with it; in a DM
        # the other member sees that mark. An answer would have come before it.
        seen: list[Any] = []

        def read_or_msg(event: Any) -> bool:
            if isinstance(event, f.Msg) and event.sender == "smartybot":
                seen.append(event)
            return (isinstance(event, f.Read) and event.room == room
                    and event.name == "smartybot" and event.seq >= ack.seq)

        await next_event(robo, read_or_msg)
        assert seen == []


async def test_the_kill_switch_answers_in_character(cast: AIContacts, alice: Client) -> None:
    cast.set_kill_switch(True)
    await alice.say("hello?", to="clippo")
    answer = await next_event(alice, msg_from("clippo"))
    assert in_voice(answer.text, "clippo", "refusal:kill_switch"), answer.text


async def test_disabled_starts_nobody(server: Any, tmp_path: Path) -> None:
    config = AIConfig(enabled=False)
    contacts = await start_ai_contacts(config, server.url, token_dir=tmp_path / "ai")
    assert contacts.handles == () and config.handles == ()
    await contacts.stop()


async def test_personas_keep_their_identity_across_restarts(server: Any,
                                                            tmp_path: Path) -> None:
    config = AIConfig.from_sources({"personas": [{"handle": "tamago"}],
                                    "replace_personas": True})
    for _ in range(2):  # the second start signs in with the saved token
        contacts = await start_ai_contacts(config, server.url, token_dir=tmp_path / "ai")
        assert contacts.handles == ("tamago",)
        await contacts.stop()
    assert (tmp_path / "ai" / "tamago.token").exists()


async def test_a_model_backend_answers_through_the_server(server: Any, tmp_path: Path,
                                                          llm: LLMStub) -> None:
    config = AIConfig(backend="openai", base_url=llm.openai_url, stream=True,
                      personas=(SK8R_JAY,), breaker_threshold=1)
    contacts = await start_ai_contacts(config, server.url, token_dir=tmp_path / "ai")
    try:
        async with Client(server.url, "alice", token_file=False) as alice:
            await alice.say("any new tricks?", to="sk8r_jay")
            answer = await next_event(alice, msg_from("sk8r_jay"))
            assert answer.text == "stub reply 1 to: any new tricks?"
            llm.mode = "error"
            await alice.say("and now?", to="sk8r_jay")
            failed = await next_event(alice, msg_from("sk8r_jay"))
            assert in_voice(failed.text, "skater", "refusal:backend_error"), failed.text
            await alice.say("hello??", to="sk8r_jay")
            opened = await next_event(alice, msg_from("sk8r_jay"))
            assert in_voice(opened.text, "skater", "refusal:breaker"), opened.text
            assert len(llm.calls) == 2
    finally:
        await contacts.stop()


async def test_a_flood_gets_one_slow_down_then_silence(server: Any, tmp_path: Path) -> None:
    config = AIConfig(personas=(SMARTYBOT,), replies_per_minute=2)
    contacts = await start_ai_contacts(config, server.url, token_dir=tmp_path / "ai")
    room = "dm:alice:smartybot"
    try:
        async with Client(server.url, "alice", token_file=False) as alice:
            acks = [await alice.say(f"what is {i}+1", to="smartybot") for i in range(5)]
            replies: list[str] = []

            def until_all_read(event: Any) -> bool:
                if isinstance(event, f.Msg) and event.sender == "smartybot":
                    replies.append(event.text)
                return (isinstance(event, f.Read) and event.room == room
                        and event.name == "smartybot" and event.seq >= acks[-1].seq)

            await next_event(alice, until_all_read)
            # Read marks move after each handler; the last reply may trail the last mark.
            while len(replies) < 3:
                replies.append((await next_event(alice, msg_from("smartybot"))).text)
            assert "1" in replies[0] and "2" in replies[1]
            assert in_voice(replies[2], "smartybot", "refusal:slow_down"), replies
            assert len(replies) == 3
    finally:
        await contacts.stop()


async def test_a_persona_refused_for_a_while_at_start_comes_online_when_it_can(
        server_factory: Any, tmp_path: Path) -> None:
    """A persona's start refused for a reason that passes (here its address over
    max_conns_per_ip: on a cluster, a dead node's connections still counted when the
    lease's new holder starts the cast) is tried again until it signs in; it used to be
    left out, offline for everyone until the next restart."""
    from tests.wire import WireClient

    server = await server_factory(max_conns_per_ip=2)
    held = [await WireClient.open(server.url) for _ in range(2)]  # the address is full
    config = AIConfig.from_sources({"personas": [{"handle": "tamago"}],
                                    "replace_personas": True})
    contacts = await start_ai_contacts(config, server.url, token_dir=tmp_path / "ai")
    try:
        assert contacts.handles == ()  # refused (HTTP 429) for now
        for client in held:
            await client.close()
        async with asyncio.timeout(TIMEOUT):
            while contacts.handles != ("tamago",):
                await asyncio.sleep(0.05)
        async with Client(server.url, "alice", token_file=False) as alice:
            await alice.say("hi", to="tamago")
            assert (await next_event(alice, msg_from("tamago"))).room.startswith("dm:")
    finally:
        await contacts.stop()
