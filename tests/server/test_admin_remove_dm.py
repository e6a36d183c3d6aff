"""What a removed account's DM partner and the user it had added (a request not yet
answered) see, in both modes (docs/protocol.md, "A removed account"). Here a single
node's ``remove-user`` runs while it is stopped, so there they learn it right after the
next ``welcome`` (tests/server/test_admin_remove_notices.py has the running server) and
from the answers to what they try; a cluster's nodes tell them at once (the
exactly-once check is tests/cluster/test_admin_remove_notice.py's)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cfm_cli.main import app
from cfm_common.client import Client
from cfm_common.frames import Contact, Member
from cfm_tui.config import ChatConfig
from cfm_tui.controller import ChatController
from cfm_tui.outcome import run_all
from cfm_tui.session import ChatSession, SignIn
from tests.modes import nodes_of
from tests.wire import WireClient

pytestmark = pytest.mark.both_modes

DM = "dm:alice:bob"


async def signed_in(url: str, name: str, token: str | None = None) -> WireClient:
    client = await WireClient.open(url)
    assert (await client.hello(name, token))["t"] == "welcome"
    return client


async def remove_alice(server_factory: Any, server: Any, server_mode: str) -> Any:
    """Remove alice as the operator does in each mode; the server to talk to after."""
    if server_mode == "cluster":
        from cfm_server.cluster import admin

        await admin.remove_user(nodes_of(server)[0].config.redis_url, "alice",
                                int(time.time() * 1000))
        return server
    await server.stop(close_code=1001)
    result = CliRunner().invoke(app, ["admin", "remove-user", "alice", "--data-dir",
                                      str(server.config.data_dir), "--yes"])
    assert result.exit_code == 0, result.output
    return await server_factory(data_dir=server.config.data_dir)


async def test_the_dm_partner_and_the_asked_user_learn_the_account_is_gone(
        server_factory: Any, server_mode: str) -> None:
    server = await server_factory()
    alice = await signed_in(server.url, "alice")
    bob = await signed_in(server.url, "bob")
    carol = await signed_in(server.url, "carol")
    clients = [alice, bob, carol]
    try:
        await alice.send({"t": "say", "to": "bob", "text": "hi", "id": "a1"})
        await alice.recv_until("ack")
        await bob.recv_until("msg", room=DM)
        await alice.send({"t": "contact", "op": "add", "name": "carol", "id": "c"})
        await alice.recv_until("contact", ref="c")
        await carol.recv_until("contact", op="added_you", name="alice")

        server = await remove_alice(server_factory, server, server_mode)

        if server_mode == "cluster":  # told live, the sessions stay
            assert await alice.wait_closed() == 4003
            await bob.recv_until("member", room=DM, name="alice", op="leave")
            await carol.recv_until("contact", op="remove", name="alice", status="offline")
        else:  # the restart closed every session: the next welcome tells
            bob = await signed_in(server.url, "bob", bob.token)
            carol = await signed_in(server.url, "carol", carol.token)
            clients += [bob, carol]
            welcome = bob.seen[-1]
            assert DM not in {r["room"] for r in welcome["rooms"]}, welcome

        for ref, frame in (("b1", {"t": "say", "room": DM, "text": "still there?"}),
                           ("b2", {"t": "say", "to": "alice", "text": "hello?"}),
                           ("b3", {"t": "nudge", "to": "alice"})):
            await bob.send({**frame, "id": ref})
            refused = await bob.recv_until("error", ref=ref)
            assert refused["code"] == "no_such_user", refused
        await bob.send({"t": "history", "room": DM, "id": "h"})
        assert (await bob.recv_until("error", ref="h"))["code"] == "no_such_room"
        await carol.send({"t": "contact", "op": "add", "name": "alice", "id": "accept"})
        refused = await carol.recv_until("error", ref="accept")
        assert refused["code"] == "no_such_user", refused
    finally:
        for client in clients:
            await client.close()



async def chat(url: str, name: str, tmp_path: Path) -> ChatController:
    """``cfm chat``'s controller, signed in as ``name`` (its token kept in tmp_path)."""
    session = ChatSession(url, SignIn(name), token_file=tmp_path / f"{name}.token")
    return ChatController.signed_in(await session.connect(), session, config=ChatConfig(),
                                    config_path=tmp_path / f"{name}.json")


async def fed_until(controller: ChatController, done: Callable[[Any], bool]) -> None:
    """The SDK's events into the controller, as the app hands them, until ``done``."""
    assert controller.session is not None
    client: Client = controller.session.client

    async def scan() -> None:
        async for event in client:
            controller.on_event(event)
            if done(event):
                return
        raise AssertionError("the client closed before the event came")

    await asyncio.wait_for(scan(), 10)  # only so that a lost frame fails


async def test_cfm_chat_stops_offering_the_dm_and_withdraws_the_request(
        server_factory: Any, server_mode: str, tmp_path: Path) -> None:
    """What a person sees: bob's DM with alice says once that her account is gone and
    sends nothing more (no message, typing or nudge goes out); carol's "alice has added
    you" goes — at once on a cluster, on a single node when she answers it."""
    server = await server_factory()
    alice = await signed_in(server.url, "alice")
    bob = await chat(server.url, "bob", tmp_path)
    assert bob.session is not None
    await bob.session.close()
    await alice.send({"t": "say", "to": "bob", "text": "hi bob", "id": "a1"})
    await alice.recv_until("ack")
    bob = await chat(server.url, "bob", tmp_path)  # the DM is in this welcome
    carol = await chat(server.url, "carol", tmp_path)
    try:
        await alice.send({"t": "contact", "op": "add", "name": "carol", "id": "c"})
        await alice.recv_until("contact", ref="c")
        await fed_until(carol, lambda e: isinstance(e, Contact) and e.op == "added_you")
        assert carol.state.added_you == ["alice"]
        assert bob.state.conversation(DM).epoch is not None

        server = await remove_alice(server_factory, server, server_mode)

        if server_mode == "cluster":
            await fed_until(bob, lambda e: isinstance(e, Member) and e.room == DM)
            await fed_until(carol, lambda e: isinstance(e, Contact) and e.op == "remove")
            assert carol.state.added_you == []
        else:  # each signs in again (the app does it on its own): the new welcome
            for controller in (bob, carol):
                assert controller.session is not None
                await controller.session.close()
                name = controller.state.me
                controller.session = ChatSession(server.url, SignIn(name),
                                                 token_file=tmp_path / f"{name}.token")
                controller.state.on_welcome(await controller.session.connect())
            # Told right after the welcome (the server kept it: domain/notices.py).
            await fed_until(bob, lambda e: isinstance(e, Member) and e.room == DM)
            await fed_until(carol, lambda e: isinstance(e, Contact) and e.op == "remove")
            assert carol.state.added_you == []

        conv = bob.state.conversation(DM)
        assert "alice" in bob.state.gone and not bob.state.people["alice"].online
        notes = [line.text for line in conv.lines() if "no longer has an account" in line.text]
        assert len(notes) == 1, [line.text for line in conv.lines()]
        sent = bob.submit_draft(DM, "still there?")
        assert not sent.ok and not sent.jobs and not conv.pending
        assert not bob.typed(DM).jobs and not bob.send_nudge(DM).jobs
        # Writing to her by name again (someone may hold the handle now) is up to the
        # server, which answers no_such_user: said in the DM, not twice.
        bob.open_dm("alice")
        assert "alice" not in bob.state.gone
        await run_all(bob.submit_draft(DM, "anyone?"))
        assert "alice" in bob.state.gone
        assert any("no user called 'alice'" in line.text for line in conv.lines())
        assert bob.state.conversations[DM] is conv  # kept to read, not closed
    finally:
        await alice.close()
        for controller in (bob, carol):
            if controller.session is not None:
                await controller.session.close()
