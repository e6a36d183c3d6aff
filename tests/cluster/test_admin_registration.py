"""``cfm admin invite --redis`` says what a single node's ``invite`` says of its
registration, from what each running node recorded in Redis at its start (a cluster
node has no ``server.json``), naming each node when they differ; and ``users``
(``--redis`` as on a data dir) heads its status column with what it is, the status last
chosen, not the presence."""

from __future__ import annotations

from pathlib import Path

from tests.cluster.redis_proc import RedisProcess
from tests.cluster.test_admin import cfm_admin
from tests.wire import signed_in

NOTE = "Note: "


def note(out: str) -> str | None:
    lines = [line for line in out.splitlines() if line.startswith(NOTE)]
    assert len(lines) <= 1, out
    return lines[0][len(NOTE):] if lines else None


async def test_invite_with_redis_reads_the_nodes_registration(
        redis: RedisProcess, nodes, tmp_path: Path) -> None:
    # No node yet: nothing recorded, said so (the command's settings say nothing).
    before = note(await cfm_admin("invite", "--redis", redis.url, tmp_path=tmp_path))
    assert before is not None and "no node has recorded its registration" in before, before

    a = await nodes(registration="closed", public_url="wss://chat.example/ws")
    b = await nodes(registration="closed", public_url="wss://chat.example/ws")
    out = await cfm_admin("invite", "--redis", redis.url, tmp_path=tmp_path)
    said = note(out)
    assert said is not None and said.startswith(
        "this cluster's registration is 'closed' (as 2 running nodes recorded it in Redis: "
        "n1 'closed', n2 'closed')"), out
    # The URL every node recorded as its public_url, for the invitees' command line and
    # a new account's token file.
    assert "cfm chat --server wss://chat.example/ws --invite" in out, out
    made = await cfm_admin("add-user", "ivy", "--redis", redis.url, tmp_path=tmp_path)
    assert "tokens/chat.example_443_ws/ivy.token" in made, made

    # A node stopped cleanly is no longer counted; one started with invites is.
    await b.stop()
    c = await nodes(registration="invite")
    said = note(await cfm_admin("invite", "--redis", redis.url, tmp_path=tmp_path))
    assert said is not None and "differ in registration" in said, said
    assert "n1 'closed', n3 'invite'" in said and "n2" not in said, said

    await a.stop()
    quiet = await cfm_admin("invite", "--redis", redis.url, tmp_path=tmp_path)
    assert note(quiet) is None, quiet  # every running node asks for codes
    await c.stop()
    # None runs: what the nodes recorded at their last start, said to be that.
    said = note(await cfm_admin("invite", "--redis", redis.url, tmp_path=tmp_path))
    assert said is not None and "none runs now" in said, said
    assert "n1 'closed', n3 'invite'" in said, said


async def test_invite_with_redis_on_open_nodes_says_codes_are_not_asked_for(
        redis: RedisProcess, nodes, tmp_path: Path) -> None:
    await nodes()
    await nodes()
    # The command's own settings say "invite": the nodes' records are what counts.
    config = tmp_path / "server.toml"
    config.write_text(f'[server]\nredis_url = "{redis.url}"\nregistration = "invite"\n')
    said = note(await cfm_admin("invite", "--config", str(config), tmp_path=tmp_path))
    assert said is not None and said.startswith("this cluster's registration is 'open'"), said
    assert "start its nodes with --registration invite" in said, said


async def test_users_heads_the_status_column_with_the_status_chosen(
        redis: RedisProcess, nodes, tmp_path: Path) -> None:
    a = await nodes()
    async with signed_in(a.url, "gil", status="busy"):
        pass
    async with signed_in(a.url, "hana"):
        pass
    out = await cfm_admin("users", "--redis", redis.url, tmp_path=tmp_path)
    header = next(line for line in out.splitlines() if line.lstrip().startswith("handle"))
    assert header.split()[:5] == ["handle", "display", "kind", "chosen", "status"], out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.lstrip().startswith(("gil", "hana"))}
    # Both are signed out: what shows is their choice, "online" included.
    assert rows["gil"][3] == "busy" and rows["hana"][3] == "online", out
