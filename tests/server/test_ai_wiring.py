"""`cfm serve` starts the AI contacts itself: provisioned before listening, in every new
user's contact list, answering DMs, and their handles safe from squatters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.wire import WireClient, signed_in

PERSONA = "smartybot"


async def test_new_users_find_the_ai_contacts_online_in_their_list(server_factory: Any) -> None:
    server = await server_factory(ai_enabled=True)
    handles = set(server.config.ai.handles)
    assert PERSONA in handles
    async with signed_in(server.url, "alice") as alice:
        contacts = {c["name"]: c for c in alice.welcome["contacts"]}
        assert handles <= set(contacts)
        assert contacts[PERSONA]["bot"] is True
        assert contacts[PERSONA]["status"] != "offline"


async def test_a_dm_to_an_ai_contact_gets_an_answer(server_factory: Any) -> None:
    server = await server_factory(ai_enabled=True)
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "say", "to": PERSONA, "id": "q1", "text": "hi! my name is Alice"})
        await alice.recv_until("ack", id="q1")
        reply = await alice.recv_until("msg", timeout=10)
        assert reply["from"] == PERSONA
        assert reply["room"] == f"dm:alice:{PERSONA}"
        assert reply["text"].strip()


async def test_nobody_can_claim_a_persona_handle(server_factory: Any) -> None:
    server = await server_factory(ai_enabled=True)
    async with WireClient.connect(server.url) as mallory:
        reply = await mallory.hello(PERSONA.upper())
        assert reply["t"] == "error" and reply["code"] == "name_taken"


async def test_personas_come_back_after_a_restart_on_the_same_data_dir(
    server_factory: Any, tmp_path: Path
) -> None:
    first = await server_factory(ai_enabled=True, data_dir=tmp_path / "data")
    await first.stop(close_code=1001)
    second = await server_factory(ai_enabled=True, data_dir=tmp_path / "data")
    async with signed_in(second.url, "bob") as bob:
        await bob.send({"t": "say", "to": PERSONA, "id": "q1", "text": "are you there?"})
        reply = await bob.recv_until("msg", timeout=10)
        assert reply["from"] == PERSONA


async def test_a_person_who_took_a_persona_handle_keeps_it(server_factory: Any,
                                                          tmp_path: Path) -> None:
    data = tmp_path / "data"
    plain = await server_factory(ai_enabled=False, data_dir=data)
    async with signed_in(plain.url, PERSONA) as squatter:
        token = squatter.token
    await plain.stop(close_code=1001)
    server = await server_factory(ai_enabled=True, data_dir=data)
    async with signed_in(server.url, PERSONA, token=token) as owner:
        assert owner.welcome["name"] == PERSONA


def test_an_ai_table_in_the_config_file_is_read(tmp_path: Path) -> None:
    from cfm_server.config import load_config

    config_file = tmp_path / "server.toml"
    config_file.write_text('port = 4000\n[ai]\nkill_switch = true\nuser_daily_quota = 7\n')
    config = load_config(config_file, environ={})
    assert config.port == 4000
    assert config.ai is not None and config.ai.kill_switch is True
    assert config.ai.user_daily_quota == 7


def test_a_bad_ai_setting_is_a_clear_error_and_exit_2(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cfm_cli.main", "serve", "--data-dir", str(tmp_path),
         "--port", "0", "--ai-backend", "telepathy"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 2, out.stderr
    assert "telepathy" in out.stderr and "Traceback" not in out.stderr
