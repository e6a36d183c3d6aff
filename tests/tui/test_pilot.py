"""Two real ChatApps against a real in-process server, driven with Pilot."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select, Static

from cfm_common import rules
from cfm_tui.config import ChatConfig
from cfm_tui.screens.main import SHAKE_OFFSETS, MainScreen
from cfm_tui.screens.signin import SignInScreen
from cfm_tui.widgets.buddy_list import BuddyList
from tests.tui.helpers import (
    SIZE,
    active_view,
    alice_and_bob,
    buddy_rows,
    make_app,
    plain,
    send_nudge,
    send_text,
    transcript_text,
    typing_text,
    wait_until,
)

DM = rules.dm_room("alice", "bob")



async def test_sign_in_screen_signs_in_and_remembers(server, tmp_path):
    app = make_app(tmp_path, None, None)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, SignInScreen)
        await pilot.click("#signin-name")
        await pilot.press(*"alice")
        app.screen.query_one("#signin-display", Input).value = "Alice A."
        app.screen.query_one("#signin-server", Input).value = server.url
        app.screen.query_one("#signin-status", Select).value = "busy"
        await pilot.press("enter")
        # Built, not only pushed: quitting mid-build races Textual's Select (NoMatches).
        await wait_until(pilot, lambda: app.main is not None, "the main window")
        assert isinstance(app.screen, MainScreen)
        assert app.state.me == "alice" and app.state.status == "busy"
        me = plain(app.main.query_one("#me-name"))
        assert "Alice A." in me and "Busy" in me
    saved, warning = ChatConfig.load(tmp_path / "anon" / "chat.json")
    assert warning is None
    assert (saved.name, saved.server, saved.status) == ("alice", server.url, "busy")


async def test_sign_in_errors_are_inline(server, tmp_path, monkeypatch):
    # "bob" exists with a token this machine does not have.
    first = make_app(tmp_path, server.url, "bob")
    async with first.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: first.main is not None, "bob signed in")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "other-machine"))
    app = make_app(tmp_path, server.url, "bob")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, SignInScreen), "sign-in screen")
        error = app.screen.query_one("#signin-error", Static)
        await wait_until(pilot, lambda: "bob" in plain(error), "an inline error")
        assert "taken" in plain(error) or "belongs to someone else" in plain(error)
        assert app.focused is app.screen.query_one("#signin-name", Input)  # the field to fix
        # A bad handle is refused before anything is sent.
        app.screen.query_one("#signin-name", Input).value = "x"
        app.screen.submit()
        await pilot.pause()
        assert "2-24" in plain(error)
        # A server nobody listens on.
        app.screen.query_one("#signin-name", Input).value = "carol"
        app.screen.query_one("#signin-server", Input).value = "ws://127.0.0.1:9/ws"
        app.screen.submit()
        await wait_until(pilot, lambda: "Nothing answers at ws://127.0.0.1:9/ws: is `cfm "
                         "serve` running there?" in plain(error), "unreachable error")
        assert isinstance(app.screen, SignInScreen)
        assert app.focused is app.screen.query_one("#signin-server", Input)


async def test_sign_in_completes_host_port_and_fits_80x24(server, tmp_path):
    """host:port is completed to ws://host:port/ws; a long error (up to four lines) keeps
    the whole sign-in box on an 80x24 screen."""
    port = server.url.split(":")[2].split("/")[0]
    app = make_app(tmp_path, None, None)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, SignInScreen)
        screen.query_one("#signin-name", Input).value = "alice"
        screen.query_one("#signin-server", Input).value = "ws://127.0.0.1:9"
        screen.submit()
        error = screen.query_one("#signin-error", Static)
        await wait_until(pilot, lambda: "Nothing answers" in plain(error), "the error")
        await pilot.pause()
        box = screen.query_one("#signin-box")
        for lines, text in ((2, plain(error)),
                            (4, "a four-line error, longer than any the server gives: the "
                                "handle 'someone-long' belongs to someone else here; this "
                                "computer has no matching sign-in token for it.")):
            screen.show_error(text)
            await wait_until(pilot, lambda n=lines: error.region.height == n, "laid out")
            assert box.region.bottom <= 24 - 1, box.region  # above the footer
            assert box.region.y >= 0 and screen.max_scroll_y == 0
        screen.query_one("#signin-server", Input).value = "ftp://x"
        screen.submit()
        await wait_until(pilot, lambda: "e.g. ws://127.0.0.1:1863/ws" in plain(error),
                         "what to type")
        screen.query_one("#signin-server", Input).value = f"localhost:{port}"
        screen.submit()
        await wait_until(pilot, lambda: app.main is not None, "signed in")  # built, not only pushed
    saved, _ = ChatConfig.load(tmp_path / "anon" / "chat.json")
    assert saved.server == f"ws://localhost:{port}/ws"


async def test_two_people_chat(server, tmp_path):
    alice = make_app(tmp_path, server.url, "alice", display="Alice")
    bob = make_app(tmp_path, server.url, "bob", display="Bob")
    async with alice.run_test(size=SIZE) as pa, bob.run_test(size=SIZE) as pb:
        await wait_until(pa, lambda: alice.main is not None, "alice signed in")
        await wait_until(pb, lambda: bob.main is not None, "bob signed in")

        # alice adds bob; bob sees the request and adds her back.
        alice.contact("add", "bob")
        await wait_until(pb, lambda: bob.state.added_you == ["alice"], "the added-you prompt")
        await pb.pause()
        prompt = bob.main.query_one("#added-you")
        assert prompt.display and "alice" in plain(prompt.query_one("#added-you-text", Static))
        await pb.click("#added-you-add")
        await wait_until(pb, lambda: "alice" in bob.state.contacts, "bob added alice back")
        await wait_until(pa, lambda: any("Bob" in r for r in buddy_rows(alice)),
                         "bob in alice's list")
        assert "Online (1)" in buddy_rows(alice) and "Online (1)" in buddy_rows(bob)

        # bob changes status and personal message; alice sees both.
        bob.main.query_one("#me-status", Select).value = "busy"
        psm = bob.main.query_one("#me-psm", Input)
        psm.focus()
        psm.value = "revising [b]hard[/b]"
        await pb.press("enter")
        await wait_until(pa, lambda: alice.state.person("bob").psm == "revising [b]hard[/b]",
                         "bob's psm at alice")
        await wait_until(pa, lambda: alice.state.person("bob").status == "busy", "bob busy")
        bob_row = next(r for r in buddy_rows(alice) if "Bob" in r)
        assert "(Busy)" in bob_row and "revising [b]hard[/b]" in bob_row

        # alice opens the DM and writes: the tab opens at bob; his focus was in the list
        # (nothing typed) and this is his first tab, so its composer takes it.
        await alice.open_dm("bob")
        await pa.pause()
        assert isinstance(bob.focused, BuddyList)
        await pa.press(*"hi bob :)", "enter")
        await wait_until(pb, lambda: "hi bob 🙂" in transcript_text(bob, DM), "message at bob")
        assert "Alice says" in transcript_text(bob, DM)
        await wait_until(pb, lambda: bob.focused is bob.main.view_for(DM).composer,
                         "bob's composer has the focus")
        await wait_until(pa, lambda: "hi bob 🙂" in transcript_text(alice, DM), "own message")
        assert "sending" not in transcript_text(alice, DM)

        # While alice types, bob sees it; her message ends it.
        await pa.press(*"how are")
        await wait_until(pb, lambda: "Alice is typing a message…" in typing_text(bob, DM),
                         "typing at bob")
        await pa.press("enter")
        await wait_until(pb, lambda: "how are" in transcript_text(bob, DM), "second message")
        assert typing_text(bob, DM).strip() == ""

        # bob answers with two lines (Ctrl+J), and a paste does not send by itself.
        await bob.open_dm("alice")
        await pb.pause()
        await pb.press(*"fine", "ctrl+j", *"thanks (Y)")
        composer = active_view(bob).composer
        composer.post_message(__import__("textual").events.Paste("pasted\nlines"))
        await pb.pause()
        assert composer.text.endswith("pasted\nlines")
        assert "thanks" not in transcript_text(bob, DM)
        await pb.press("enter")
        await wait_until(pa, lambda: "thanks 👍" in transcript_text(alice, DM), "reply")
        assert "  fine\n  thanks 👍pasted\n  lines" in transcript_text(alice, DM)

        # Read marks: both saw everything, so nothing is unread.
        assert alice.state.unread_for("bob") == 0 and bob.state.unread_for("alice") == 0

        # Nudge: alice's window says she sent it; bob's shakes and says who did.
        await pa.press("ctrl+g")
        await wait_until(pb, lambda: "Alice just sent you a nudge!" in transcript_text(bob, DM),
                         "nudge at bob")
        assert bob.main.shakes == 1 and bob.bells >= 1
        await wait_until(pa, lambda: "You have just sent a nudge!" in transcript_text(alice, DM),
                         "nudge line at alice")
        # A second nudge right away hits the server's limit: a friendly line, no traceback.
        await pa.press("ctrl+g")
        await wait_until(pa, lambda: "You can't send a nudge that often."
                         in transcript_text(alice, DM), "rate-limit line")
        assert bob.main.shakes == 1

        # bob blocks alice: she sees him offline and nothing more (blocking is private);
        # her message goes out as to anyone offline, and never reaches bob.
        bob.contact("block", "alice")
        await wait_until(pb, lambda: "Blocked (1)" in buddy_rows(bob), "blocked group")
        await wait_until(pa, lambda: alice.state.person("bob").status == "offline",
                         "bob offline for alice")
        send_text(alice, DM, "are you there?")
        sent = alice.state.conversation(DM)
        await wait_until(pa, lambda: not sent.pending and "are you there?" in
                         transcript_text(alice, DM), "message sent")
        assert "delivered" not in transcript_text(alice, DM)
        assert "accepting" not in transcript_text(alice, DM)
        bob.contact("unblock", "alice")
        await wait_until(pb, lambda: "Blocked (1)" not in buddy_rows(bob), "unblocked")
        send_text(alice, DM, "after unblock")
        await wait_until(pb, lambda: "after unblock" in transcript_text(bob, DM), "unblocked msg")
        assert "are you there?" not in transcript_text(bob, DM)


async def test_offline_messages_arrive_on_sign_in(server, tmp_path):
    bob = make_app(tmp_path, server.url, "bob")
    async with bob.run_test(size=SIZE) as pb:
        await wait_until(pb, lambda: bob.main is not None, "bob signed in")
    alice = make_app(tmp_path, server.url, "alice")
    async with alice.run_test(size=SIZE) as pa:
        await wait_until(pa, lambda: alice.main is not None, "alice signed in")
        for text in ("are you there?", "call me (L)"):
            send_text(alice, DM, text)
        await wait_until(pa, lambda: len(alice.state.conversations[DM].messages) == 2, "acks")
    bob = make_app(tmp_path, server.url, "bob")
    async with bob.run_test(size=SIZE) as pb:
        await wait_until(pb, lambda: "call me 💖" in transcript_text(bob, DM), "offline messages")
        assert "are you there?" in transcript_text(bob, DM)
        # The first tab, opened while nothing was typed: its composer takes the focus.
        await wait_until(pb, lambda: bob.focused is bob.main.active_view().composer,
                         "the composer has the focus")
        # As the only tab it is on screen, so it counts as seen.
        assert bob.main.active_room == DM
        assert bob.state.conversations[DM].read_mark == 2


async def test_reconnect_after_server_restart_loses_nothing(server_factory, tmp_path):
    from cfm_server.server import Server

    first = await server_factory(data_dir=tmp_path / "srv")
    port, config = first.port, first.config
    alice = make_app(tmp_path, first.url, "alice")
    bob = make_app(tmp_path, first.url, "bob")
    async with alice.run_test(size=SIZE) as pa, bob.run_test(size=SIZE) as pb:
        await wait_until(pa, lambda: alice.main is not None, "alice signed in")
        await wait_until(pb, lambda: bob.main is not None, "bob signed in")
        await alice.open_dm("bob")
        send_text(alice, DM, "before the restart")
        await wait_until(pb, lambda: "before the restart" in transcript_text(bob, DM), "first")

        await first.stop(close_code=1012)
        bar = alice.main.query_one("#connection", Static)
        await wait_until(pa, lambda: "Reconnecting" in plain(bar), "reconnecting shown")
        send_text(alice, DM, "while it was down")
        await wait_until(pa, lambda: "waiting to send" in plain(bar), "pending shown")
        assert "sending…" in transcript_text(alice, DM)

        config.port = port
        second = Server(config)
        await second.start()
        try:
            await wait_until(pa, lambda: "Connected" in plain(bar), "reconnected", timeout=30)
            await wait_until(pb, lambda: "while it was down" in transcript_text(bob, DM),
                             "queued message delivered", timeout=30)
            await wait_until(pa, lambda: "sending…" not in transcript_text(alice, DM), "acked")
            text = transcript_text(bob, DM)
            assert text.count("while it was down") == 1 and text.count("before the restart") == 1
            assert [m.seq for m in bob.state.conversations[DM].messages] == [1, 2]
        finally:
            await alice.shutdown_services()
            await bob.shutdown_services()
            await second.stop(close_code=1001)


async def test_group_room_join_members_and_chat(server, tmp_path):
    async with alice_and_bob(tmp_path, server.url) as (alice, pa, bob, pb):
        await pa.press("f6")
        await pa.press(*"#games", "enter")
        await wait_until(pa, lambda: alice.main.active_room == "#games", "alice in #games")
        bob.join_room("#games")
        await wait_until(pb, lambda: bob.main.active_room == "#games", "bob in #games")
        await wait_until(pa, lambda: alice.state.conversations["#games"].members ==
                         {"alice", "bob"}, "members at alice")
        members = plain(alice.main.view_for("#games").query_one(".conv-members", Static))
        assert "alice" in members and "bob" in members
        await pa.press(*"anyone for chess?", "enter")
        await wait_until(pb, lambda: "anyone for chess?" in transcript_text(bob, "#games"),
                         "room message")
        assert "# games" in "\n".join(buddy_rows(bob))
        # Leaving closes the tab and takes the room off the list; bob sees alice go.
        alice.leave_room("#games")
        await wait_until(pa, lambda: not alice.main.is_open("#games"), "tab closed")
        assert "Rooms (0)" in buddy_rows(alice)
        await wait_until(pb, lambda: bob.state.conversations["#games"].members == {"bob"},
                         "alice left at bob")
        assert "has left the conversation." in transcript_text(bob, "#games")


async def test_idle_goes_away_and_activity_comes_back(server, tmp_path):
    from cfm_tui.idle import IdleTracker

    async with alice_and_bob(tmp_path, server.url) as (alice, pa, bob, pb):
        bob.contact("add", "alice")
        await wait_until(pb, lambda: bob.state.person("alice").status == "online", "alice seen")
        clock = [0.0]
        alice.controller.idle = IdleTracker(1, clock=lambda: clock[0])
        clock[0] = 61
        alice._check_idle()
        await wait_until(pb, lambda: bob.state.person("alice").status == "away", "auto-away")
        await pa.press("down")
        await wait_until(pb, lambda: bob.state.person("alice").status == "online", "back")


async def test_command_palette_runs_actions(server, tmp_path):
    app = make_app(tmp_path, server.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        titles = [title for title, _, _ in app.palette_commands()]
        assert "Status: Be Right Back" in titles and "Join a group room…" in titles
        await pilot.press("ctrl+p")
        await pilot.press(*"be right back")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.state.status == "brb", "status from the palette")
        await pilot.press("f2")  # wide: only flips the flag, both panes stay
        assert app.main.query_one("#buddy-pane").display


@pytest.mark.parametrize("count", [100, 80])
async def test_older_history_loads_when_scrolling_up(server_factory, tmp_path, count):
    from cfm_common.client import Client

    server = await server_factory(rate_limits=False)
    # alice reads them all on another device: nothing is unread when she signs in here.
    async with Client(server.url, "alice") as other_device, \
            Client(server.url, "bob", token_file=False) as bob:
        for i in range(1, count + 1):
            await bob.say(f"message {i}", to="alice")
        await other_device.mark_read(DM, count)
        await other_device.history(DM, limit=1)  # a round trip: the read mark is stored
    app = make_app(tmp_path, server.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        conv = app.state.conversations[DM]
        assert conv.latest_seq == count and conv.messages == []
        await app.open_dm("bob")
        await wait_until(pilot, lambda: f"message {count}" in transcript_text(app, DM),
                         "newest page")
        assert conv.oldest_seq == count - 49
        assert f"message {count - 50}\n" not in transcript_text(app, DM)
        transcript = active_view(app).transcript
        # The newest page is shown from its end; the reader then scrolls to the top.
        await wait_until(pilot, lambda: 0 < transcript.max_scroll_y == transcript.scroll_y,
                         "the transcript scrolled to its end")
        transcript.scroll_home(animate=False)
        await wait_until(pilot, lambda: conv.loaded_all, "the older page")
        assert [m.seq for m in conv.messages] == list(range(1, count + 1))
        await wait_until(pilot, lambda: "message 1\n" in transcript_text(app, DM), "shown")


async def test_a_nudge_shakes_without_errors(server, tmp_path, caplog):
    """Every step of the shake runs (the first one was a 0 s timer that Textual's Timer
    divided by) and nothing is logged as an error, nor left as a failed task."""
    import gc
    import logging

    caplog.set_level(logging.ERROR)
    alice = make_app(tmp_path, server.url, "alice")
    bob = make_app(tmp_path, server.url, "bob", animations=True)
    async with alice.run_test(size=SIZE) as pa, bob.run_test(size=SIZE) as pb:
        await wait_until(pa, lambda: alice.main is not None, "alice signed in")
        await wait_until(pb, lambda: bob.main is not None, "bob signed in")
        window = bob.main.query_one("#window")
        offsets: list[tuple[int, int]] = []
        original = bob.main.shake_to

        def record(x: int, y: int) -> None:
            offsets.append((x, y))
            original(x, y)

        bob.main.shake_to = record  # type: ignore[method-assign]
        await alice.open_dm("bob")
        send_nudge(alice, DM)
        await wait_until(pb, lambda: bob.main.shakes == 1, "the nudge at bob")
        await wait_until(pb, lambda: len(offsets) == len(SHAKE_OFFSETS), "every shake step")
        assert offsets == list(SHAKE_OFFSETS)
        assert (window.styles.offset.x.value, window.styles.offset.y.value) == (0, 0)
        await pb.pause()
    gc.collect()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_a_second_chat_on_the_built_in_server_says_what_to_do(tmp_path):
    """Two `cfm chat` with no --server share the embedded server's data dir: the second
    says another chat holds it, and how to run both."""
    first = make_app(tmp_path, None, "alice")
    second = make_app(tmp_path, None, "bob", data_dir=first.options.data_dir)
    async with first.run_test(size=SIZE) as p1:
        await wait_until(p1, lambda: first.main is not None, "the first chat signed in")
        async with second.run_test(size=SIZE) as p2:
            await wait_until(p2, lambda: isinstance(second.screen, SignInScreen), "sign-in")
            error = second.screen.query_one("#signin-error", Static)
            await wait_until(p2, lambda: "another cfm chat" in plain(error).lower(), "error")
            text = plain(error)
            assert "pid" not in text and "data directory" not in text
            assert "--server ws://127.0.0.1:1863/ws" in text and "cfm serve" in text
