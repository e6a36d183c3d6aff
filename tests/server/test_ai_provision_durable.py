"""An AI contact's provisioning whose write the store refuses keeps nothing live: the
server does not hold (nor hand a token for) an identity its store does not have. It is
provisioned again later, and the persona comes online once its identity is stored.

Before, the identity (or its new token) went live at once whatever the write did: the
persona signed in and chatted as a user the database never had, lost at the next start.
A real server on a real SQLite file, whose ``users`` table refuses the persona's row
through a real trigger (a write the disk refuses, for that one row), dropped later.
(A cluster node's twin: tests/cluster/test_ai_provision_durable.py.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.wire import eventually

PERSONA = "clippo"
REFUSE = (f"CREATE TRIGGER refuse_persona BEFORE INSERT ON users WHEN NEW.name = '{PERSONA}'"
          " BEGIN SELECT RAISE(ABORT, 'the disk says no'); END")


def stored_token_hash(database: Path) -> str | None:
    with sqlite3.connect(database, timeout=10) as db:
        row = db.execute("SELECT token_hash FROM users WHERE name = ?", (PERSONA,)).fetchone()
    return row[0] if row else None


def run_sql(database: Path, sql: str) -> None:
    db = sqlite3.connect(database, timeout=10)
    try:
        db.execute(sql)
        db.commit()
    finally:
        db.close()


@pytest.mark.single_node("a single node's SQLite store")
@pytest.mark.parametrize("known", [False, True], ids=["new", "re-token"])
async def test_a_refused_provisioning_keeps_nothing_live_and_is_done_later(
        server_factory: Any, tmp_path: Path, known: bool) -> None:
    data = tmp_path / "data"
    first = await server_factory(data_dir=data, ai_enabled=known)  # makes the database
    await first.stop()
    database = data / "cfm.sqlite3"
    before = stored_token_hash(database)
    assert (before is not None) == known
    run_sql(database, REFUSE)
    server = await server_factory(data_dir=data, ai_enabled=True)
    # Started: the other personas online, this one's write refused.
    others = [h for h in server.config.ai.handles if h != PERSONA]
    await eventually(lambda: all(server.hub.users[h].sessions for h in others), 20)
    user = server.hub.users.get(PERSONA)
    if known:  # the token the store holds, not the refused new one
        assert user is not None and user.record.token_hash == before
        assert not user.sessions
    else:  # no identity the store does not have
        assert user is None
    assert stored_token_hash(database) == before
    # The store takes the row again: provisioned, and online.
    run_sql(database, "DROP TRIGGER refuse_persona")
    await eventually(lambda: PERSONA in server.hub.users and server.hub.users[PERSONA].sessions,
                     40)
    stored = stored_token_hash(database)
    assert stored is not None and stored != before
    assert server.hub.users[PERSONA].record.token_hash == stored
