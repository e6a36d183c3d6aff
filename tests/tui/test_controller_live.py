"""The controller's requests against a real server (no Textual): each outcome's jobs are
run to the end (outcome.run_all), the way the app runs them as workers."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

from cfm_common import rules
from cfm_common.client import Client
from cfm_common.frames import Msg
from cfm_tui.config import ChatConfig
from cfm_tui.controller import ChatController
from cfm_tui.conversation import LineKind
from cfm_tui.outcome import run_all
from cfm_tui.session import ChatSession, SignIn
from cfm_tui.state import ChatState, NoticeKind

DM = rules.dm_room("alice", "bob")


async def next_msg(client: Client) -> Msg:
    async def scan() -> Msg:
        async for event in client:
            if isinstance(event, Msg):
                return event
        raise AssertionError("the client closed before a message came")

    return await asyncio.wait_for(scan(), 10)  # only so that a lost message fails


@asynccontextmanager
async def signed_in(url: str, name: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    session = ChatSession(url, SignIn(name), token_file=tmp_path / f"{name}.token")
    welcome = await session.connect()
    state = ChatState(welcome.name)
    state.on_welcome(welcome)
    try:
        yield ChatController(state, session, config=ChatConfig(),
                             config_path=tmp_path / f"{name}.json")
    finally:
        await session.close()


async def test_a_message_is_sent_confirmed_and_received(server, tmp_path):
    async with Client(server.url, "bob", token_file=False) as bob, \
            signed_in(server.url, "alice", tmp_path) as alice:
        out = await run_all(alice.submit_draft(DM, "hi bob"))
        assert out.ok and out.update.rooms == {DM}
        conv = alice.state.conversation(DM)
        assert not conv.pending and [m.text for m in conv.messages] == ["hi bob"]
        assert conv.messages[0].seq == 1  # the server's number: confirmed
        msg = await next_msg(bob)
        assert (msg.sender, msg.text) == ("alice", "hi bob")


async def test_joining_a_room_opens_it_with_its_members_and_history(server, tmp_path):
    async with Client(server.url, "bob", token_file=False) as bob:
        await bob.join("#games")
        for i in range(3):
            await bob.say(f"earlier {i}", room="#games")
        async with signed_in(server.url, "alice", tmp_path) as alice:
            out = await run_all(alice.submit_draft(DM, "/join #games"))
            assert out.update.opened == {"#games": True}
            conv = alice.state.conversations["#games"]
            assert conv.members == {"alice", "bob"}
            assert [m.text for m in conv.messages] == ["earlier 0", "earlier 1", "earlier 2"]
            out = await run_all(alice.submit_draft("#games", "/leave"))
            assert out.update.closed == {"#games"} and "#games" not in alice.state.conversations


async def test_contacts_say_what_happened(server, tmp_path):
    async with Client(server.url, "bob", token_file=False), \
            signed_in(server.url, "alice", tmp_path) as alice:
        out = await run_all(alice.submit_draft(DM, "/add bob"))
        assert "bob" in alice.state.contacts
        assert [(n.kind, n.text) for n in out.update.notices] == \
            [(NoticeKind.INFO, "bob was added to your contact list.")]
        out = await run_all(alice.contact("add", "nobody"))
        assert [(n.kind, n.text) for n in out.update.notices] == \
            [(NoticeKind.ERROR, "There is no user called 'nobody' on this server.")]


async def test_save_fetches_the_whole_conversation_first(server_factory, tmp_path):
    server = await server_factory(rate_limits=False)
    async with signed_in(server.url, "alice", tmp_path):
        pass  # the account, so that bob can write to it
    async with Client(server.url, "bob", token_file=False) as bob:
        for i in range(60):  # more than a page of history
            await bob.say(f"line {i}", to="alice")
    async with signed_in(server.url, "alice", tmp_path) as alice:
        assert alice.state.conversation(DM).messages == []  # only its latest seq is known
        file = tmp_path / "chat.txt"
        await run_all(alice.submit_draft(DM, f"/save {file}"))
        saved = file.read_text()
        assert "line 0" in saved and "line 59" in saved
        notes = [line.text for line in alice.state.conversation(DM).lines()
                 if line.kind is LineKind.NOTE]
        assert notes == [f"Saved this conversation (60 messages) to {file}."]
