"""Who may claim a new handle: open, by invite (codes from `cfm admin invite`), closed
(accounts from `cfm admin add-user`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cfm_cli.main import app
from cfm_common.client import Client, ClientError
from cfm_server.invites import InviteBook, InviteError, load_key, make_code, parse_code
from tests.wire import WireClient, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No server.toml or CFM_* setting of the machine running the tests."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    for key in [k for k in os.environ if k.startswith("CFM_")]:
        monkeypatch.delenv(key)


def admin(*args: str) -> Any:
    return CliRunner().invoke(app, ["admin", *args])


def code_from(output: str) -> str:
    lines = [line.strip() for line in output.splitlines()]
    return lines[lines.index("") + 1]  # the code stands alone after a blank line


async def hello(url: str, name: str, **keys: Any) -> dict[str, Any]:
    async with WireClient.connect(url) as client:
        await client.send({"t": "hello", "v": 1, "name": name, **keys})
        return await client.recv()


# --- the codes ------------------------------------------------------------------------


def test_codes_are_checked_for_forgery_expiry_and_uses(tmp_path: Path) -> None:
    key = load_key(tmp_path, create=True)
    assert key is not None and (tmp_path / "invite.key").stat().st_mode & 0o777 == 0o600
    assert load_key(tmp_path, create=False) == key  # made once, then read
    now = time.time()
    code = make_code(key, uses=2, expires=int(now) + 60)
    invite = parse_code(key, code, now)
    assert invite.uses == 2
    assert parse_code(key, code.upper(), now) == invite  # case and spaces forgiven
    with pytest.raises(InviteError, match="expired"):
        parse_code(key, code, now + 61)
    with pytest.raises(InviteError, match="not from this server"):
        parse_code(b"k" * 32, code, now)
    nonce, expires, _, mac = code.split("-")
    with pytest.raises(InviteError, match="not from this server"):
        parse_code(key, f"{nonce}-{expires}-ff-{mac}", now)  # more uses: the mac breaks
    with pytest.raises(InviteError, match="not an invite code"):
        parse_code(key, "hello", now)
    book = InviteBook(key, {})
    book.spend(book.admit(code, now))
    book.spend(book.admit(code, now))
    with pytest.raises(InviteError, match="used up"):
        book.admit(code, now)
    forever = make_code(key, uses=0, expires=0)
    for _ in range(5):
        book.spend(book.admit(forever, now + 10**9))


def test_a_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "invite.key").write_text("not hex\n")
    with pytest.raises(InviteError, match="delete it"):
        load_key(tmp_path, create=True)


# --- a server by invite ------------------------------------------------------------------


@pytest.mark.single_node("cfm admin invite on the data dir")
async def test_by_invite_a_new_handle_needs_a_valid_unused_code(server_factory: Any) -> None:
    server = await server_factory(registration="invite")
    data_dir = str(server.config.data_dir)
    # cfm admin invite works while the server runs: it needs no database.
    made = admin("invite", "--uses", "1", "--expires", "1h", "--data-dir", data_dir)
    assert made.exit_code == 0, made.output
    assert "1 new account" in made.output and "--invite" in made.output
    code = code_from(made.output)

    refused = await hello(server.url, "alice")
    assert refused["t"] == "error" and refused["code"] == "forbidden"
    assert "invite" in refused["msg"] and refused["ref"] == "hello"
    wrong = await hello(server.url, "alice", invite=code[:-1] + ("0" if code[-1] != "0" else "1"))
    assert wrong["code"] == "forbidden" and "not from this server" in wrong["msg"]

    async with Client(server.url, "alice", token_file=False, invite=code) as alice:
        token = alice.token
        assert (await alice.join("#lobby")).room == "#lobby"
    used_up = await hello(server.url, "bob", invite=code)
    assert used_up["code"] == "forbidden" and "used up" in used_up["msg"]
    # Who has an account signs in with the token alone.
    async with signed_in(server.url, "alice", token=token) as again:
        assert again.welcome["name"] == "alice"

    # The use is stored: after a restart the code is still used up.
    port, directory = server.port, server.config.data_dir
    await server.stop(close_code=1001)
    server = await server_factory(port=port, data_dir=directory, registration="invite")
    assert (await hello(server.url, "carol", invite=code))["code"] == "forbidden"


async def test_the_sdk_reports_a_refused_sign_up_and_does_not_retry(
    server_factory: Any,
) -> None:
    server = await server_factory(registration="invite")
    client = Client(server.url, "dave", token_file=False)
    with pytest.raises(ClientError) as refused:
        await client.connect(wait=True)  # a refusal is final, even when waiting
    await client.close()
    assert refused.value.code == "forbidden"
    assert "invite code" in refused.value.msg


@pytest.mark.single_node("cfm admin on the data dir")
async def test_closed_registration_takes_accounts_made_by_the_operator(
    server_factory: Any, tmp_path: Path
) -> None:
    server = await server_factory(registration="closed")
    refused = await hello(server.url, "erin")
    assert refused["code"] == "forbidden" and "no new users" in refused["msg"]
    port, directory = server.port, server.config.data_dir
    await server.stop(close_code=1001)

    token_file = tmp_path / "erin.token"
    made = admin("add-user", "Erin", "--display", "Erin E.", "--data-dir", str(directory),
                 "--token-file", str(token_file))
    assert made.exit_code == 0, made.output
    again = admin("add-user", "erin", "--data-dir", str(directory))
    assert again.exit_code == 2 and "already exists" in again.output
    bad = admin("add-user", "x", "--data-dir", str(directory))
    assert bad.exit_code == 2 and "not a valid handle" in bad.output

    server = await server_factory(port=port, data_dir=directory, registration="closed")
    async with Client(server.url, "erin", token_file=token_file) as erin:
        assert erin.welcome is not None and erin.welcome.display == "Erin E."


async def test_open_registration_is_the_default(server: Any) -> None:
    assert (await hello(server.url, "frank"))["t"] == "welcome"


def test_bad_registration_and_invite_options(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--registration", "maybe", "--data-dir",
                                      str(tmp_path)])
    assert result.exit_code == 2 and "registration must be one of" in result.output
    result = admin("invite", "--expires", "soon", "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and "--expires" in result.output
    result = admin("invite", "--data-dir", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "no cfm database" in result.output
    result = admin("invite", "--data-dir", str(tmp_path))  # a directory, but no server's
    assert result.exit_code == 2 and "no cfm database" in result.output
    assert not (tmp_path / "invite.key").exists()


@pytest.mark.single_node("cfm admin on the data dir")
async def test_admin_knows_the_url_and_registration_the_server_was_started_with(
    server_factory: Any,
) -> None:
    # Given as flags (here: the config object), not in any file cfm admin could read.
    server = await server_factory(registration="invite")
    result = admin("invite", "--data-dir", str(server.config.data_dir))
    assert result.exit_code == 0, result.output
    assert f"--server ws://127.0.0.1:{server.port}/ws --invite" in result.output
    assert "Note:" not in result.output


@pytest.mark.single_node("cfm admin on the data dir")
async def test_an_invite_for_an_open_server_says_it_will_not_be_asked_for(
    server: Any,
) -> None:
    result = admin("invite", "--expires", "never", "--uses", "0", "--data-dir",
                   str(server.config.data_dir))
    assert result.exit_code == 0 and "never expires" in result.output
    assert "registration is 'open'" in result.output  # the server would not ask for it


def test_admin_refuses_to_work_as_another_user_than_the_data_dirs(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory to another user")
    data = tmp_path / "data"
    data.mkdir()
    (data / "cfm.sqlite3").write_bytes(b"")
    os.chown(data, 4242, 4242)
    for args in (["invite"], ["users"], ["stats"]):
        result = admin(*args, "--data-dir", str(data))
        assert result.exit_code == 2, result.output
        assert "run cfm admin as that user too" in result.output
    assert sorted(p.name for p in data.iterdir()) == ["cfm.sqlite3"]  # nothing made
