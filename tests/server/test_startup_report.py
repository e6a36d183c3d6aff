"""What ``cfm serve`` says at start: misspelled settings, and the security-relevant
settings in force (issue 15 item 4: ``CFM_REGISTRATON=invite`` left a server open)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trustme
from typer.testing import CliRunner

from cfm_cli.main import app
from cfm_server.config import unknown_env_warnings
from tests.server.serve_proc import serve


@pytest.fixture(autouse=True)
def _no_cfm_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for key in list(os.environ):
        if key.startswith("CFM_"):
            monkeypatch.delenv(key)


def test_unknown_cfm_variables_are_named_with_a_suggestion() -> None:
    warnings = unknown_env_warnings({"CFM_REGISTRATON": "invite", "CFM_ZZZ": "1",
                                     "HOME": "/root"})
    assert warnings == [
        "the environment variable CFM_REGISTRATON is not a cfm setting (did you mean "
        "CFM_REGISTRATION?); it is ignored",
        "the environment variable CFM_ZZZ is not a cfm setting; it is ignored",
    ]


def test_every_variable_cfm_reads_is_known() -> None:
    known = {"CFM_PORT": "1", "CFM_DATA_DIR": "x", "CFM_TRUSTED_PROXIES": "10.0.0.1",
             "CFM_AI_MODEL": "m", "CFM_AI_API_KEY": "k", "CFM_AI_ROOMS": "#lobby",
             "CFM_LOG_LEVEL": "info", "CFM_LOG_FILE": "f", "CFM_LOG_FORMAT": "json",
             "CFM_SERVER": "ws://x"}
    assert unknown_env_warnings(known) == []


def test_cfm_invite_is_named_as_ignored_with_the_reason() -> None:
    # cfm chat reads no invite from the environment (see cfm_tui/cli.py): say so, rather
    # than let someone believe CFM_INVITE works.
    [warning] = unknown_env_warnings({"CFM_INVITE": "code"})
    assert "CFM_INVITE is ignored" in warning and "--invite" in warning


def test_an_unknown_ai_key_gets_a_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('[ai]\nbackendd = "openai"\n')
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert "unknown key ai.backendd (did you mean ai.backend?)" in result.output


async def test_a_misspelled_variable_is_warned_about_and_the_banner_shows_the_truth(
    tmp_path: Path,
) -> None:
    async with serve("--data-dir", str(tmp_path), env={"CFM_REGISTRATON": "invite"}) as server:
        await server.wait_line(r"registration open: anyone")
    text = server.text()
    assert "CFM_REGISTRATON is not a cfm setting (did you mean CFM_REGISTRATION?)" in text
    assert "bound to 127.0.0.1 (this machine only); TLS off; trusted proxies: none" in text
    assert "rate limits on; browser origins: any" in text


async def test_the_banner_names_registration_tls_and_proxies_in_force(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    env = {"CFM_REGISTRATION": "invite", "CFM_TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1"}
    async with serve("--data-dir", str(tmp_path / "data"), "--tls-cert", str(chain),
                     "--tls-key", str(key), env=env) as server:
        await server.wait_line(r"trusted proxies")
    text = server.text()
    assert "registration invite: new handles only with a code from cfm admin invite" in text
    assert (f"bound to 127.0.0.1 (this machine only); TLS on ({chain}; SIGHUP reloads it); "
            f"trusted proxies: 10.0.0.0/8, 127.0.0.1") in text
    assert "is not a cfm setting" not in text


async def test_the_banner_shows_rate_limits_lifted(tmp_path: Path) -> None:
    async with serve("--data-dir", str(tmp_path), "--no-rate-limits") as server:
        await server.wait_line(r"rate limits OFF \(--no-rate-limits: no token buckets, no "
                               r"per-IP cap\); browser origins: any")


async def test_public_url_is_in_the_banner_and_in_cfm_admins_instructions(
    tmp_path: Path,
) -> None:
    public = "wss://chat.example.org/ws"
    async with serve("--data-dir", str(tmp_path), "--registration", "invite",
                     "--set", f"public_url={public}") as server:
        await server.wait_line(rf"public URL {public} \(what users type\)")
        result = CliRunner().invoke(app, ["admin", "invite", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"cfm chat --server {public} --invite " in result.output


def test_a_public_url_must_be_a_websocket_url() -> None:
    from cfm_server.config import ConfigError, ServerConfig

    with pytest.raises(ConfigError, match="public_url must be a ws:// or wss:// URL"):
        ServerConfig(public_url="https://chat.example.org").validate()


def test_bad_logging_flags_are_one_line_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    for args, expected in (
        (["--log-level", "loud"], "--log-level must be debug, info, warning or error"),
        (["--log-format", "xml"], "--log-format must be text or json, not 'xml'"),
        (["--log-file", str(tmp_path / "missing" / "cfm.log")],
         f"cannot open the log file {tmp_path / 'missing' / 'cfm.log'}"),
    ):
        result = runner.invoke(app, ["serve", "--store", "memory", *args])
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output and "Traceback" not in result.output, result.output
