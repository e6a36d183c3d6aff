"""ServerConfig: precedence, coercion, validation; Server.stop close codes in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfm_server.config import ConfigError, ServerConfig, load_config, parse_assignment
from cfm_server.limits import AbuseMeter, PairInterval, TokenBucket
from tests.wire import signed_in


def test_precedence_defaults_toml_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "server.toml"
    toml.write_text('port = 2000\nmax_text = 100\nstore = "memory"\n'
                    'default_contacts = ["eliza"]\n')
    config = load_config(toml, {}, environ={})
    assert (config.port, config.max_text, config.store) == (2000, 100, "memory")
    assert config.default_contacts == ["eliza"]
    assert config.say_burst == ServerConfig().say_burst  # untouched: the default
    config = load_config(toml, {}, environ={"CFM_PORT": "3000", "CFM_RATE_LIMITS": "false"})
    assert config.port == 3000 and config.rate_limits is False and config.max_text == 100
    config = load_config(toml, {"port": 4000, "max_text": None}, environ={"CFM_PORT": "3000"})
    assert config.port == 4000 and config.max_text == 100


def test_a_server_table_and_dashed_keys_are_accepted(tmp_path: Path) -> None:
    toml = tmp_path / "server.toml"
    toml.write_text('[server]\nmax-conns-per-ip = 3\nallowed_origins = ["https://a.example"]\n')
    config = load_config(toml, {}, environ={})
    assert config.max_conns_per_ip == 3 and config.allowed_origins == ["https://a.example"]


@pytest.mark.parametrize(
    "values",
    [
        {"port": 70000},
        {"store": "redis"},
        {"max_text": 10**9},
        {"shutdown_close_code": 1000},
        {"say_rate": 0},
        {"reserved_names": ["no spaces"]},
        {"history_limit": 500},
    ],
)
def test_validation_names_the_setting(values: dict) -> None:
    with pytest.raises(ConfigError) as error:
        ServerConfig(**values).validate()
    assert next(iter(values)) in str(error.value)


def test_set_assignments_are_typed() -> None:
    assert parse_assignment("typing_rate=5") == ("typing_rate", 5.0)
    assert parse_assignment("rate-limits=off") == ("rate_limits", False)
    assert parse_assignment("default_contacts=a1,b2") == ("default_contacts", ["a1", "b2"])
    with pytest.raises(ConfigError):
        parse_assignment("typing_rate")


def test_an_unknown_key_suggests_the_nearest_ones(tmp_path) -> None:
    with pytest.raises(ConfigError) as error:
        parse_assignment("say_rat=5")
    assert "'say_rat'" in str(error.value) and "did you mean say_rate" in str(error.value)
    with pytest.raises(ConfigError) as error:
        parse_assignment("colour=blue")
    assert "did you mean" not in str(error.value)
    assert "docs/server.md" in str(error.value)
    toml = tmp_path / "server.toml"
    toml.write_text("max-txt = 10\n")
    with pytest.raises(ConfigError) as error:
        load_config(toml, environ={})
    assert "did you mean max_text" in str(error.value)


def test_token_bucket_refills_and_says_when() -> None:
    bucket = TokenBucket(rate=2.0, burst=2, now=0.0)
    assert bucket.take(0.0) == 0 and bucket.take(0.0) == 0
    assert bucket.take(0.0) == 500
    assert bucket.take(0.5) == 0


def test_abuse_meter_and_pair_interval() -> None:
    meter = AbuseMeter(limit=3, window=1.0)
    assert not meter.hit(0.0) and not meter.hit(0.1)
    assert not meter.hit(5.0)  # the first two fell out of the window
    assert not meter.hit(5.1) and meter.hit(5.2)
    pairs = PairInterval(5.0)
    assert pairs.check("a", "b", 0.0) == 0
    assert pairs.check("a", "b", 1.0) == 4000
    assert pairs.check("b", "a", 1.0) == 0
    assert pairs.check("a", "b", 5.0) == 0
    assert pairs.check("a", "b", 5.5, "x") == 4500
    assert pairs.check("a", "b", 10.0, "x") == 0
    assert pairs.wait("a", "b", 10.5, "x") == 0  # the same event (a retry)
    assert pairs.check("a", "b", 10.5, "y") == 4500
    # A retry does not restart the clock.
    assert pairs.check("a", "b", 12.0, "x") == 0 and pairs.wait("a", "b", 12.0) == 3000


@pytest.mark.parametrize("code", [1001, 1012])
async def test_stop_closes_every_client_with_the_given_code(server_factory, code: int) -> None:
    server = await server_factory()
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await server.stop(close_code=code)
        assert await alice.wait_closed() == code
        assert await bob.wait_closed() == code


async def test_the_default_shutdown_code_is_1012(server_factory) -> None:
    server = await server_factory()
    async with signed_in(server.url, "alice") as alice:
        await server.stop()
        assert await alice.wait_closed() == 1012


async def test_memory_store_and_context_manager(tmp_path: Path) -> None:
    from cfm_server.server import Server

    config = ServerConfig(port=0, store="memory", ai_enabled=False, data_dir=tmp_path / "unused")
    async with Server(config) as server:
        assert server.url.startswith("ws://127.0.0.1:") and server.url.endswith("/ws")
        async with signed_in(server.url, "alice") as alice:
            await alice.send({"t": "join", "room": "#lobby"})
            await alice.send({"t": "say", "room": "#lobby", "text": "hi", "id": "1"})
            assert (await alice.recv_until("ack"))["seq"] == 1
    assert not (tmp_path / "unused").exists()
