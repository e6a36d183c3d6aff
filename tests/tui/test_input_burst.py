"""Keys that come faster than the app handles them (a paste tool, a macro, key bounce,
a busy app): every draft is sent exactly once, in order, and nothing typed after Enter
is lost. Two real apps against a real server; the keys are queued back to back."""

from __future__ import annotations

from cfm_common import rules
from tests.tui.helpers import (
    active_view,
    alice_and_bob,
    burst,
    transcript_text,
    typing_text,
    wait_until,
)

DM = rules.dm_room("alice", "bob")


def texts(app, room: str = DM) -> list[str]:
    conv = app.state.conversations.get(room)
    return [m.text for m in conv.messages] if conv is not None else []


def keys_of(*drafts: str) -> list[str]:
    return [key for draft in drafts for key in (*draft, "enter")]


async def test_a_burst_sends_each_draft_once_in_order(server, tmp_path):
    async with alice_and_bob(tmp_path, server.url) as (alice, pa, bob, pb):
        await alice.open_dm("bob")
        await pa.pause()
        drafts = [f"burst A{n}" for n in range(1, 6)]
        burst(alice, *keys_of(*drafts), "x", "enter", "enter", *"draft")
        await wait_until(pb, lambda: "x" in texts(bob), "the burst at bob's")
        # Typed after the last Enter, in the same burst: still in the box, not sent.
        await wait_until(pa, lambda: active_view(alice).composer.text == "draft", "the draft")
        burst(alice, "enter")  # a barrier: anything sent twice would come before it
        await wait_until(pb, lambda: "draft" in texts(bob), "the barrier")
        assert texts(bob) == [*drafts, "x", "draft"]
        assert texts(alice) == [*drafts, "x", "draft"]


async def test_a_refused_draft_comes_back_before_what_was_typed_since(server, tmp_path):
    async with alice_and_bob(tmp_path, server.url) as (alice, pa, _bob, _pb):
        await alice.open_dm("bob")
        await pa.pause()
        composer = active_view(alice).composer
        burst(alice, *"/status sleepy", "enter", *"hello")
        await wait_until(pa, lambda: "Usage: /status" in transcript_text(alice, DM), "the refusal")
        await pa.pause()
        assert composer.text == "/status sleepy\nhello"


async def test_typing_into_the_buddy_list_then_enter_sends_it(server, tmp_path):
    async with alice_and_bob(tmp_path, server.url) as (alice, pa, bob, pb):
        await alice.open_dm("bob")
        await pa.pause()
        await pa.press("f2")  # to the buddy list; the conversation stays on screen
        await wait_until(pa, lambda: alice.focused is alice.main.query_one("#buddies"),
                         "the list focused")
        burst(alice, *keys_of("hi from the list"))
        await wait_until(pb, lambda: "hi from the list" in texts(bob), "the message at bob's")
        await pa.pause()
        assert active_view(alice).composer.text == ""
        assert alice.main.active_room == DM


async def watch_alice(bob, pb) -> None:
    """bob adds alice: her presence changes reach him (the barrier below)."""
    bob.contact("add", "alice")
    await wait_until(pb, lambda: "alice" in bob.state.contacts, "bob added alice")


async def barrier(alice, pb, bob, psm: str) -> None:
    """A presence change from alice's client itself: whatever alice's app sent before it
    (a typing signal) reached bob before it. (A message would end the typing itself.)"""
    await alice.session.client.set_presence(psm=psm)
    await wait_until(pb, lambda: bob.state.person("alice").psm == psm, "the barrier")


async def test_a_message_sent_in_a_burst_leaves_no_typing_behind(server, tmp_path):
    async with alice_and_bob(tmp_path, server.url) as (alice, pa, bob, pb):
        await alice.open_dm("bob")
        await pa.pause()
        await watch_alice(bob, pb)
        burst(alice, *keys_of("text and enter at once"))
        await wait_until(pb, lambda: "text and enter at once" in texts(bob), "the message")
        await barrier(alice, pb, bob, "barrier 1")
        assert typing_text(bob, DM).strip() == ""


async def test_a_slash_command_is_not_typing(server, tmp_path):
    async with alice_and_bob(tmp_path, server.url) as (alice, pa, bob, pb):
        await alice.open_dm("bob")
        await watch_alice(bob, pb)
        await alice.session.client.say("hello", to="bob")  # the DM exists: typing reaches bob
        await wait_until(pb, lambda: "hello" in texts(bob), "hello")
        await pa.press(*"/status busy")
        await barrier(alice, pb, bob, "barrier 1")
        assert typing_text(bob, DM).strip() == ""
        await pa.press("enter")
        await wait_until(pa, lambda: alice.state.status == "busy", "busy")
        await barrier(alice, pb, bob, "barrier 2")
        assert typing_text(bob, DM).strip() == ""


async def test_keys_typed_right_after_enter_in_the_buddy_list_go_to_that_conversation(
        server, tmp_path):
    async with alice_and_bob(tmp_path, server.url) as (alice, pa, bob, pb):
        alice.contact("add", "bob")
        await wait_until(pa, lambda: "bob" in alice.state.contacts, "bob is a contact")
        buddies = alice.main.query_one("#buddies")
        await pa.pause()
        buddies.highlighted = buddies.get_option_index("user:bob")
        assert alice.focused is buddies and not alice.main.is_open(DM)
        # Enter opens the DM; what follows in the same burst is its first message.
        burst(alice, "enter", *keys_of("hello straight away"))
        await wait_until(pb, lambda: "hello straight away" in texts(bob), "the message")
        await pa.pause()
        assert texts(bob) == ["hello straight away"]
        assert active_view(alice).composer.text == ""
