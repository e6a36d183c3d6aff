"""Slash commands and "Seen", typed into real apps against a real in-process server."""

from __future__ import annotations

import re

from cfm_common import rules
from cfm_common.client import ConnectionState, StateChanged
from cfm_tui.widgets.buddy_list import BuddyList
from tests.tui.helpers import (
    SIZE,
    active_view,
    alice_and_bob,
    make_app,
    transcript_text,
    wait_until,
)

DM = rules.dm_room("alice", "bob")



async def type_line(pilot, text: str) -> None:
    await pilot.press(*text, "enter")


async def test_status_psm_me_and_nudge_reach_the_other_side(server, tmp_path):
    async with alice_and_bob(tmp_path, server.url) as (alice, pa, bob, pb):
        bob.contact("add", "alice")
        await wait_until(pb, lambda: bob.state.person("alice").status == "online", "alice seen")
        await alice.open_dm("bob")
        await pa.pause()
        composer = active_view(alice).composer

        await type_line(pa, "/status busy")
        await wait_until(pb, lambda: bob.state.person("alice").status == "busy", "busy at bob")
        assert alice.state.status == "busy" and composer.text == ""
        await type_line(pa, "/status Be-Right-Back")  # the label works too
        await wait_until(pb, lambda: bob.state.person("alice").status == "brb", "brb at bob")

        await type_line(pa, "/psm exams (B)")
        await wait_until(pb, lambda: bob.state.person("alice").psm == "exams (B)", "psm at bob")
        await type_line(pa, "/psm")
        await wait_until(pb, lambda: bob.state.person("alice").psm == "", "psm cleared")

        # An unknown command is a local line, stays in the composer, and is never sent.
        await type_line(pa, "/foo bar")
        await wait_until(pa, lambda: "unknown command /foo — /help lists them"
                         in transcript_text(alice, DM), "the unknown-command line")
        assert composer.text == "/foo bar"
        composer.clear()
        await type_line(pa, "/help")
        await wait_until(pa, lambda: "/status" in transcript_text(alice, DM), "the help line")
        assert "/join #room" in transcript_text(alice, DM)

        await type_line(pa, "/me waves")
        await wait_until(pb, lambda: "* alice waves" in transcript_text(bob, DM), "/me at bob")
        await type_line(pa, "//help is a literal")
        await wait_until(pb, lambda: "/help is a literal" in transcript_text(bob, DM),
                         "the // escape")
        await type_line(pa, "/nudge")
        await wait_until(pb, lambda: "just sent you a nudge!" in transcript_text(bob, DM),
                         "nudge at bob")
        # Everything alice sent before the nudge has arrived: the commands were not sent.
        said = [m.text for m in bob.state.conversations[DM].messages]
        assert said == ["* alice waves", "/help is a literal", ""]
        assert bob.main.shakes == 1


async def test_room_and_contact_commands(server, tmp_path):
    from cfm_common.client import Client

    async with Client(server.url, "carol", token_file=False):
        pass  # carol exists: she can be added and blocked
    app = make_app(tmp_path, server.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        await app.open_dm("bob")
        await pilot.pause()

        await type_line(pilot, "/join #Games")
        await wait_until(pilot, lambda: app.main.active_room == "#games", "the #games tab")
        await wait_until(pilot, lambda: app.state.conversations["#games"].members == {"alice"},
                         "joined")
        await wait_until(pilot, lambda: app.focused is active_view(app).composer,
                         "typing in #games")
        await type_line(pilot, "/nudge")
        await wait_until(pilot, lambda: "Nudges are for one-to-one conversations."
                         in transcript_text(app, "#games"), "no nudge in a room")
        await type_line(pilot, "/leave")
        await wait_until(pilot, lambda: not app.main.is_open("#games"), "left #games")
        assert "#games" not in app.state.conversations
        await wait_until(pilot, lambda: app.main.active_room == DM, "back in the DM")
        await wait_until(pilot, lambda: app.focused is active_view(app).composer, "DM focus")
        await type_line(pilot, "/leave")
        await wait_until(pilot, lambda: "/leave is for group rooms"
                         in transcript_text(app, DM), "no leaving a DM")

        await type_line(pilot, "/add Carol")
        await wait_until(pilot, lambda: "carol" in app.state.contacts, "carol added")
        await type_line(pilot, "/block carol")
        await wait_until(pilot, lambda: "carol" in app.state.blocked, "carol blocked")
        await type_line(pilot, "/unblock carol")
        await wait_until(pilot, lambda: "carol" not in app.state.blocked, "carol unblocked")
        await type_line(pilot, "/add x")
        await wait_until(pilot, lambda: "Usage: /add <name>" in transcript_text(app, DM),
                         "a bad handle refused")
        assert active_view(app).composer.text == "/add x"
        active_view(app).composer.clear()

        await type_line(pilot, "/close")
        await wait_until(pilot, lambda: not app.main.is_open(DM), "the DM closed")
        assert isinstance(app.focused, BuddyList)


async def test_seen_follows_the_other_sides_read_mark(server, tmp_path):
    from cfm_common.client import Client

    async with Client(server.url, "bob", token_file=False) as bob:
        app = make_app(tmp_path, server.url, "alice")
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.main is not None, "signed in")
            conv = app.state.dm_with("bob")
            ack = await bob.say("hi alice", to="alice")
            await wait_until(pilot, lambda: "hi alice" in transcript_text(app, DM), "bob's hi")
            # bob has read only his own message: nothing of alice's is "Seen".
            await bob.mark_read(DM, ack.seq)
            await wait_until(pilot, lambda: conv.peer_read == ack.seq, "bob's first read")
            await app.open_dm("bob")
            await pilot.pause()
            await type_line(pilot, "first")
            await wait_until(pilot, lambda: len(conv.messages) == 2, "first acked")
            assert "Seen" not in transcript_text(app, DM)

            await bob.mark_read(DM, conv.messages[-1].seq)
            await wait_until(pilot, lambda: "first\n  Seen" in transcript_text(app, DM),
                             "Seen under first")
            await type_line(pilot, "second")
            await wait_until(pilot, lambda: len(conv.messages) == 3, "second acked")
            await wait_until(pilot, lambda: transcript_text(app, DM).rstrip().endswith("second"),
                             "second shown")
            assert transcript_text(app, DM).count("Seen") == 1

            await bob.mark_read(DM, conv.messages[-1].seq)
            await wait_until(pilot, lambda: transcript_text(app, DM).rstrip()
                             .endswith("second\n  Seen"), "Seen moved under second")
            assert transcript_text(app, DM).count("Seen") == 1


async def test_a_status_chosen_in_the_app_is_remembered(server, tmp_path):
    """Picked with /status, the picker or the palette, it is in chat.json for next time;
    Away set by the idle timer is not."""
    from textual.widgets import Select

    from cfm_tui.config import ChatConfig

    app = make_app(tmp_path, server.url, "alice")
    saved = tmp_path / "alice" / "chat.json"
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        await app.open_dm("bob")
        await pilot.pause()
        await pilot.press(*"/status away", "enter")
        await wait_until(pilot, lambda: app.state.status == "away", "away")
        assert ChatConfig.load(saved)[0].status == "away"
        app.main.query_one("#me-status", Select).value = "busy"
        await wait_until(pilot, lambda: app.state.status == "busy", "busy")
        assert ChatConfig.load(saved)[0].status == "busy"
        await pilot.press("ctrl+p", *"status: be right back")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.state.status == "brb", "brb")
        assert ChatConfig.load(saved)[0].status == "brb"
        app.controller.idle.check = lambda status: "away"  # the idle timer fires
        app._check_idle()
        assert app.state.status == "away"
        assert ChatConfig.load(saved)[0].status == "brb"


async def test_the_reconnect_bar_counts_down_and_reconnect_now_tries_at_once(server, tmp_path):
    from textual.widgets import Static

    from tests.tui.helpers import plain

    app = make_app(tmp_path, server.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        await app.open_dm("bob")
        await pilot.pause()
        bar = app.main.query_one("#connection", Static)
        await pilot.press(*"/reconnect", "enter")
        await wait_until(pilot, lambda: "/reconnect is for while the connection is down"
                         in transcript_text(app, DM), "the refusal while connected")
        # As the SDK reports a wait before the next try: the bar counts it down.
        await app.handle_event(StateChanged(ConnectionState.RECONNECTING, 16.0, "test"))
        assert "Reconnecting in 16 s…" in plain(bar)
        def seconds_shown() -> int:
            found = re.search(r"Reconnecting in (\d+) s", plain(bar))
            return int(found.group(1)) if found else -1

        # However late the first tick comes under load, the number goes down.
        await wait_until(pilot, lambda: 0 < seconds_shown() < 16, "a tick")
        assert any(t == "Reconnect now" for t, _, _ in app.palette_commands())
        tries: list[bool] = []
        app.session.client.reconnect_now = lambda: tries.append(True)
        await pilot.press(*"/reconnect", "enter")
        await wait_until(pilot, lambda: tries == [True], "reconnect_now called")
        await pilot.press("ctrl+p", *"reconnect now")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: tries == [True, True], "from the palette too")


async def test_nudging_an_offline_contact_says_when_it_arrives(server, tmp_path):
    from cfm_common.client import Client

    async with Client(server.url, "bob", token_file=False):
        pass  # bob exists, and is offline now
    app = make_app(tmp_path, server.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        app.contact("add", "bob")
        await wait_until(pilot, lambda: "bob" in app.state.contacts, "bob listed")
        await app.open_dm("bob")
        await pilot.pause()
        await pilot.press(*"/nudge", "enter")
        await wait_until(pilot, lambda: "your nudge will reach them when they sign in"
                         in transcript_text(app, DM), "the offline line")


async def test_name_and_the_palette_change_the_display_name(server, tmp_path):
    """/name reaches the other side and is remembered in chat.json, like the status;
    the palette's "Change display name" asks for it."""
    import json

    from textual.widgets import Input

    from cfm_tui.screens.ask import AskScreen

    async with alice_and_bob(tmp_path, server.url) as (alice, pa, bob, pb):
        bob.contact("add", "alice")
        await wait_until(pb, lambda: bob.state.person("alice").status == "online", "alice seen")
        await alice.open_dm("bob")
        await pa.pause()
        await type_line(pa, "/name Alice Liddell")
        await wait_until(pb, lambda: bob.state.person("alice").display == "Alice Liddell",
                         "the new name at bob")
        assert active_view(alice).composer.text == ""
        saved = json.loads((tmp_path / "alice" / "chat.json").read_text())
        assert saved["display"] == "Alice Liddell"

        await pa.press("ctrl+p", *"change display")
        await pa.pause(0.3)
        await pa.press("enter")
        await wait_until(pa, lambda: isinstance(alice.screen, AskScreen), "the question")
        field = alice.screen.query_one("#ask-input", Input)
        assert field.value == "Alice Liddell"  # the current one, to edit
        field.value = ""
        await pa.press(*"Al", "enter")
        await wait_until(pb, lambda: bob.state.person("alice").display == "Al", "renamed")
        assert alice.state.display == "Al"
        saved = json.loads((tmp_path / "alice" / "chat.json").read_text())
        assert saved["display"] == "Al"


async def test_save_writes_the_whole_conversation_to_a_text_or_html_file(server, tmp_path):
    from cfm_common.client import Client

    app = make_app(tmp_path, server.url, "alice")
    async with Client(server.url, "bob", token_file=False) as bob, \
            app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        # alice lists bob: 60 DMs from a stranger would meet the server's stranger bucket.
        app.contact("add", "bob")
        await wait_until(pilot, lambda: "bob" in app.state.contacts, "bob listed")
        for i in range(1, 61):  # more than one page of history
            await bob.say(f"line {i} :)", to="alice")
        await wait_until(pilot, lambda: "line 60" in transcript_text(app, DM), "the tab")
        await app.open_dm("bob")
        await pilot.pause()
        text_file, html_file = tmp_path / "chat.txt", tmp_path / "chat.html"
        await pilot.press(*f"/save {text_file}", "enter")
        await wait_until(pilot, lambda: "Saved this conversation" in transcript_text(app, DM),
                         "saved")
        saved = text_file.read_text(encoding="utf-8")
        assert saved.startswith("cfm conversation: bob — saved ")
        assert "bob says" in saved and "line 1 🙂" in saved and "line 60 🙂" in saved
        await pilot.press(*f"/save {html_file}", "enter")
        await wait_until(pilot, lambda: html_file.exists(), "the html file")
        page = html_file.read_text(encoding="utf-8")
        assert "<html" in page.lower() and "line 60" in page
        # An existing file is never overwritten.
        await pilot.press(*f"/save {text_file}", "enter")
        await wait_until(pilot, lambda: "exists already" in " ".join(
            transcript_text(app, DM).split()), "refused")  # as one line, unwrapped
        assert text_file.read_text(encoding="utf-8") == saved


async def test_members_lists_the_room_at_any_width(server, tmp_path):
    from cfm_common.client import Client

    app = make_app(tmp_path, server.url, "alice")
    async with Client(server.url, "bob", display="Bob B.", token_file=False) as bob, \
            app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        await bob.join("#games")
        app.join_room("#games")
        await wait_until(pilot, lambda: app.main.active_room == "#games", "in #games")
        await pilot.pause()
        await pilot.press(*"/members", "enter")
        await wait_until(pilot, lambda: "In #games (2): alice, Bob B."
                         in transcript_text(app, "#games"), "the list")
