"""A persona remembers who you are across a server restart, and always sounds like itself.

The newcomer's report: SmartyBot learned "my name is Xavier", then after the embedded
server restarted answered "u haven't told me ur name yet! ur handle is xy tho" — the
memory was lost, and the line came from the generic (teen) voice SmartyBot borrowed.
"""

from __future__ import annotations

import asyncio
import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from cfm_common.client import Client
from cfm_server.ai.engine import OfflineEngine
from cfm_server.ai.memory import PersonaMemory, memory_file
from cfm_server.ai.personas import DEFAULT_PERSONAS, SMARTYBOT, TAMAGO, Persona, PersonaError
from cfm_server.ai.voices import GENERIC, VOICES
from tests.ai.test_contacts_e2e import filled, msg_from, next_event

ROOM = "dm:smartybot:xy"
CONVERSATION = f"{ROOM}|xy"
# Words of the teen voices (generic, skater); the grown-up voices never use them.
TEEN_WORDS = re.compile(r"\b(?:u|ur|tho|lol|dude)\b", re.I)
GROWN_UP = ("smartybot", "clippo")


def own_line(text: str, voice: str, category: str) -> bool:
    """Whether ``text`` is one of ``voice``'s own lines for ``category`` (no borrowing)."""
    own = VOICES[voice].get(category) or VOICES[voice].get(category.split(":", 1)[0], ())
    return any(filled(line).fullmatch(text) for line in own)


async def restart(server_factory: Any, server: Any, **overrides: Any) -> Any:
    """Stop ``server`` as ``cfm chat``'s Ctrl+Q does and start it again in the same place."""
    port, data_dir = server.port, server.config.data_dir
    await server.stop(close_code=1012)
    overrides.setdefault("data_dir", data_dir)
    return await server_factory(port=port, ai_enabled=True, **overrides)


async def ask(client: Client, persona: str, text: str) -> str:
    """Say ``text`` to ``persona`` and return its answer (not an older message replayed)."""
    ack = await client.say(text, to=persona)
    answer = await next_event(client, lambda e: msg_from(persona)(e) and e.seq > ack.seq)
    return answer.text


def assert_in_voice(text: str, persona: Persona, category: str) -> None:
    """One of the persona's own lines: never borrowed (a short "sweet" may be in two)."""
    assert own_line(text, persona.voice, category), (persona.handle, category, text)
    if persona.voice in GROWN_UP:
        assert not TEEN_WORDS.search(text), f"{persona.handle} sounds like a teen: {text!r}"


# --- against a real server -----------------------------------------------------------------

async def test_every_persona_remembers_your_name_after_a_restart_in_its_own_voice(
    server_factory: Any, tmp_path: Path
) -> None:
    server = await server_factory(ai_enabled=True, data_dir=tmp_path / "data")
    token = tmp_path / "xy.token"
    async with Client(server.url, "xy", token_file=token) as xy:
        for persona in DEFAULT_PERSONAS:
            await ask(xy, persona.handle, "my name is Xavier")
            answer = await ask(xy, persona.handle, "what is my name?")
            assert "Xavier" in answer
            assert_in_voice(answer, persona, "name_recall")
    server = await restart(server_factory, server)
    async with Client(server.url, "xy", token_file=token) as xy:
        for persona in DEFAULT_PERSONAS:
            answer = await ask(xy, persona.handle, "what is my name?")
            assert "Xavier" in answer, (persona.handle, answer)
            assert_in_voice(answer, persona, "name_recall")
    ai_dir = tmp_path / "data" / "ai"
    for persona in DEFAULT_PERSONAS:
        path = memory_file(ai_dir, persona.key)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_likes_topics_and_tamagos_hearts_survive_a_restart(
    server_factory: Any, tmp_path: Path
) -> None:
    server = await server_factory(ai_enabled=True, data_dir=tmp_path / "data")
    token = tmp_path / "xy.token"
    async with Client(server.url, "xy", token_file=token) as xy:
        await ask(xy, "sk8r_jay", "i really like pizza")
        await ask(xy, "smartybot", "do you remember winamp?")
        await ask(xy, "tamago", "feed")  # 3 hearts of 4: one more fills it up
    server = await restart(server_factory, server)
    async with Client(server.url, "xy", token_file=token) as xy:
        assert "pizza" in await ask(xy, "sk8r_jay", "what do i like?")
        assert_in_voice(await ask(xy, "tamago", "feed"), TAMAGO, "full")  # still fed
    saved = json.loads(memory_file(tmp_path / "data" / "ai", "smartybot").read_text())
    assert saved["conversations"]["dm:smartybot:xy|xy"]["topics"] == ["winamp"]


async def test_someone_who_never_gave_a_name_hears_the_personas_own_words(
    server_factory: Any, tmp_path: Path
) -> None:
    server = await server_factory(ai_enabled=True, data_dir=tmp_path / "data")
    token = tmp_path / "xy.token"
    async with Client(server.url, "xy", token_file=token) as xy:
        for persona in DEFAULT_PERSONAS:
            assert_in_voice(await ask(xy, persona.handle, "what is my name?"), persona,
                            "name_unknown")
    server = await restart(server_factory, server)
    async with Client(server.url, "xy", token_file=token) as xy:
        for persona in DEFAULT_PERSONAS:
            assert_in_voice(await ask(xy, persona.handle, "what is my name?"), persona,
                            "name_unknown")


async def test_a_memory_server_forgets_and_still_speaks_in_voice(server_factory: Any) -> None:
    server = await server_factory(ai_enabled=True, store="memory")
    async with Client(server.url, "xy", token_file=False) as xy:
        await ask(xy, "smartybot", "my name is Xavier")
    server = await restart(server_factory, server, store="memory")
    async with Client(server.url, "xy", token_file=False) as xy:
        answer = await ask(xy, "smartybot", "what is my name?")
    assert "Xavier" not in answer
    assert_in_voice(answer, SMARTYBOT, "name_unknown")


# --- voices -------------------------------------------------------------------------------

@pytest.mark.parametrize("voice", [v for v in VOICES if v != "generic"])
def test_every_voice_has_its_own_words_for_every_category(voice: str) -> None:
    lines = VOICES[voice]
    missing = [c for c in GENERIC if not (lines.get(c) or lines.get(c.split(":", 1)[0]))]
    assert missing == []


@pytest.mark.parametrize("persona", DEFAULT_PERSONAS, ids=lambda p: p.handle)
@pytest.mark.parametrize("category", sorted(GENERIC))
def test_every_category_is_answered_in_the_personas_voice(persona: Persona,
                                                          category: str) -> None:
    engine = OfflineEngine(persona)
    text = engine.line(engine.conversation(CONVERSATION), category, user="xy")
    assert_in_voice(text, persona, category)


def test_an_unknown_voice_is_refused_rather_than_borrowed() -> None:
    with pytest.raises(PersonaError, match="unknown voice"):
        Persona(handle="dj_llama", display="DJ", psm="", prompt="p", voice="sk8r")


# --- the memory file --------------------------------------------------------------------------

def test_the_file_round_trips_what_the_engine_learned(tmp_path: Path) -> None:
    engine = OfflineEngine(TAMAGO)
    for text in ("my name is xavier", "i love pizza", "my nokia 3310 rocks", "feed"):
        engine.reply(CONVERSATION, text, user="xy")
    memory = PersonaMemory(tmp_path / "tamago.memory.json", engine)
    assert memory.changed
    memory.save()
    assert not memory.changed
    assert [p.name for p in tmp_path.iterdir()] == ["tamago.memory.json"]  # no temp left

    fresh = OfflineEngine(TAMAGO)
    assert PersonaMemory(tmp_path / "tamago.memory.json", fresh).load() == 1
    before, after = engine.conversation(CONVERSATION), fresh.conversation(CONVERSATION)
    assert (after.name, after.likes, after.topics, after.turns) == (
        "Xavier", ["pizza"], ["nokias"], 4)
    assert (after.pet.hunger, after.pet.happy, after.pet.turns) == (
        before.pet.hunger, before.pet.happy, before.pet.turns)


def test_the_file_keeps_the_most_recent_people_only(tmp_path: Path) -> None:
    engine = OfflineEngine(SMARTYBOT)
    for n in range(5):
        engine.reply(f"dm:p{n}:smartybot|p{n}", f"my name is Person{'x' * n}", user=f"p{n}")
    engine.conversation("dm:p0:smartybot|p0")  # p0 used again: now the most recent
    engine.conversation("dm:idle:smartybot|idle")  # a nudge only: nothing learned
    PersonaMemory(tmp_path / "m.json", engine, max_people=3).save()
    saved = json.loads((tmp_path / "m.json").read_text())["conversations"]
    assert list(saved) == ["dm:p3:smartybot|p3", "dm:p4:smartybot|p4", "dm:p0:smartybot|p0"]


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"conversations": 3}'])
def test_an_unreadable_file_is_ignored(tmp_path: Path, content: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    engine = OfflineEngine(SMARTYBOT)
    assert PersonaMemory(path, engine).load() == 0
    assert engine.conversations() == []


def test_values_the_engine_would_not_have_written_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    entry = {"name": "x" * 200, "likes": ["pizza", 7, "y" * 500],
             "topics": ["winamp", "evil", ["x"]], "turns": 3, "pet": [99, -1, "x"]}
    path.write_text(json.dumps({"version": 1, "conversations": {
        CONVERSATION: entry, "x" * 1000: entry, "dm:a:smartybot|a": {"turns": 0},
        "dm:b:smartybot|b": [1, 2]}}))
    engine = OfflineEngine(SMARTYBOT)
    assert PersonaMemory(path, engine).load() == 1
    conv = engine.conversation(CONVERSATION)
    assert (conv.name, conv.likes, conv.topics, conv.turns) == (None, ["pizza"], ["winamp"], 3)
    assert (conv.pet.hunger, conv.pet.happy, conv.pet.turns) == (3, 3, 0)


async def test_a_user_removed_by_the_operator_is_forgotten_by_the_personas(
    server_factory: Any, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from cfm_cli.main import app

    server = await server_factory(ai_enabled=True, data_dir=tmp_path / "data")
    async with Client(server.url, "xy", token_file=False) as xy:
        await ask(xy, "smartybot", "my name is Xavier")
    async with Client(server.url, "zed", token_file=False) as zed:
        await ask(zed, "smartybot", "my name is Zoe")
    port, data_dir = server.port, server.config.data_dir
    await server.stop(close_code=1001)
    result = CliRunner().invoke(app, ["admin", "remove-user", "xy", "--yes",
                                      "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "the AI contacts forgot 1 conversation with xy" in result.output
    saved = json.loads(memory_file(data_dir / "ai", "smartybot").read_text())
    assert list(saved["conversations"]) == ["dm:smartybot:zed|zed"]

    server = await server_factory(port=port, data_dir=data_dir, ai_enabled=True)
    async with Client(server.url, "xy", token_file=False) as newcomer:  # somebody else
        answer = await ask(newcomer, "smartybot", "what is my name?")
        assert "Xavier" not in answer
        assert_in_voice(answer, SMARTYBOT, "name_unknown")


async def test_a_user_removed_while_the_server_runs_is_forgotten_by_the_personas(
    server_factory: Any, tmp_path: Path
) -> None:
    """The running personas forget too: they would otherwise greet the handle's next
    holder with the old one's name, and write it back to their memory files."""
    from typer.testing import CliRunner

    from cfm_cli.main import app

    server = await server_factory(ai_enabled=True, data_dir=tmp_path / "data")
    data_dir = server.config.data_dir
    async with Client(server.url, "xy", token_file=False) as xy:
        await ask(xy, "smartybot", "my name is Xavier")
    async with Client(server.url, "zed", token_file=False) as zed:
        await ask(zed, "smartybot", "my name is Zoe")
    # On a thread: this test's loop is the server's, which answers the control socket.
    result = await asyncio.to_thread(CliRunner().invoke, app, [
        "admin", "remove-user", "xy", "--yes", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "the AI contacts forgot 1 conversation with xy" in result.output
    async with Client(server.url, "xy", token_file=False) as newcomer:  # somebody else
        answer = await ask(newcomer, "smartybot", "what is my name?")
        assert "Xavier" not in answer
        assert_in_voice(answer, SMARTYBOT, "name_unknown")
    await server.stop(close_code=1001)  # the personas save what they hold
    saved = memory_file(data_dir / "ai", "smartybot").read_text()
    assert "Xavier" not in saved and "Zoe" in saved, saved
