"""Look-alike names (issue 10, item 8): no invisible characters in display names or
personal messages, and no new handle that passes for a reserved name or a server bot."""

from __future__ import annotations

import pytest

from tests.wire import WireClient, signed_in

pytestmark = pytest.mark.both_modes  # one node, and two over Redis (tests/modes.py)

PERSONA = "smartybot"


@pytest.mark.parametrize("display", [
    "Alice Liddell\u200b", "Alice\u3164Liddell", "\u2800", "Alice\u2060", "Al\ufeffice",
    "Alice\U000e0020", "Alice\u2028", "   ",
])
async def test_invisible_characters_in_a_display_name_are_refused(server, display) -> None:
    async with WireClient.connect(server.url) as mallory:
        reply = await mallory.hello("mallory", display=display)
        assert reply["t"] == "error" and reply["code"] == "bad_frame", reply
        assert reply["ref"] == "hello"
        # The connection stays open: a clean name signs in.
        assert (await mallory.hello("mallory", display="Mallory"))["t"] == "welcome"
        await mallory.send({"t": "presence", "display": display})
        assert (await mallory.recv_until("error"))["code"] == "bad_frame"
        if display.strip():  # a blank psm is fine; a hidden character is not
            await mallory.send({"t": "presence", "psm": f"hi{display}"})
            assert (await mallory.recv_until("error"))["code"] == "bad_frame"


async def test_emoji_sequences_and_rtl_marks_are_fine(server) -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    async with signed_in(server.url, "bob", display=f"Bob {family}",
                         psm="\u05e9\u05dc\u05d5\u05dd\u200f!") as bob:
        assert bob.welcome["display"] == f"Bob {family}"


@pytest.mark.parametrize("handle", ["adm1n", "Admin", "sys.tem", "r00t", "ADMINlSTRATOR"])
async def test_handles_that_pass_for_a_reserved_name_are_taken(server, handle) -> None:
    async with WireClient.connect(server.url) as mallory:
        reply = await mallory.hello(handle)
        assert reply["code"] == "name_taken", reply
        assert await mallory.wait_closed() == 4002


@pytest.mark.parametrize("handle", ["smartyb0t", "smarty_bot", "Smarty.Bot", "clippo.",
                                    "cl1ppo", "sk8r-jay"])
async def test_handles_that_pass_for_a_server_bot_are_taken(server_factory, handle) -> None:
    server = await server_factory(ai_enabled=True)
    async with WireClient.connect(server.url) as mallory:
        reply = await mallory.hello(handle, display="SmartyBot", bot=True)
        assert reply["code"] == "name_taken", reply
        assert "looks too much like" in reply["msg"]


async def test_existing_and_unrelated_handles_still_sign_in(server) -> None:
    provisioned = server.hub.provision_bot("helperbot", "Helper", "", "online")
    await provisioned.commit  # (the token is good once stored)
    token = provisioned.token
    async with signed_in(server.url, "helperbot", token=token):
        pass
    async with signed_in(server.url, "helpers"), signed_in(server.url, "adminton"):
        pass


@pytest.mark.parametrize("display", ["SmartyBot", "smarty bot", "Smarty_B0t", "\u0405martyBot",
                                     "Clippo", "Admin"])
async def test_nobody_else_may_show_up_as_a_server_bot(server_factory, display) -> None:
    server = await server_factory(ai_enabled=True)
    async with WireClient.connect(server.url) as mallory:
        reply = await mallory.hello("mallory", display=display, bot=True)
        assert reply["code"] == "forbidden" and "passes for" in reply["msg"], reply
        assert (await mallory.hello("mallory", display="Mallory", bot=True))["t"] == "welcome"
        await mallory.send({"t": "presence", "display": display})
        assert (await mallory.recv_until("error"))["code"] == "forbidden"
    # The bots themselves keep their names (they signed in with them at start-up).
    persona = server.hub.users["smartybot"].record
    assert persona.display == "SmartyBot" and server.hub.users["smartybot"].sessions


@pytest.mark.single_node("writes the SQLite file")
async def test_names_stored_before_lose_their_invisible_characters(server_factory,
                                                                   tmp_path) -> None:
    import sqlite3

    from cfm_server.server import DB_FILE

    data_dir = tmp_path / "kept"
    first = await server_factory(data_dir=data_dir)
    async with signed_in(first.url, "mallory") as mallory:
        token = mallory.token
    await first.stop(close_code=1001)
    with sqlite3.connect(data_dir / DB_FILE) as db:  # as an older server let it in
        db.execute("UPDATE users SET display = ?, psm = ? WHERE name = 'mallory'",
                   ("Alice\u200b Liddell", "\u3164"))
    second = await server_factory(data_dir=data_dir)
    async with signed_in(second.url, "mallory", token=token) as mallory:
        assert (mallory.welcome["display"], mallory.welcome["psm"]) == ("Alice Liddell", "")
