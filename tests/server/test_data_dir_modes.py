"""The data directory is private to the server's user: 0700, its files 0600, whatever
the umask (issue 10 item 10: the database, its WAL and every DM were world-readable)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.wire import signed_in


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 000: whatever is not made private on purpose comes out world-writable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.usefixtures("open_umask")
async def test_a_new_data_dir_and_its_files_are_private(
    server_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / "new" / "data"
    server = await server_factory(data_dir=data, registration="invite")
    from cfm_server.invites import make_code

    code = make_code(server.hub.invites.key)
    async with signed_in(server.url, "alice", invite=code):  # a sign-up writes the WAL
        pass
    names = {p.name for p in files_under(data)}
    assert {"cfm.sqlite3", "cfm.sqlite3-wal", "cfm.sqlite3-shm", "cfm.sqlite3.lock",
            "server.json", "invite.key"} <= names, names
    assert mode(data) == 0o700
    for path in files_under(data):
        assert mode(path) == 0o600, (path.name, oct(mode(path)))
    await server.stop()
    for path in files_under(data):  # closing leaves nothing wider behind
        assert mode(path) == 0o600, (path.name, oct(mode(path)))


@pytest.mark.usefixtures("open_umask")
async def test_files_an_older_server_left_readable_are_made_private(
    server_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / "old"
    server = await server_factory(data_dir=data)
    await server.stop()
    for path in files_under(data):
        path.chmod(0o644)
    server = await server_factory(data_dir=data)
    for path in files_under(data):
        assert mode(path) == 0o600, (path.name, oct(mode(path)))


async def test_an_existing_wide_data_dir_is_warned_about(
    server_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "shared"
    data.mkdir()
    data.chmod(0o755)
    with caplog.at_level(logging.WARNING):
        await server_factory(data_dir=data)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(str(data) in w and "0755" in w and "chmod 700" in w for w in warnings), warnings
    # The operator's choice of directory mode is left alone; its files are still private.
    assert mode(data) == 0o755
    assert mode(data / "cfm.sqlite3") == 0o600


async def test_a_private_data_dir_gets_no_warning(
    server_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        await server_factory(data_dir=tmp_path / "fresh")
    assert not [r for r in caplog.records if "chmod" in r.getMessage()]


@pytest.mark.usefixtures("open_umask")
async def test_the_ai_contacts_files_are_private_too(server_factory: Any, tmp_path: Path) -> None:
    data = tmp_path / "with-ai"
    server = await server_factory(data_dir=data, ai_enabled=True)
    await server.stop()
    tokens = list((data / "ai").glob("*.token"))
    assert tokens
    assert mode(data / "ai") == 0o700
    for path in files_under(data):
        assert mode(path) == 0o600, (path.name, oct(mode(path)))
