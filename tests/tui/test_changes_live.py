"""Message changes against a real server (no Textual), the controller's jobs run to the
end: mentions and the welcome's unread counts, replies and their quoted line, edits,
deletes and reactions sent and received.

Edits, deletes, reactions and replies need the SDK's ``Client.edit/delete/react/
unreact`` and ``say(reply=…)``: until the SDK has them those tests are skipped.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest

from cfm_common.client import Client
from cfm_common.frames import Msg
from cfm_tui.conversation import LineKind
from cfm_tui.outcome import run_all
from cfm_tui.palette import Intent
from cfm_tui.state import NoticeKind
from tests.tui.test_controller_live import signed_in

ROOM = "#games"
SDK_HAS_CHANGES = hasattr(Client, "edit") and "reply" in inspect.signature(Client.say).parameters
needs_sdk = pytest.mark.skipif(not SDK_HAS_CHANGES,
                               reason="the SDK has no Client.edit/say(reply=) yet")


async def events_until(controller, condition, what: str) -> None:
    """Feed the client's events to the controller until ``condition()`` holds."""
    async def pump() -> None:
        async for event in controller.session.client:
            await run_all(controller.on_event(event))
            if condition():
                return
        raise AssertionError(f"the client closed before {what}")

    if not condition():
        await asyncio.wait_for(pump(), 10)  # only so that a lost event fails


async def test_mentions_are_noticed_and_the_welcome_counts_unread_and_mentions(server,
                                                                             tmp_path):
    async with Client(server.url, "bob", token_file=False) as bob:
        await bob.join(ROOM)
        async with signed_in(server.url, "alice", tmp_path) as alice:
            await run_all(alice.join_room(ROOM))
            ack = await bob.say("@alice over here", room=ROOM)
            notices = []

            async def pump() -> None:
                async for event in alice.session.client:
                    out = await run_all(alice.on_event(event))
                    notices.extend(out.update.notices)
                    if isinstance(event, Msg) and event.seq == ack.seq:
                        return

            await asyncio.wait_for(pump(), 10)
            assert [(n.kind, n.text) for n in notices] == \
                [(NoticeKind.MENTION, "@alice over here")]
            conv = alice.state.conversations[ROOM]
            assert next(line for line in conv.lines() if line.seq == ack.seq).mentions_me
            assert conv.unread_mentions() == 1
        for text in ("@alice again", "nothing for alice", "@bob not you"):
            await bob.say(text, room=ROOM)
        async with signed_in(server.url, "alice", tmp_path) as alice:
            conv = alice.state.conversations[ROOM]
            assert conv.messages == []  # nothing loaded: the welcome's counts say it
            assert (conv.unread(), conv.unread_mentions()) == (4, 2)


@needs_sdk
async def test_a_reply_quotes_the_line_it_answers_fetching_it_when_not_held(server,
                                                                           tmp_path):
    async with Client(server.url, "bob", token_file=False) as bob:
        await bob.join(ROOM)
        first = await bob.say("lunch at noon?", room=ROOM)
        async with signed_in(server.url, "alice", tmp_path) as alice:
            await run_all(alice.join_room(ROOM))
            conv = alice.state.conversations[ROOM]
            conv.messages.clear()  # as if paged out: the quote must be fetched
            conv._seqs.clear()
            answer = await bob.say("or one?", room=ROOM, reply=first.seq)
            await events_until(alice, lambda: answer.seq in conv._seqs, "the answer")
            await run_all(alice.messages.fetch_quotes(ROOM))
            line = next(line for line in conv.lines() if line.seq == answer.seq)
            assert line.reply == first.seq and line.quote is not None
            assert line.quote.text == "lunch at noon?"
            out = await run_all(alice.submit_draft(ROOM, "noon is fine", reply=answer.seq))
            assert out.ok
            mine = next(m for m in conv.messages if m.text == "noon is fine")
            assert mine.reply == answer.seq


@needs_sdk
async def test_edit_delete_and_react_reach_the_other_side_in_place(server, tmp_path):
    async with Client(server.url, "bob", token_file=False) as bob:
        await bob.join(ROOM)
        async with signed_in(server.url, "alice", tmp_path) as alice:
            await run_all(alice.join_room(ROOM))
            await run_all(alice.submit_draft(ROOM, "helo"))
            conv = alice.state.conversations[ROOM]
            seq = conv.messages[-1].seq
            await run_all(alice.submit_draft(ROOM, "hello", edit=seq))
            await run_all(alice.run_intent(Intent("react", ROOM, seq, "👍")))
            assert conv.message(seq).text == "hello" and conv.message(seq).edited
            assert [(r.emoji, r.names) for r in conv.message(seq).reactions] == \
                [("👍", ("alice",))]
            await run_all(alice.run_intent(Intent("react", ROOM, seq, "👍")))  # takes it off
            assert not conv.message(seq).reactions
            page = await bob.history(ROOM)
            stored = next(m for m in page.msgs if m.seq == seq)
            assert (stored.text, stored.reactions) == ("hello", None)
            # Not alice's to edit: a line says so, nothing changes.
            other = await bob.say("mine", room=ROOM)
            await events_until(alice, lambda: conv.message(other.seq) is not None, "bob's")
            await run_all(alice.submit_draft(ROOM, "yours now", edit=other.seq))
            notes = [line.text for line in conv.lines() if line.kind is LineKind.NOTE]
            assert notes[-1] == "You can only edit your own messages."
            await run_all(alice.run_intent(Intent("delete", ROOM, seq)))
            assert conv.message(seq).deleted
            page = await bob.history(ROOM)
            assert next(m for m in page.msgs if m.seq == seq).deleted


async def test_search_lists_the_hits_from_the_server(server, tmp_path):
    async with Client(server.url, "bob", token_file=False) as bob:
        await bob.join(ROOM)
        await bob.say("we can all go to the lake", room=ROOM)
        async with signed_in(server.url, "alice", tmp_path) as alice:
            await run_all(alice.join_room(ROOM))
            await run_all(alice.submit_draft(ROOM, "/search lake"))
            results = alice.search.results
            assert results.text == "lake" and not results.busy
            assert results.error is None
            assert [(m.room, m.text) for m in results.hits] == \
                [(ROOM, "we can all go to the lake")]
