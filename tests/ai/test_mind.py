"""A persona's mind with a real backend behind the guards: relay, context, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import CollectorRegistry

from cfm_server.ai.backends import ChatBackend, OpenAIChatBackend, WorkersAIBackend
from cfm_server.ai.engine import OfflineEngine
from cfm_server.ai.guards import Guards
from cfm_server.ai.metrics import AIMetrics
from cfm_server.ai.mind import PersonaMind, clean_reply
from cfm_server.ai.personas import SK8R_JAY, SMARTYBOT
from cfm_server.ai.voices import VOICES
from tests.ai.conftest import FakeClock
from tests.ai.llm_stub import LLMStub
from tests.wire import eventually

DM = "dm:alice:sk8r_jay"
SKATER = VOICES["skater"]

MakeMind = Callable[..., PersonaMind]


@pytest.fixture
async def make_mind(llm: LLMStub, clock: FakeClock) -> AsyncIterator[MakeMind]:
    backends: list[ChatBackend] = []

    def make(*, kind: str = "openai", stream: bool = False, persona=SK8R_JAY,
             context_turns: int = 8, **guard_options) -> PersonaMind:
        backend: ChatBackend
        if kind == "workers":
            backend = WorkersAIBackend("acc", "key", base_url=llm.workers_url)
        else:
            backend = OpenAIChatBackend(llm.openai_url, "m", stream=stream)
        backends.append(backend)
        guard_options.setdefault("request_timeout", 5.0)
        registry = CollectorRegistry()
        guards = Guards(clock=clock, metrics=AIMetrics(registry), **guard_options)
        return PersonaMind(persona, guards=guards, backend=backend,
                           engine=OfflineEngine(persona, clock=clock),
                           context_turns=context_turns)

    yield make
    for backend in backends:
        await backend.aclose()


def sample(mind: PersonaMind, name: str, **labels: str) -> float:
    value = mind.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


@pytest.mark.parametrize(("kind", "stream"), [("openai", False), ("openai", True),
                                              ("workers", False)])
async def test_the_backend_reply_is_relayed(make_mind: MakeMind, llm: LLMStub, kind: str,
                                            stream: bool) -> None:
    mind = make_mind(kind=kind, stream=stream)
    answer = await mind.answer(room=DM, user="alice", text="sup jay")
    assert answer.text == "stub reply 1 to: sup jay"
    assert answer.refused is None
    system = llm.calls[0].body["messages"][0]
    assert system["role"] == "system" and SK8R_JAY.prompt in system["content"]
    assert "alice" in system["content"]


async def test_context_is_the_last_n_turns_of_the_room(make_mind: MakeMind,
                                                       llm: LLMStub) -> None:
    mind = make_mind(context_turns=2)
    for i in range(4):
        await mind.answer(room=DM, user="alice", text=f"msg {i}")
    sent = llm.calls[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant",
                                         "user"]
    assert [m["content"] for m in sent[1:]] == [
        "msg 1", "stub reply 2 to: msg 1", "msg 2", "stub reply 3 to: msg 2", "msg 3",
    ]
    other = "dm:bob:sk8r_jay"
    await mind.answer(room=other, user="bob", text="hi")
    assert len(llm.calls[-1].body["messages"]) == 2  # a new room starts fresh


async def test_group_rooms_name_the_speaker(make_mind: MakeMind, llm: LLMStub) -> None:
    mind = make_mind()
    answer = await mind.answer(room="#lobby", user="alice", text="any tricks?")
    assert answer.text == "stub reply 1 to: alice: any tricks?"
    assert "#lobby" in llm.calls[0].body["messages"][0]["content"]


@pytest.mark.parametrize("failure", ["error", "hang"])
async def test_failures_open_the_breaker_then_one_probe_after_the_cooldown(
    make_mind: MakeMind, llm: LLMStub, clock: FakeClock, failure: str
) -> None:
    # A short timeout only where the stub hangs, and long enough that the request reaches
    # the stub before it fires; an error answer must not be outrun by it (a loaded machine
    # may take a while to answer, and that would count as "timeout", not "error").
    mind = make_mind(breaker_threshold=3, breaker_cooldown=60,
                     request_timeout=1.0 if failure == "hang" else 5.0)
    llm.mode = failure
    for i in range(3):
        answer = await mind.answer(room=DM, user="alice", text="hello?")
        assert answer.refused == "backend_error"
        assert answer.text in SKATER["refusal:backend_error"]
        # The stub's thread records a call as it reads it: wait for it before going on.
        await eventually(lambda i=i: len(llm.calls) >= i + 1)
    assert len(llm.calls) == 3
    llm.mode = "ok"
    mind.guards.request_timeout = 5.0  # the probe below must not race the short timeout
    for _ in range(5):  # open: no calls at all, each answered in character
        answer = await mind.answer(room=DM, user="alice", text="hello??")
        assert answer.refused == "breaker"
        assert answer.text in SKATER["refusal:breaker"]
    assert len(llm.calls) == 3
    outcome = "timeout" if failure == "hang" else "error"
    labels = {"persona": "sk8r_jay", "backend": "openai"}
    assert sample(mind, "cfm_ai_backend_calls_total", **labels, outcome=outcome) == 3
    assert sample(mind, "cfm_ai_refusals_total", persona="sk8r_jay", reason="breaker") == 5
    assert sample(mind, "cfm_ai_breaker_open") == 1

    clock.advance(60)
    answer = await mind.answer(room=DM, user="alice", text="back?")  # the one probe
    assert answer.refused is None and answer.text.startswith("stub reply 4")
    assert len(llm.calls) == 4
    assert sample(mind, "cfm_ai_breaker_open") == 0
    await mind.answer(room=DM, user="alice", text="and again")
    assert len(llm.calls) == 5


async def test_a_failed_probe_opens_the_breaker_again(make_mind: MakeMind, llm: LLMStub,
                                                      clock: FakeClock) -> None:
    mind = make_mind(breaker_threshold=1, breaker_cooldown=30)
    llm.mode = "error"
    await mind.answer(room=DM, user="alice", text="1")
    clock.advance(30)
    probe = await mind.answer(room=DM, user="alice", text="2")
    assert probe.refused == "backend_error"
    assert len(llm.calls) == 2
    llm.mode = "ok"
    assert (await mind.answer(room=DM, user="alice", text="3")).refused == "breaker"
    assert len(llm.calls) == 2


async def test_user_quota_stops_calls_at_exactly_the_limit_until_the_next_day(
    make_mind: MakeMind, llm: LLMStub, clock: FakeClock
) -> None:
    mind = make_mind(user_daily_quota=3, global_daily_quota=100)
    for i in range(3):
        assert (await mind.answer(room=DM, user="alice", text=f"q{i}")).refused is None
    refused = await mind.answer(room=DM, user="alice", text="one more")
    assert refused.refused == "user_quota"
    assert refused.text in SKATER["refusal:user_quota"]
    assert len(llm.calls) == 3
    ok = await mind.answer(room="dm:bob:sk8r_jay", user="Bob", text="hi")
    assert ok.refused is None and len(llm.calls) == 4

    clock.advance(86_400)
    assert (await mind.answer(room=DM, user="alice", text="new day")).refused is None
    assert len(llm.calls) == 5


async def test_the_quota_is_per_user_across_rooms_and_case(make_mind: MakeMind,
                                                           llm: LLMStub) -> None:
    mind = make_mind(user_daily_quota=1)
    await mind.answer(room=DM, user="alice", text="1")
    again = await mind.answer(room="#lobby", user="ALICE", text="2")
    assert again.refused == "user_quota" and len(llm.calls) == 1


async def test_global_quota(make_mind: MakeMind, llm: LLMStub) -> None:
    mind = make_mind(user_daily_quota=10, global_daily_quota=2)
    await mind.answer(room=DM, user="alice", text="1")
    await mind.answer(room="dm:bob:sk8r_jay", user="bob", text="2")
    refused = await mind.answer(room="dm:carol:sk8r_jay", user="carol", text="3")
    assert refused.refused == "global_quota"
    assert refused.text in SKATER["refusal:global_quota"]
    assert len(llm.calls) == 2


async def test_failed_calls_do_not_use_up_the_quota(make_mind: MakeMind,
                                                    llm: LLMStub) -> None:
    mind = make_mind(user_daily_quota=1, breaker_threshold=10)
    llm.mode = "error"
    for _ in range(3):
        await mind.answer(room=DM, user="alice", text="x")
    llm.mode = "ok"
    assert (await mind.answer(room=DM, user="alice", text="y")).refused is None


async def test_the_kill_switch_calls_nothing_and_says_so(make_mind: MakeMind,
                                                         llm: LLMStub) -> None:
    mind = make_mind(kill_switch=True)
    answer = await mind.answer(room=DM, user="alice", text="hello")
    assert answer.refused == "kill_switch"
    assert answer.text in SKATER["refusal:kill_switch"]
    assert mind.nudge_reaction(room=DM, user="alice") in SKATER["refusal:kill_switch"]
    assert llm.calls == []
    mind.guards.kill_switch = False
    assert (await mind.answer(room=DM, user="alice", text="hello")).refused is None


async def test_offline_replies_are_free_but_counted(clock: FakeClock) -> None:
    guards = Guards(user_daily_quota=1, clock=clock, metrics=AIMetrics())
    mind = PersonaMind(SMARTYBOT, guards=guards, engine=OfflineEngine(SMARTYBOT))
    for _ in range(5):
        answer = await mind.answer(room="dm:alice:smartybot", user="alice", text="what is 2+2")
        assert answer.source == "offline" and "4" in answer.text
    assert mind.metrics.registry.get_sample_value(
        "cfm_ai_offline_replies_total", {"persona": "smartybot"}) == 5
    assert guards.quotas.used("alice") == 0


def test_clean_reply() -> None:
    raw = "<think>user wants a trick</think>sk8r_jay: kickflip!\x07 dude"
    assert clean_reply(raw, SK8R_JAY) == "kickflip! dude"
    assert len(clean_reply("x" * 5000, SK8R_JAY)) == 1500
