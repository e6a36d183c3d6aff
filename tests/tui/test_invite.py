"""Signing up on a server that takes new users by invite (`cfm serve --registration invite`)."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static

from cfm_common.client import ClientError
from cfm_server.invites import load_key, make_code
from cfm_tui.config import ChatConfig
from cfm_tui.screens.main import MainScreen
from cfm_tui.screens.signin import SignInScreen
from cfm_tui.session import MAX_REFUSAL, sign_in_refusal
from tests.tui.helpers import SIZE, make_app, plain, wait_until


@pytest.mark.parametrize(("msg", "text", "field"), [
    ("that invite code has expired; ask for a new one",
     "That invite code has expired; ask for a new one", "invite"),
    ("this server takes no new users; ask its operator for an account",
     "This server takes no new users; ask its operator for an account", None),
    ("", "This server does not take new users.", None),
    ("\x1b]0;pwned\x07no \u202einvite\n", "]0;pwnedno invite", "invite"),
])
def test_a_refusal_is_the_servers_reason_cleaned(msg, text, field):
    assert sign_in_refusal(ClientError("forbidden", msg)) == (text, field)


def test_a_long_refusal_is_cut_to_fit_the_box():
    text, _ = sign_in_refusal(ClientError("forbidden", "x" * 1000))
    assert len(text) == MAX_REFUSAL and text.endswith("…")


@pytest.fixture
async def invite_server(server_factory):
    return await server_factory(registration="invite")


def code_for(server, *, uses: int = 1) -> str:
    return make_code(load_key(server.config.data_dir, create=True), uses=uses)


async def test_sign_up_asks_for_an_invite_then_takes_one(invite_server, tmp_path):
    app = make_app(tmp_path, None, None)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, SignInScreen)
        invite = screen.query_one("#signin-invite", Input)
        assert not invite.display  # not asked for before the server does
        screen.query_one("#signin-name", Input).value = "alice"
        screen.query_one("#signin-server", Input).value = invite_server.url
        screen.submit()
        error = screen.query_one("#signin-error", Static)
        await wait_until(pilot, lambda: "invite code" in plain(error), "the server's reason")
        assert plain(error) == ("This server takes new users by invite: ask its operator "
                                "for an invite code")
        assert invite.display  # revealed, with the focus: the field to fix
        await wait_until(pilot, lambda: app.focused is invite, "the focus in the invite field")
        await pilot.press(*code_for(invite_server), "enter")
        await wait_until(pilot, lambda: app.main is not None, "the main window")
        assert isinstance(app.screen, MainScreen)
        assert app.state.me == "alice"
    saved = (tmp_path / "anon" / "chat.json").read_text()
    assert "invite" not in saved  # a code is for one sign-up
    assert ChatConfig.load(tmp_path / "anon" / "chat.json")[0].name == "alice"


async def test_a_used_up_code_is_refused_in_the_invite_field(invite_server, tmp_path):
    code = code_for(invite_server)
    first = make_app(tmp_path, invite_server.url, "alice", invite=code)  # --invite CODE
    async with first.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: first.main is not None, "alice signed up")
    second = make_app(tmp_path, invite_server.url, "bob", invite=code)
    async with second.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(second.screen, SignInScreen), "sign-in")
        screen = second.screen
        error = screen.query_one("#signin-error", Static)
        await wait_until(pilot, lambda: "used up" in plain(error), "the server's reason")
        invite = screen.query_one("#signin-invite", Input)
        assert invite.display and invite.value == code  # prefilled from --invite
        await wait_until(pilot, lambda: second.focused is invite, "the focus on the code")
        # A fresh code fixes it.
        invite.value = code_for(invite_server)
        screen.submit()
        # The main window fully built (not only pushed) before the test ends.
        await wait_until(pilot, lambda: second.main is not None, "bob signed up")
        assert isinstance(second.screen, MainScreen) and second.state.me == "bob"


async def test_an_invite_field_fits_80x24_with_a_long_error(invite_server, tmp_path):
    app = make_app(tmp_path, None, None, invite="3f9a1c2e-0-1-9b7c2e4f1a0d3c5b6e7f")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, SignInScreen)
        invite = screen.query_one("#signin-invite", Input)
        assert invite.display and invite.value.startswith("3f9a1c2e")
        screen.query_one("#signin-name", Input).value = "alice"
        screen.query_one("#signin-server", Input).value = invite_server.url
        screen.submit()
        error = screen.query_one("#signin-error", Static)
        await wait_until(pilot, lambda: "not from this server" in plain(error), "a bad code")
        await wait_until(pilot, lambda: app.focused is invite, "the focus on the code")
        box = screen.query_one("#signin-box")
        screen.show_error("a four-line error, longer than any the server gives: the handle "
                          "'someone-long' belongs to someone else here; this computer has "
                          "no matching sign-in token for it.")
        await wait_until(pilot, lambda: error.region.height == 4, "laid out")
        await wait_until(pilot, lambda: invite.region.height == 1, "the invite field laid out")
        assert box.region.bottom <= 24 - 1, box.region  # above the footer
        assert box.region.y >= 0 and screen.max_scroll_y == 0


async def test_a_closed_server_says_so_without_an_invite_field(server_factory, tmp_path):
    closed = await server_factory(registration="closed")
    app = make_app(tmp_path, closed.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, SignInScreen), "sign-in")
        error = app.screen.query_one("#signin-error", Static)
        await wait_until(pilot, lambda: "no new users" in plain(error), "the server's reason")
        assert plain(error).startswith("This server takes no new users")
        assert not app.screen.query_one("#signin-invite", Input).display


async def test_an_operator_made_account_without_its_token_says_what_to_do(server, tmp_path):
    """gina's account comes with a token file from the operator (`cfm admin add-user`:
    here the file is made by claiming the handle with it); signing in without it says
    where the token is looked for, and --token-file signs her in with that file."""
    from pathlib import Path

    from cfm_common.client import Client
    from cfm_common.tokens import default_token_file, read_token

    operator_file = tmp_path / "from-the-operator" / "gina.token"
    async with Client(server.url, "gina", token_file=operator_file):
        pass
    app = make_app(tmp_path, server.url, "gina")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, SignInScreen), "sign-in")
        screen = app.screen
        error = screen.query_one("#signin-error", Static)
        await wait_until(pilot, lambda: "token" in plain(error), "the error")
        text = " ".join(plain(error).split())
        assert "Pick another" not in text
        assert "If it is yours, its token is missing" in text
        path = str(default_token_file(server.url, "gina"))
        assert path.replace(str(Path.home()), "~", 1) in text.replace(" ", "") or \
            path in text.replace(" ", ""), text
        assert "cfm admin reset-token gina" in text and "--token-file" in text
        assert app.focused is screen.query_one("#signin-name", Input)
        box = screen.query_one("#signin-box")
        # The long-error layout is applied on a later refresh than the text.
        await wait_until(pilot, lambda: error.region.height >= 4 and box.region.y >= 0
                         and box.region.bottom <= 24 - 1, f"laid out within 80x24 ({box})")
        assert box.region.bottom <= 24 - 1 and box.region.y >= 0, box.region
    app = make_app(tmp_path, server.url, "gina", token_file=operator_file)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in with the file")
    saved = (tmp_path / "gina" / "chat.json").read_text()
    assert '"name": "gina"' in saved and "token" not in saved  # the file is not remembered
    assert read_token(operator_file)  # still there (refreshed) for next time
