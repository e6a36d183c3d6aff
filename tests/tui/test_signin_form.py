"""The sign-in form: input it cannot use is refused with the reason, never cut; the
focus starts where the next key belongs."""

from __future__ import annotations

from textual.widgets import Button, Input, Static

from cfm_tui.config import ChatConfig
from cfm_tui.screens.signin import SignInScreen
from tests.tui.helpers import SIZE, make_app, plain, wait_until

LONG_HANDLE = "a" * 27


async def test_an_over_long_handle_is_refused_with_the_limit(tmp_path):
    app = make_app(tmp_path, None, None)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, SignInScreen)
        await pilot.press(*LONG_HANDLE)
        field = app.screen.query_one("#signin-name", Input)
        assert field.value == LONG_HANDLE  # all of it: nothing cut silently
        await pilot.press("enter")
        error = plain(app.screen.query_one("#signin-error", Static))
        assert "27 characters" in error and "the limit is 24" in error
        assert app.focused is field
        assert isinstance(app.screen, SignInScreen)


async def test_an_over_long_display_name_is_refused_with_the_limit(tmp_path):
    app = make_app(tmp_path, None, None)
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#signin-name", Input).value = "alice"
        display = app.screen.query_one("#signin-display", Input)
        display.value = "A" * 70
        app.screen.submit()
        await pilot.pause()
        assert "at most 64 characters" in plain(app.screen.query_one("#signin-error", Static))
        assert app.focused is display and display.value == "A" * 70


async def test_a_remembered_handle_puts_the_focus_on_sign_in(tmp_path):
    app = make_app(tmp_path, None, None, config=ChatConfig(name="alice", display="Alice",
                                                             idle_minutes=0))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, SignInScreen), "sign-in")
        await pilot.pause()
        assert app.focused is app.screen.query_one("#signin-button", Button)
    fresh = make_app(tmp_path, None, None)
    async with fresh.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert fresh.focused is fresh.screen.query_one("#signin-name", Input)


async def test_the_sign_in_box_fits_60x20(tmp_path):
    app = make_app(tmp_path, None, None)
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        box = app.screen.query_one("#signin-box")
        footer_top = 19
        assert box.region.x >= 0 and box.region.right <= 60
        assert box.region.y >= 0 and box.region.bottom <= footer_top, box.region
        app.screen.show_error("That handle is taken on this server.", "name")
        await pilot.pause()
        assert box.region.bottom <= footer_top, box.region



async def fits(tmp_path, size: tuple[int, int], text: str) -> None:
    """``text`` as the sign-in error at ``size``: the whole box on screen, above the
    footer, nothing to scroll."""
    app = make_app(tmp_path, None, None)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        screen = app.screen
        box, footer_top = screen.query_one("#signin-box"), size[1] - 1
        error = screen.query_one("#signin-error", Static)
        screen.show_error(text, "name")
        # Laid out: the error on its lines (the long-error layout comes with them).
        await wait_until(pilot, lambda: error.region.height >= 5, "the error laid out")
        await pilot.pause()
        assert box.region.y >= 0 and box.region.bottom <= footer_top, (size, box.region)
        assert screen.max_scroll_y == 0


async def test_the_token_errors_fit_the_box_at_80x24_and_60x20(tmp_path):
    """The longest errors the sign-in gives, with a token path as long as a server's
    usually makes."""
    from pathlib import Path

    from cfm_tui.session import bad_token_text, name_taken_text

    token = Path.home() / ".local/share/cfm/tokens/chat.example.org_1863_ws/alice.token"
    for size in ((80, 24), (60, 20)):
        for text in (bad_token_text("alice", token), name_taken_text("alice", token)):
            await fits(tmp_path, size, text)
