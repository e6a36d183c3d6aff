"""Signing in with a name that passes for one of the server's AI contacts: the sign-in
box says so in words, with the focus on the field to fix."""

from __future__ import annotations

from textual.widgets import Input, Static

from cfm_tui.screens.signin import SignInScreen
from tests.tui.helpers import SIZE, make_app, plain, wait_until


async def test_lookalike_display_and_handle_are_explained(server_factory, tmp_path):
    server = await server_factory(ai_enabled=True)
    app = make_app(tmp_path, None, None)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, SignInScreen)
        screen.query_one("#signin-server", Input).value = server.url
        screen.query_one("#signin-name", Input).value = "mallory"
        screen.query_one("#signin-display", Input).value = "SmartyBot"
        screen.submit()
        error = screen.query_one("#signin-error", Static)
        await wait_until(pilot, lambda: "passes for" in plain(error), "the display error")
        assert "smartybot" in plain(error)
        assert app.focused is screen.query_one("#signin-display", Input)

        screen.query_one("#signin-display", Input).value = "Mallory"
        screen.query_one("#signin-name", Input).value = "smarty_b0t"
        screen.submit()
        await wait_until(pilot, lambda: "looks too much like" in plain(error),
                         "the handle error")
        assert "pick another one" in plain(error)
