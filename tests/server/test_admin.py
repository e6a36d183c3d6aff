"""``cfm admin`` on data directories written by a real server, checked through the CLI
and by starting the server again on the same directory."""

from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cfm_cli.main import app
from tests.wire import signed_in


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No server.toml, token file or CFM_* setting of the machine running the tests."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    for key in list(os.environ):
        if key.startswith("CFM_"):
            monkeypatch.delenv(key)


def admin(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, ["admin", *args], input=input, env=env)


def data_dir(server: Any) -> Path:
    return Path(server.config.data_dir)


async def restart(server_factory: Any, server: Any) -> Any:
    await server.stop(close_code=1001)
    return await server_factory(data_dir=server.config.data_dir)


async def test_users_lists_what_the_server_stored(server_factory: Any) -> None:
    server = await server_factory()
    async with signed_in(server.url, "Alice", display="Alice A.", status="busy") as alice, \
            signed_in(server.url, "helper", bot=True):
        await alice.send({"t": "join", "room": "#lobby"})
        await alice.recv_until("joined")
        for i, frame in enumerate(({"room": "#lobby"}, {"room": "#lobby"}, {"to": "helper"})):
            await alice.send({"t": "say", "text": "hi", "id": f"m{i}", **frame})
            await alice.recv_until("ack")
    await server.stop(close_code=1001)

    result = admin("users", "--data-dir", str(data_dir(server)), "--json")
    assert result.exit_code == 0, result.output
    users = {u["name"]: u for u in json.loads(result.output)}
    assert set(users) == {"alice", "helper"}
    alice = users["alice"]
    today = datetime.datetime.fromtimestamp(alice["created_ms"] / 1000, datetime.UTC)
    assert alice == {
        "name": "alice", "display": "Alice A.", "kind": "person", "status": "busy",
        "created": today.date().isoformat(), "created_ms": alice["created_ms"],
        "rooms": 1, "dms": 1, "messages": 3,
    }
    assert (users["helper"]["kind"], users["helper"]["messages"]) == ("bot", 0)

    table = admin("users", "--data-dir", str(data_dir(server)))
    assert table.exit_code == 0, table.output
    assert "2 users" in table.output
    assert re.search(r"alice\s+Alice A\.\s+person\s+busy\s+\d{4}-\d\d-\d\d\s+1\s+1\s+3",
                     table.output), table.output


async def test_the_ai_contacts_are_listed_as_such_and_keep_their_tokens(
        server_factory: Any) -> None:
    server = await server_factory(ai_enabled=True)
    await server.stop(close_code=1001)
    users = json.loads(admin("users", "--data-dir", str(data_dir(server)), "--json").output)
    assert {u["kind"] for u in users} == {"ai"}
    assert "smartybot" in {u["name"] for u in users}

    result = admin("reset-token", "smartybot", "--data-dir", str(data_dir(server)))
    assert result.exit_code == 2
    assert "AI contacts" in result.output
    assert "fresh token every time it starts" in result.output


async def test_reset_token_replaces_the_old_one(server_factory: Any, tmp_path: Path) -> None:
    server = await server_factory()
    async with signed_in(server.url, "alice") as alice:
        old = alice.token
    await server.stop(close_code=1001)

    token_file = tmp_path / "alice.token"
    result = admin("reset-token", "alice", "--data-dir", str(data_dir(server)),
                   "--token-file", str(token_file))
    assert result.exit_code == 0, result.output
    assert token_file.stat().st_mode & 0o777 == 0o600
    new = token_file.read_text().strip()
    assert new != old and len(new) == len(old)  # token_urlsafe(32), as the server's
    assert new not in result.output  # written, not shown

    server = await restart(server_factory, server)
    async with signed_in(server.url, "alice", token=new):
        pass
    from tests.wire import WireClient

    async with WireClient.connect(server.url) as stale:
        reply = await stale.hello("alice", token=old)
        assert (reply["t"], reply["code"]) == ("error", "bad_token")


async def test_reset_token_prints_the_token_and_the_file_cfm_chat_reads(
        server_factory: Any) -> None:
    from cfm_common import tokens
    from cfm_common.client import Client

    server = await server_factory()
    async with signed_in(server.url, "alice"):
        pass
    await server.stop(close_code=1001)

    result = admin("reset-token", "alice", "--data-dir", str(data_dir(server)),
                   "--server", server.url.replace("127.0.0.1", "localhost"))
    assert result.exit_code == 0, result.output
    token = re.search(r"^  (\S{43})$", result.output, re.M)
    assert token is not None, result.output
    # The path it names is where the SDK (and so cfm chat --server URL) looks.
    path = re.search(r"^  (\S+\.token)$", result.output, re.M)
    assert path is not None, result.output
    url = server.url.replace("127.0.0.1", "localhost")
    assert Path(path.group(1)).expanduser() == tokens.default_token_file(url, "alice")

    server = await restart(server_factory, server)
    url = server.url.replace("127.0.0.1", "localhost")  # its new port: another file
    tokens.write_token(tokens.default_token_file(url, "alice"), token.group(1))
    async with Client(url, "alice") as client:  # reads its default token file
        assert client.name == "alice"


async def test_remove_user_frees_the_handle_and_keeps_the_history(
        server_factory: Any) -> None:
    server = await server_factory()
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        await alice.send({"t": "join", "room": "#lobby"})
        await alice.recv_until("joined")
        await alice.send({"t": "say", "room": "#lobby", "text": "old alice here", "id": "a1"})
        await alice.recv_until("ack")
        await alice.send({"t": "say", "to": "bob", "text": "a secret", "id": "a2"})
        await alice.recv_until("ack")
        await bob.send({"t": "contact", "op": "add", "name": "alice"})
        await bob.recv_until("contact")
        await alice.send({"t": "contact", "op": "add", "name": "bob"})
        await alice.recv_until("contact")
    await server.stop(close_code=1001)
    directory = str(data_dir(server))

    declined = admin("remove-user", "alice", "--data-dir", directory, input="n\n")
    assert declined.exit_code == 1
    assert "nothing changed" in declined.output
    users = json.loads(admin("users", "--data-dir", directory, "--json").output)
    assert "alice" in {u["name"] for u in users}

    result = admin("remove-user", "ALICE", "--data-dir", directory, "--yes")
    assert result.exit_code == 0, result.output
    assert "1 message in group rooms will be kept" in result.output
    assert "no history gets a hole" in result.output
    assert "archived" in result.output
    users = json.loads(admin("users", "--data-dir", directory, "--json").output)
    assert [u["name"] for u in users] == ["bob"]

    server = await restart(server_factory, server)
    async with signed_in(server.url, "alice") as newcomer:  # no token: a new claim
        assert newcomer.welcome["rooms"] == []
        await newcomer.send({"t": "join", "room": "#lobby"})
        await newcomer.recv_until("joined")
        await newcomer.send({"t": "history", "room": "#lobby"})
        history = await newcomer.recv_until("history")
        assert [m["text"] for m in history["msgs"]] == ["old alice here"]
        # The old alice's message ids are not the newcomer's: "a1" is a new message.
        await newcomer.send({"t": "say", "room": "#lobby", "text": "new alice", "id": "a1"})
        assert (await newcomer.recv_until("ack"))["seq"] == 2
        # The old DMs are not the newcomer's: the conversation starts empty.
        await newcomer.send({"t": "join", "room": "dm:alice:bob"})
        joined = await newcomer.recv_until("joined")
        assert joined["seq"] == 0
    async with signed_in(server.url, "bob", token=bob.token) as bob_again:
        assert "alice" not in {c["name"] for c in bob_again.welcome["contacts"]}
        assert "dm:alice:bob" not in {r["room"] for r in bob_again.welcome["rooms"]}


async def test_a_served_data_directory_is_refused(server_factory: Any) -> None:
    server = await server_factory()
    directory = data_dir(server)
    async with signed_in(server.url, "alice"):
        pass
    before = sorted(p.name for p in directory.iterdir())
    # Reading works beside the running server (SQLite's WAL lets a reader in).
    listed = admin("users", "--data-dir", str(directory), "--json")
    assert listed.exit_code == 0, listed.output
    assert "alice" in {u["name"] for u in json.loads(listed.output)}
    counted = admin("stats", "--data-dir", str(directory), "--json")
    assert counted.exit_code == 0 and json.loads(counted.output)["persons"] == 1
    # (remove-user asks the running server: test_admin_remove_notices.py)
    result = admin("add-user", "zed", "--data-dir", str(directory))
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"cfm admin: stop cfm serve first (pid {os.getpid()} serves {directory})")
    assert sorted(p.name for p in directory.iterdir()) == before
    async with signed_in(server.url, "bob"):  # still serving
        pass


async def test_bad_names_and_missing_data(server_factory: Any, tmp_path: Path) -> None:
    server = await server_factory()
    await server.stop(close_code=1001)
    directory = str(data_dir(server))
    for command in ("reset-token", "remove-user"):
        result = admin(command, "nobody", "--data-dir", directory)
        assert result.exit_code == 2
        assert "no user 'nobody'" in result.output
        result = admin(command, "no way", "--data-dir", directory)
        assert result.exit_code == 2
        assert "not a valid handle" in result.output

    missing = tmp_path / "missing"
    result = admin("users", "--data-dir", str(missing))
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"cfm admin: the data directory {missing} does not exist; check --data-dir")
    assert not missing.exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    result = admin("stats", "--data-dir", str(empty))
    assert result.exit_code == 2
    assert "no cfm database in" in result.output
    assert "--redis URL" in result.output  # the way to a cluster's accounts
    assert list(empty.iterdir()) == []

    (empty / "cfm.sqlite3").touch()
    result = admin("stats", "--data-dir", str(empty))
    assert result.exit_code == 2
    assert "is empty, not a cfm database" in result.output
    assert (empty / "cfm.sqlite3").stat().st_size == 0


async def test_stats_and_the_data_dir_from_the_environment(server_factory: Any) -> None:
    server = await server_factory()
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bot1", bot=True):
        await alice.send({"t": "join", "room": "#lobby"})
        await alice.recv_until("joined")
        await alice.send({"t": "say", "to": "bot1", "text": "hi", "id": "x"})
        await alice.recv_until("ack")
    await server.stop(close_code=1001)

    env = {"CFM_DATA_DIR": str(data_dir(server))}
    result = admin("stats", "--json", env=env)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats == {"users": 2, "persons": 1, "bots": 1, "rooms": 1, "dms": 1,
                     "archived": 0, "messages": 1, "db_bytes": stats["db_bytes"]}
    db = data_dir(server) / "cfm.sqlite3"
    assert stats["db_bytes"] >= db.stat().st_size > 0
    text = admin("stats", env=env).output
    assert "2 (1 person, 1 bot)" in text
    assert str(db) in text


async def test_a_freed_handle_moderates_nothing_and_owns_no_old_message(
        server_factory: Any) -> None:
    server = await server_factory()
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob:
        for client in (alice, bob):
            await client.send({"t": "join", "room": "#alices"})  # alice creates it
            await client.recv_until("joined")
        await alice.send({"t": "say", "room": "#alices", "text": "old alice", "id": "a1"})
        await alice.recv_until("ack")
        await bob.send({"t": "say", "room": "#alices", "text": "bob's", "id": "b1"})
        await bob.recv_until("ack")
        await bob.send({"t": "react", "room": "#alices", "target": 1, "emoji": "x",
                        "id": "b2"})
        await bob.recv_until("ack")
    await server.stop(close_code=1001)
    result = admin("remove-user", "alice", "--data-dir", str(data_dir(server)), "--yes")
    assert result.exit_code == 0, result.output

    server = await restart(server_factory, server)
    async with signed_in(server.url, "alice") as newcomer:  # a new claim of the handle
        await newcomer.send({"t": "join", "room": "#alices"})
        await newcomer.recv_until("joined")
        await newcomer.send({"t": "moderators", "room": "#alices", "id": "q"})
        answer = await newcomer.recv_until("moderators", ref="q")
        assert answer["names"] == [] and "creator" not in answer
        for t, target, cid in (("delete", 2, "n1"), ("edit", 1, "n2"), ("delete", 1, "n3")):
            frame = {"t": t, "room": "#alices", "target": target, "id": cid}
            if t == "edit":
                frame["text"] = "rewritten"
            await newcomer.send(frame)
            assert (await newcomer.recv_until("error", ref=cid))["code"] == "forbidden"


async def test_after_a_removal_and_the_restart_nobody_sees_the_removed_user(
        server_factory: Any) -> None:
    """Single node: ``remove-user`` needs the server stopped, so no running server holds
    a stale copy; at the next start the others' contact lists, rooms' members and
    presence no longer show the user (what a cluster node tells its sessions live:
    tests/cluster/test_admin_remove_notice.py)."""
    server = await server_factory()
    async with signed_in(server.url, "alice") as alice, signed_in(server.url, "bob") as bob, \
            signed_in(server.url, "erin") as erin:
        join = {"t": "join", "room": "#tea"}
        for client, frame, answer in (
                (alice, join, "joined"), (bob, join, "joined"),
                (bob, {"t": "contact", "op": "add", "name": "alice"}, "contact"),
                (erin, {"t": "contact", "op": "block", "name": "alice"}, "contact")):
            await client.send(frame)
            await client.recv_until(answer)
    await server.stop(close_code=1001)
    result = admin("remove-user", "alice", "--data-dir", str(data_dir(server)), "--yes")
    assert result.exit_code == 0, result.output

    server = await restart(server_factory, server)
    async with signed_in(server.url, "bob", token=bob.token) as bob_again, \
            signed_in(server.url, "erin", token=erin.token) as erin_again:
        for client in (bob_again, erin_again):
            assert client.welcome["contacts"] == [], client.welcome
        await bob_again.send({"t": "join", "room": "#tea"})
        joined = await bob_again.recv_until("joined")
        assert [m["name"] for m in joined["members"]] == ["bob"], joined
        await bob_again.send({"t": "members", "room": "#tea", "id": "m"})
        page = await bob_again.recv_until("members", ref="m")
        assert [m["name"] for m in page["members"]] == ["bob"], page
        await bob_again.send({"t": "contact", "op": "add", "name": "alice", "id": "c"})
        refused = await bob_again.recv_until("error", ref="c")
        assert refused["code"] == "no_such_user", refused
