"""The offline engine: memory, variety, persona, determinism, and its small talents."""

from __future__ import annotations

import re

import pytest

from cfm_server.ai.engine import OfflineEngine
from cfm_server.ai.personas import CLIPPO, DEFAULT_PERSONAS, MIDNIGHT, SK8R_JAY, SMARTYBOT, TAMAGO
from cfm_server.ai.voices import GENERIC, REFUSAL_REASONS, VOICES, lines_for
from tests.ai.conftest import FakeClock

ROOM = "dm:alice:smartybot"


def said_one_of(answer: str, lines: tuple[str, ...]) -> bool:
    """Whether ``answer`` is one of ``lines`` with its placeholders filled in."""
    for line in lines:
        pattern = re.sub(r"\\\{\w+\\\}", ".+", re.escape(line))
        if re.fullmatch(pattern, answer, re.S):
            return True
    return False


def chat(engine: OfflineEngine, *texts: str, room: str = ROOM, user: str = "alice") -> list[str]:
    return [engine.reply(room, text, user=user) for text in texts]


@pytest.mark.parametrize("persona", DEFAULT_PERSONAS, ids=lambda p: p.handle)
def test_remembers_the_name_it_was_told(persona) -> None:
    engine = OfflineEngine(persona)
    before = engine.reply(ROOM, "what's my name?", user="alice")
    assert "Zelda" not in before
    engine.reply(ROOM, "hi! my name is zelda", user="alice")
    after = engine.reply(ROOM, "what's my name?", user="alice")
    assert "Zelda" in after


def test_the_name_belongs_to_one_conversation() -> None:
    engine = OfflineEngine(SMARTYBOT)
    engine.reply(ROOM, "my name is Zelda", user="alice")
    other = engine.reply("dm:bob:smartybot", "what is my name?", user="bob")
    assert "Zelda" not in other


def test_remembers_what_the_user_likes() -> None:
    engine = OfflineEngine(SK8R_JAY)
    engine.reply(ROOM, "i really like pizza and stuff", user="alice")
    assert "pizza" in engine.reply(ROOM, "what do i like?", user="alice")


def test_answers_differently_to_different_inputs() -> None:
    engine = OfflineEngine(SMARTYBOT)
    inputs = ["hello", "how are you?", "who are you?", "what time is it?", "what is 6*7",
              "tell me a joke", "do you remember winamp?", ":(", "thanks", "bye"]
    replies = chat(engine, *inputs)
    assert len(set(replies)) == len(inputs), replies
    assert all(r.strip() for r in replies)


def test_varies_when_asked_the_same_thing_twice() -> None:
    engine = OfflineEngine(SMARTYBOT)
    first, second = chat(engine, "hello", "hello")
    assert first != second


def test_same_seed_same_conversation_same_answers() -> None:
    script = ["hey", "my name is Ann", "i like halo", "blah", "what?", "lol", "ok", "hmm"]
    one = chat(OfflineEngine(MIDNIGHT, seed="s"), *script)
    two = chat(OfflineEngine(MIDNIGHT, seed="s"), *script)
    other_seed = chat(OfflineEngine(MIDNIGHT, seed="t"), *script)
    assert one == two
    assert one != other_seed


@pytest.mark.parametrize("persona", DEFAULT_PERSONAS, ids=lambda p: p.handle)
def test_stays_in_persona(persona) -> None:
    """Questions about itself come from the persona's own voice, not the generic one."""
    engine = OfflineEngine(persona)
    voice = VOICES[persona.voice]
    for question, category in [("who are you?", "about_me"), ("how old are you?", "age")]:
        answer = engine.reply(ROOM, question, user="alice")
        assert said_one_of(answer, voice[category]), (question, answer)
        assert not said_one_of(answer, GENERIC[category])


def test_the_cast_sounds_different() -> None:
    answers = {p.handle: OfflineEngine(p).reply(ROOM, "who are you?", user="a")
               for p in DEFAULT_PERSONAS}
    assert len(set(answers.values())) == len(DEFAULT_PERSONAS)
    assert "SmartyBot" in answers["smartybot"]
    assert "Clippo" in answers["clippo"] or "paperclip" in answers["clippo"]


def test_tells_the_time_and_date_from_its_clock() -> None:
    clock = FakeClock(1_767_225_600.0 + 13 * 3600 + 37 * 60)  # 2026-01-01 13:37 UTC
    engine = OfflineEngine(SMARTYBOT, clock=clock)
    assert "13:37" in engine.reply(ROOM, "what time is it?", user="a")
    assert "January 01, 2026" in engine.reply(ROOM, "what's the date?", user="a")


def test_era_small_talk() -> None:
    engine = OfflineEngine(SK8R_JAY)
    assert "winamp" in engine.reply(ROOM, "remember winamp?", user="a").lower()
    assert "nokia" in engine.reply(ROOM, "my nokia 3310 still works", user="a").lower()


def test_reacts_to_emoticons_and_nudges() -> None:
    engine = OfflineEngine(CLIPPO)
    sad = engine.reply(ROOM, ":'(", user="alice")
    assert said_one_of(sad, lines_for(VOICES["clippo"], "emoticon:sad"))
    nudge = engine.nudge_reaction(ROOM, user="alice")
    assert said_one_of(nudge, VOICES["clippo"]["nudge"])


@pytest.mark.parametrize("persona", DEFAULT_PERSONAS, ids=lambda p: p.handle)
def test_every_refusal_has_words_in_character(persona) -> None:
    engine = OfflineEngine(persona)
    for reason in REFUSAL_REASONS:
        line = engine.refusal(ROOM, reason, user="alice")
        assert line.strip() and "{" not in line
    own = VOICES[persona.voice]
    assert engine.refusal(ROOM, "breaker", user="a") in own["refusal:breaker"]


def test_smartybot_does_arithmetic() -> None:
    engine = OfflineEngine(SMARTYBOT)
    assert "84" in engine.reply(ROOM, "what is 12 x 7?", user="a")
    assert "2.5" in engine.reply(ROOM, "5/2", user="a")
    refused = engine.reply(ROOM, "what is 9 ** 99999", user="a")
    assert refused in VOICES["smartybot"]["math_error"]
    assert engine.reply(ROOM, "1/0", user="a") in VOICES["smartybot"]["math_error"]


def test_tamago_eats_and_plays() -> None:
    engine = OfflineEngine(TAMAGO)
    fed = engine.reply(ROOM, "feed", user="a")
    assert "nom" in fed or "munch" in fed
    replies = chat(engine, "have a cookie", "more food", "eat!", "snack")
    assert "too full!! *rolls away*" in replies
    assert "happy" in engine.reply(ROOM, "let's play a game", user="a")


def test_midnight_writes_a_poem_from_your_words() -> None:
    engine = OfflineEngine(MIDNIGHT)
    poem = engine.reply(ROOM, "write me a poem about thunderstorms", user="a")
    assert "thunderstorms" in poem and "\n" in poem


def test_conversations_are_bounded() -> None:
    engine = OfflineEngine(SMARTYBOT, max_conversations=3)
    for i in range(10):
        engine.reply(f"dm:a{i}:smartybot", "my name is Bob", user=f"a{i}")
    assert len(engine._conversations) == 3
    assert "Bob" in engine.reply("dm:a9:smartybot", "what is my name", user="a9")
