"""``cfm bot ai``: the cast listing, bad input, and one persona run as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cfm_cli.main import app
from cfm_common import frames as f
from cfm_common.client import Client
from cfm_server.ai.personas import DEFAULT_PERSONAS


def test_list_shows_the_cast() -> None:
    result = CliRunner().invoke(app, ["bot", "ai", "--list"], env={})
    assert result.exit_code == 0, result.output
    for persona in DEFAULT_PERSONAS:
        assert persona.handle in result.output and persona.display in result.output


def test_list_includes_personas_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "cfm.toml"
    config.write_text('[[ai.personas]]\nhandle = "dj_llama"\nprompt = "a DJ"\n'
                      'display = "DJ Llama"\n')
    result = CliRunner().invoke(app, ["bot", "ai", "--list", "--config", str(config)], env={})
    assert result.exit_code == 0, result.output
    assert "dj_llama" in result.output and "DJ Llama" in result.output


def test_an_unknown_persona_is_refused_with_the_cast() -> None:
    result = CliRunner().invoke(app, ["bot", "ai", "--persona", "nobody"], env={})
    assert result.exit_code == 2
    assert "no persona 'nobody'" in result.output and "tamago" in result.output


def test_a_bad_backend_is_refused() -> None:
    result = CliRunner().invoke(app, ["bot", "ai", "--persona", "tamago",
                                      "--backend", "skynet"], env={})
    assert result.exit_code == 2
    assert "ai.backend" in result.output


def test_workers_ai_needs_an_account_and_a_key() -> None:
    result = CliRunner().invoke(app, ["bot", "ai", "--persona", "tamago",
                                      "--backend", "workers-ai"], env={})
    assert result.exit_code == 2
    assert "CFM_AI_ACCOUNT_ID" in result.output


async def test_runs_one_persona_until_sigterm(server: Any, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFM_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cfm_cli.main", "bot", "ai", "--server", server.url,
        "--persona", "clippo", "--token-dir", str(tmp_path / "tokens"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            line = b""
            while b"is online" not in line:
                line = await process.stderr.readline()
                assert line, "the bot exited before it came online"
            async with Client(server.url, "alice", token_file=False) as alice:
                await alice.say("how do I print a page?", to="clippo")
                async for event in alice:
                    if isinstance(event, f.Msg) and event.sender == "clippo":
                        assert "print a page" in event.text
                        break
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (tmp_path / "tokens" / "clippo.token").exists()
