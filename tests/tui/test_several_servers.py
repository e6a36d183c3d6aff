"""`cfm chat` given several servers (the nodes of one cluster): a dead one first is passed
over, the sign-in form takes commas, the list is remembered, and a node that dies moves
the window to the next one."""

from __future__ import annotations

import random

from textual.widgets import Input, Static

from cfm_common import rules
from cfm_tui.config import ChatConfig
from cfm_tui.screens.signin import SignInScreen
from tests.faults.proxy import CuttingProxy
from tests.ports import free_port
from tests.tui.helpers import SIZE, make_app, plain, send_text, transcript_text, wait_until

DM = rules.dm_room("alice", "bob")


def dead_url() -> str:
    return f"ws://127.0.0.1:{free_port()}/ws"


async def test_dead_then_live_signs_in_and_is_remembered(server, tmp_path):
    dead = dead_url()
    app = make_app(tmp_path, f"{dead},{server.url}", "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        bar = app.main.query_one("#connection", Static)
        await wait_until(pilot, lambda: "Connected" in plain(bar), "connected")
        assert server.url in plain(bar) and dead not in plain(bar)  # the node it is on
        assert app.session is not None and app.session.client.url == server.url
    saved, _ = ChatConfig.load(tmp_path / "alice" / "chat.json")
    assert saved.server == f"{dead},{server.url}"  # both, in order, for the next start


async def test_the_sign_in_server_field_takes_commas(server, tmp_path):
    dead_port, live_port = free_port(), server.port
    app = make_app(tmp_path, None, None)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, SignInScreen)
        error = screen.query_one("#signin-error", Static)
        server_field = screen.query_one("#signin-server", Input)
        screen.query_one("#signin-name", Input).value = "alice"
        server_field.value = f"127.0.0.1:{dead_port},,127.0.0.1:{live_port}"
        screen.submit()
        await wait_until(pilot, lambda: "empty server" in plain(error), "an empty item")
        assert app.focused is server_field
        server_field.value = f"127.0.0.1:{dead_port}, 127.0.0.1:{free_port()}"
        screen.submit()
        await wait_until(pilot, lambda: plain(error).count("Nothing answers at") == 2,
                         "why each failed")
        server_field.value = f"127.0.0.1:{dead_port}, 127.0.0.1:{live_port}"
        screen.submit()
        await wait_until(pilot, lambda: app.main is not None, "signed in")
    saved, _ = ChatConfig.load(tmp_path / "anon" / "chat.json")
    assert saved.server == f"ws://127.0.0.1:{dead_port}/ws,ws://127.0.0.1:{live_port}/ws"


async def test_a_killed_node_moves_the_window_to_the_next(server, tmp_path):
    node = CuttingProxy("127.0.0.1", server.port, random.Random(1))
    node.cutting = False  # a healthy node in front of the server, until it is killed
    await node.start()
    alice = make_app(tmp_path, f"{node.url()},{server.url}", "alice")
    bob = make_app(tmp_path, server.url, "bob")
    async with alice.run_test(size=SIZE) as pa, bob.run_test(size=SIZE) as pb:
        await wait_until(pa, lambda: alice.main is not None, "alice signed in")
        await wait_until(pb, lambda: bob.main is not None, "bob signed in")
        bar = alice.main.query_one("#connection", Static)
        await wait_until(pa, lambda: node.url() in plain(bar), "on the first node")
        await alice.open_dm("bob")
        send_text(alice, DM, "before")
        await wait_until(pb, lambda: "before" in transcript_text(bob, DM), "first message")

        await node.close()
        await wait_until(pa, lambda: "Connected" in plain(bar) and server.url in plain(bar),
                         "on the next node")
        send_text(alice, DM, "after")
        await wait_until(pb, lambda: "after" in transcript_text(bob, DM), "second message")
        assert [m.seq for m in bob.state.conversations[DM].messages] == [1, 2]
