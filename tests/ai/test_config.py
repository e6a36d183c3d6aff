"""AIConfig from defaults < [ai] TOML table < CFM_AI_* env < flags, and its checks."""

from __future__ import annotations

import tomllib

import pytest

from cfm_common import rules
from cfm_server.ai.config import AIConfig, AIConfigError
from cfm_server.ai.personas import DEFAULT_PERSONAS


def test_defaults() -> None:
    config = AIConfig()
    assert config.enabled and not config.kill_switch
    assert config.backend == "offline"
    assert (config.user_daily_quota, config.global_daily_quota) == (50, 4000)
    assert (config.request_timeout, config.breaker_threshold, config.breaker_cooldown) == (
        20.0, 3, 60.0)
    assert config.rooms == ("#lobby",)
    assert len(config.handles) >= 4


def test_the_cast_has_valid_distinct_handles() -> None:
    handles = [p.handle for p in DEFAULT_PERSONAS]
    assert all(rules.is_valid_name(h) and h == h.lower() for h in handles)
    assert len(set(handles)) == len(handles)
    assert all(p.prompt and p.display and p.psm for p in DEFAULT_PERSONAS)


def test_precedence_toml_then_env_then_flags() -> None:
    table = {"backend": "openai", "model": "from-toml", "base_url": "http://toml/v1",
             "user_daily_quota": 7, "request_timeout": 5}
    env = {"CFM_AI_MODEL": "from-env", "CFM_AI_STREAM": "true", "CFM_AI_GLOBAL_DAILY_QUOTA": "9",
           "CFM_AI_ROOMS": "#lobby, #retro", "CFM_AI_UNRELATED": "x", "CFM_PORT": "1"}
    config = AIConfig.from_sources(table, env, model="from-flag", base_url=None)
    assert config.backend == "openai"
    assert config.model == "from-flag"
    assert config.base_url == "http://toml/v1"
    assert config.stream is True
    assert (config.user_daily_quota, config.global_daily_quota) == (7, 9)
    assert config.request_timeout == 5.0
    assert config.rooms == ("#lobby", "#retro")


def test_backend_defaults() -> None:
    openai = AIConfig(backend="openai")
    assert openai.resolved_base_url == "http://127.0.0.1:11434/v1"
    assert openai.resolved_model == "llama3.2"
    workers = AIConfig.from_sources(None, {"CFM_AI_API_KEY": "s3cr3t", "CFM_AI_ACCOUNT_ID": "a"},
                                    backend="workers-ai")
    assert workers.resolved_base_url == "https://api.cloudflare.com/client/v4"
    assert workers.resolved_model == "@cf/meta/llama-3.2-3b-instruct"
    assert "s3cr3t" not in repr(workers)  # the key never shows in logs


def test_no_ai_and_kill_switch() -> None:
    off = AIConfig.from_sources({"enabled": True}, {}, no_ai=True)
    assert not off.enabled and off.handles == ()
    killed = AIConfig.from_sources(None, {"CFM_AI_KILL_SWITCH": "1"})
    assert killed.kill_switch and killed.handles  # still online, answering "not now"


@pytest.mark.parametrize(("table", "env", "flags", "message"), [
    ({"backend": "gpt"}, {}, {}, "ai.backend"),
    (None, {}, {"backend": "workers-ai"}, "account_id"),
    ({"user_daily_quota": "50"}, {}, {}, "user_daily_quota must be a int"),
    ({"enabled": 1}, {}, {}, "enabled must be a bool"),
    ({"nonsense": 1}, {}, {}, "unknown key ai.nonsense"),
    (None, {"CFM_AI_REQUEST_TIMEOUT": "soon"}, {}, "CFM_AI_REQUEST_TIMEOUT"),
    (None, {"CFM_AI_STREAM": "maybe"}, {}, "CFM_AI_STREAM"),
    ({"request_timeout": 0}, {}, {}, "request_timeout must be positive"),
    ({"breaker_threshold": 0}, {}, {}, "breaker_threshold"),
    ({"rooms": ["lobby"]}, {}, {}, "not a group room"),
    ({"personas": [{"handle": "-bad", "prompt": "x"}]}, {}, {}, "valid cfm handle"),
    ({"personas": [{"handle": "newbie"}]}, {}, {}, "needs at least a handle and a prompt"),
    ({"personas": [{"handle": "clippo", "mood": "sad"}]}, {}, {}, "unknown persona keys"),
    ({"personas": [{"handle": "x2", "prompt": "p", "status": "invisible"}]}, {}, {}, "status"),
])
def test_bad_settings_are_named(table, env, flags, message) -> None:
    with pytest.raises(AIConfigError, match=message):
        AIConfig.from_sources(table, env, **flags)


def test_unknown_flag_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        AIConfig.from_sources(None, {}, colour="blue")


TOML = """
[ai]
backend = "openai"
base_url = "http://127.0.0.1:8080/v1"

[[ai.personas]]
handle = "Clippo"
psm = "Now with 50% more help"

[[ai.personas]]
handle = "DJ_Llama"
display = "DJ Llama (whips)"
prompt = "You are a 2005 Winamp DJ."
voice = "skater"
"""


def test_personas_from_toml_override_and_extend_the_cast() -> None:
    config = AIConfig.from_sources(tomllib.loads(TOML)["ai"], {})
    by_key = {p.key: p for p in config.personas}
    assert by_key["clippo"].psm == "Now with 50% more help"
    assert by_key["clippo"].prompt == next(p for p in DEFAULT_PERSONAS if p.key == "clippo").prompt
    assert by_key["dj_llama"].display == "DJ Llama (whips)"
    assert by_key["dj_llama"].voice == "skater"
    assert len(config.personas) == len(DEFAULT_PERSONAS) + 1
    assert "dj_llama" in config.handles
    assert config.persona("DJ_LLAMA").handle == "DJ_Llama"


def test_replace_personas_keeps_only_the_listed_ones() -> None:
    table = {"replace_personas": True,
             "personas": [{"handle": "tamago"}, {"handle": "mrbot", "prompt": "p"}]}
    config = AIConfig.from_sources(table, {})
    assert config.handles == ("tamago", "mrbot")
    with pytest.raises(AIConfigError, match="no persona"):
        config.persona("clippo")
