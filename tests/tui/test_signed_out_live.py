"""The operator replaces alice's token (`cfm admin reset-token` on the running server)
while her cfm chat is open at 80x24: the server closes her session with 4003. The
window says she is signed out, why and what to do, and no longer shows her Online; the
next start says her token is refused, with the same hint; --token-file with the new
token signs her in."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.widgets import Label, Static
from typer.testing import CliRunner

from cfm_cli.main import app as cli
from cfm_common.tokens import default_token_file
from cfm_tui.screens.signin import SignInScreen
from tests.tui.helpers import make_app, plain, wait_until

SIZE = (80, 24)


def admin(*args: str) -> Any:
    return CliRunner().invoke(cli, ["admin", *args])


async def test_a_token_reset_signs_out_says_why_and_the_next_start_what_to_do(
        server_factory, tmp_path, monkeypatch):
    for key in ("CFM_SERVER", "CFM_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    server = await server_factory(data_dir=tmp_path / "d")
    new_token = tmp_path / "from-the-operator" / "alice.token"
    app = make_app(tmp_path, server.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        header = app.main.query_one("#me-name", Label)
        assert "(Online)" in plain(header)
        # On a thread: the server's loop (this test's) answers the control socket.
        result = await asyncio.to_thread(admin, "reset-token", "alice", "--data-dir",
                                         str(server.data_dir), "--token-file",
                                         str(new_token))
        assert result.exit_code == 0, result.output
        bar = app.main.query_one("#connection", Static)
        await wait_until(pilot, lambda: "Signed out" in plain(bar), "signed out, said")
        said = " ".join(plain(bar).split())
        assert said.startswith("● Signed out by the server (token replaced by the "
                               "operator): the sign-in token this computer has for "
                               "'alice' no longer works."), said
        assert "cfm admin reset-token alice" in said and "--token-file" in said
        assert "Online" not in plain(header) and "(Offline)" in plain(header)
        # The whole text shows, above the footer, on the lines it needs.
        await wait_until(pilot, lambda: bar.region.height > 1, "the bar laid out")
        assert bar.region.bottom <= SIZE[1] - 1
        assert any("Signed out by the server" in n.message for n in app._notifications)
    # The next start, with the old token still in its file.
    app = make_app(tmp_path, server.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, SignInScreen), "sign-in")
        error = app.screen.query_one("#signin-error", Static)
        await wait_until(pilot, lambda: "token" in plain(error), "the refusal")
        text = " ".join(plain(error).split())
        assert str(default_token_file(server.url, "alice")) in text, text
        assert "the operator replaced its token" in text, text
        assert "cfm admin reset-token alice" in text and "--token-file" in text
        assert "belongs to someone else" not in text
        box = app.screen.query_one("#signin-box")
        await wait_until(pilot, lambda: box.region.y >= 0 and box.region.bottom <= 23,
                         f"laid out within 80x24 ({box.region})")
    app = make_app(tmp_path, server.url, "alice", token_file=new_token)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in with the new token")
