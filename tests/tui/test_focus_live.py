"""Focus and drafts against a real in-process server, keys pressed as a user would."""

from __future__ import annotations

from cfm_common import rules
from cfm_tui.widgets.buddy_list import BuddyList
from tests.tui.helpers import (
    SIZE,
    active_view,
    alice_and_bob,
    make_app,
    send_text,
    transcript_text,
    wait_until,
)

DM = rules.dm_room("alice", "bob")



async def test_add_back_leaves_the_focus_where_keys_work(server, tmp_path):
    async with alice_and_bob(tmp_path, server.url) as (alice, _, bob, pb):
        await bob.open_dm("alice")
        alice.contact("add", "bob")
        await wait_until(pb, lambda: bob.state.added_you == ["alice"], "the added-you prompt")
        await pb.pause()
        await pb.click("#added-you-add")
        await wait_until(pb, lambda: "alice" in bob.state.contacts, "bob added alice back")
        await wait_until(pb, lambda: not bob.main.query_one("#added-you").display, "prompt gone")
        await pb.pause()
        composer = active_view(bob).composer
        assert bob.focused is composer
        await pb.press(*"thanks")
        assert composer.text == "thanks"


async def test_add_back_without_a_conversation_focuses_the_list(server, tmp_path):
    async with alice_and_bob(tmp_path, server.url) as (alice, _, bob, pb):
        alice.contact("add", "bob")
        await wait_until(pb, lambda: bob.state.added_you == ["alice"], "the added-you prompt")
        await pb.pause()
        await pb.click("#added-you-dismiss")
        await wait_until(pb, lambda: not bob.main.query_one("#added-you").display, "prompt gone")
        await pb.pause()
        assert isinstance(bob.focused, BuddyList)


async def test_leaving_a_room_from_the_palette_focuses_the_next_tab(server, tmp_path):
    app = make_app(tmp_path, server.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        await app.open_dm("bob")
        await pilot.press("f6", *"#games", "enter")
        await wait_until(pilot, lambda: app.main.active_room == "#games", "in #games")
        await pilot.pause()
        await pilot.press("ctrl+p", *"leave #games")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: not app.main.is_open("#games"), "tab closed")
        await wait_until(pilot, lambda: app.main.active_room == DM, "the DM is active")
        await pilot.pause()
        composer = active_view(app).composer
        assert app.focused is composer
        await pilot.press(*"back")
        assert composer.text == "back"


async def test_a_refused_message_keeps_its_draft(server_factory, tmp_path):
    from textual import events

    server = await server_factory(max_text=20)
    app = make_app(tmp_path, server.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        await app.open_dm("bob")
        await pilot.pause()
        composer = active_view(app).composer
        await pilot.press(*"this is far too long to send")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "too long" in transcript_text(app, DM), "the refusal")
        assert composer.text == "this is far too long to send"
        # A pasted control character is refused before it reaches the server, too.
        composer.clear()
        app.post_message(events.Paste("bell\x07"))  # as the terminal delivers it
        await pilot.pause()
        await pilot.press("enter")
        await wait_until(pilot, lambda: "control character" in transcript_text(app, DM),
                         "the second refusal")
        assert composer.text == "bell\x07"
        composer.clear()
        await pilot.press(*"short one", "enter")
        await wait_until(pilot, lambda: "short one" in transcript_text(app, DM), "sent")
        assert composer.text == ""


async def test_a_tab_opened_by_a_message_shows_the_recent_history(server, tmp_path):
    from cfm_common.client import Client

    async with Client(server.url, "bob") as other_device, \
            Client(server.url, "alice", token_file=False) as alice:
        for i in range(1, 4):
            await alice.say(f"earlier {i}", to="bob")
        await other_device.mark_read(DM, 3)
        await other_device.history(DM, limit=1)  # a round trip: the read mark is stored
        app = make_app(tmp_path, server.url, "bob")
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.main is not None, "signed in")
            assert not app.main.is_open(DM)
            await alice.say("are you there?", to="bob")
            await wait_until(pilot, lambda: "are you there?" in transcript_text(app, DM),
                             "the new message")
            await wait_until(pilot, lambda: "earlier 1" in transcript_text(app, DM),
                             "the history before it")
            text = transcript_text(app, DM)
            assert text.index("earlier 3") < text.index("are you there?")
            # The only tab, opened while the list had the focus: its composer gets it.
            assert app.focused is active_view(app).composer


async def test_the_palette_answers_an_add_request(server, tmp_path):
    alice = make_app(tmp_path, server.url, "alice", display="Alice")
    bob = make_app(tmp_path, server.url, "bob")
    async with alice.run_test(size=SIZE) as pa, bob.run_test(size=SIZE) as pb:
        await wait_until(pa, lambda: alice.main is not None, "alice signed in")
        await wait_until(pb, lambda: bob.main is not None, "bob signed in")
        alice.contact("add", "bob")
        await wait_until(pb, lambda: bob.state.added_you == ["alice"], "the request")
        titles = [title for title, _, _ in bob.palette_commands()]
        assert "Block Alice (alice)" in titles
        await pb.press("ctrl+p", *"add alice (alice) back")
        await pb.pause(0.3)
        await pb.press("enter")
        await wait_until(pb, lambda: "alice" in bob.state.contacts, "added back")
        assert bob.state.added_you == []
        await wait_until(pb, lambda: not bob.main.query_one("#added-you").display, "prompt gone")


async def test_enter_in_the_psm_box_commits_and_leaves_it(server, tmp_path):
    """The privacy trap: after Enter the PSM box lets go, so a chat reply typed after a
    message opened its tab never lands in (and gets broadcast as) the personal message."""
    from textual.widgets import Input

    async with alice_and_bob(tmp_path, server.url) as (alice, _, bob, pb):
        psm = bob.main.query_one("#me-psm", Input)
        await pb.click("#me-psm")
        assert bob.focused is psm
        await pb.press(*"revising", "enter")
        await wait_until(pb, lambda: bob.state.psm == "revising", "the psm set")
        await pb.pause()
        assert bob.focused is not psm
        send_text(alice, DM, "are you there?")
        await wait_until(pb, lambda: "are you there?" in transcript_text(bob, DM), "the message")
        await pb.pause()
        assert bob.focused is not psm
        await pb.press(*"yes")
        await pb.pause()
        assert psm.value == "revising" and bob.state.psm == "revising"


async def test_escape_in_the_psm_box_restores_it_and_leaves(server, tmp_path):
    from textual.widgets import Input

    app = make_app(tmp_path, server.url, "bob")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        await app.open_dm("alice")
        await pilot.pause()
        psm = app.main.query_one("#me-psm", Input)
        await pilot.click("#me-psm")
        await pilot.press(*"oops", "escape")
        await pilot.pause()
        assert psm.value == "" and app.state.psm == ""
        assert app.focused is active_view(app).composer


async def test_a_background_tab_takes_the_focus_from_an_idle_psm_box(server, tmp_path):
    """Focus parked in the PSM box with nothing typed: a tab opened by a message gets it."""
    from textual.widgets import Input

    async with alice_and_bob(tmp_path, server.url) as (alice, _, bob, pb):
        psm = bob.main.query_one("#me-psm", Input)
        psm.focus()
        await pb.pause()
        send_text(alice, DM, "hi")
        await wait_until(pb, lambda: "hi" in transcript_text(bob, DM), "the message")
        await wait_until(pb, lambda: bob.focused is not psm, "focus left the psm box")
        await pb.press(*"yes")
        await pb.pause()
        assert psm.value == ""


async def test_block_and_remove_from_the_list_ask_first(server, tmp_path):
    """b and Delete in the buddy list open a question with Cancel focused: Enter or
    Escape change nothing, y (or the red button) does it."""
    from cfm_common.client import Client
    from cfm_tui.screens.confirm import ConfirmScreen

    async with Client(server.url, "bob", token_file=False):
        pass  # bob exists
    app = make_app(tmp_path, server.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        app.contact("add", "bob")
        await wait_until(pilot, lambda: "bob" in app.state.contacts, "bob listed")
        buddies = app.main.query_one(BuddyList)
        await pilot.pause()
        buddies.focus()
        buddies.highlighted = buddies.get_option_index("user:bob")
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        question = str(app.screen.query_one("#confirm-question").render())
        assert "Block bob?" in question and "(bob)" not in question  # no handle twice
        await pilot.press("enter")  # Cancel has the focus
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "closed")
        await pilot.press("delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "closed")
        await pilot.pause(0.2)
        assert "bob" in app.state.contacts and "bob" not in app.state.blocked
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y", "e", "enter")  # "bye" typed on: no letter says yes
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "closed")
        await pilot.pause(0.2)
        assert "bob" not in app.state.blocked
        await wait_until(pilot, lambda: app.focused is buddies, "back in the list")
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("tab", "enter")  # to the Block button, and press it
        await wait_until(pilot, lambda: "bob" in app.state.blocked, "bob blocked")
        await wait_until(pilot, lambda: app.focused is buddies, "back in the list")
        await pilot.press("b")  # unblocking asks nothing
        await wait_until(pilot, lambda: "bob" not in app.state.blocked, "bob unblocked")
        buddies.highlighted = buddies.get_option_index("user:bob")
        await pilot.press("delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.click("#confirm-yes")
        await wait_until(pilot, lambda: "bob" not in app.state.contacts, "bob removed")


async def test_a_room_row_offers_what_works_there(server, tmp_path):
    """On a room row: no member count (it went stale), no Block; Delete leaves the room
    after asking. On a contact row: Remove and Block."""
    from textual.widgets._footer import FooterKey

    from cfm_tui.screens.confirm import ConfirmScreen

    def footer() -> list[str]:
        return [k.description for k in app.main.query(FooterKey)]

    app = make_app(tmp_path, server.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        app.join_room("#study", open_tab=False)
        await wait_until(pilot, lambda: "#study" in app.state.group_rooms(), "joined")
        await pilot.pause()
        buddies = app.main.query_one(BuddyList)
        rows = [str(getattr(o.prompt, "plain", o.prompt)) for o in buddies.options]
        assert "  # study" in rows  # no "n here"
        buddies.focus()
        buddies.highlighted = buddies.get_option_index("room:#study")
        await wait_until(pilot, lambda: "Leave room" in footer(), "Leave in the footer")
        assert "Block/Unblock" not in footer() and "Remove" not in footer()
        await pilot.press("b")  # nothing to block
        await pilot.press("delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert "Leave #study?" in str(app.screen.query_one("#confirm-question").render())
        await pilot.click("#confirm-yes")
        await wait_until(pilot, lambda: "#study" not in app.state.group_rooms(), "left")


async def test_an_add_request_is_answered_from_the_keyboard(server, tmp_path):
    """The toast says which key answers; F3 (in the footer while a request waits) puts
    the focus on Add back, Enter presses it."""
    from textual.widgets._footer import FooterKey

    async with alice_and_bob(tmp_path, server.url) as (alice, _, bob, pb):

        def footer() -> list[str]:
            return [k.description for k in bob.main.query(FooterKey)]

        assert "Answer request" not in footer()
        alice.contact("add", "bob")
        await wait_until(pb, lambda: bob.state.added_you == ["alice"], "the request")
        # The toast is a message of the app's own, handled after the state changed.
        await wait_until(pb, lambda: any("F3" in n.message for n in bob._notifications),
                         "the toast with F3")
        await wait_until(pb, lambda: "Answer request" in footer(), "F3 in the footer")
        await pb.press("f3")
        await pb.pause()
        assert bob.focused is bob.main.query_one("#added-you-add")
        await pb.press("enter")
        await wait_until(pb, lambda: "alice" in bob.state.contacts, "added back")
        await wait_until(pb, lambda: "Answer request" not in footer(), "F3 gone")
        assert isinstance(bob.focused, BuddyList)


async def test_a_background_tab_during_a_psm_edit_says_where_keys_go(server, tmp_path):
    from textual.widgets import Input

    async with alice_and_bob(tmp_path, server.url) as (alice, _, bob, pb):
        psm = bob.main.query_one("#me-psm", Input)
        await pb.click("#me-psm")
        await pb.press(*"revis")
        send_text(alice, DM, "hi")
        await wait_until(pb, lambda: "hi" in transcript_text(bob, DM), "the message")
        await wait_until(pb, lambda: any("still editing your personal message" in n.message
                                         for n in bob._notifications), "the warning")
        assert bob.focused is psm and bob.state.psm == ""
        await pb.press("f2")
        await pb.pause()
        assert bob.focused is active_view(bob).composer
        assert bob.state.psm == "revis"  # leaving the field set it, as in MSN


async def test_a_first_tab_opened_by_a_message_takes_the_focus_from_the_list(server, tmp_path):
    """Alice closed a dialog (the list has the focus, no row highlighted); bob's message
    opens the only tab: what she types next is her reply."""
    async with alice_and_bob(tmp_path, server.url) as (alice, pa, bob, pb):
        await pa.press("f5")
        await pa.pause()
        await pa.press("escape")
        await wait_until(pa, lambda: isinstance(alice.focused, BuddyList), "back in the list")
        send_text(bob, DM, "hey alice")
        await wait_until(pa, lambda: "hey alice" in transcript_text(alice, DM), "the message")
        await wait_until(pa, lambda: alice.focused is active_view(alice).composer,
                         "the composer has the focus")
        await pa.press(*"hi bob (H)", "enter")
        await wait_until(pb, lambda: "hi bob" in transcript_text(bob, DM), "the reply")


async def test_typing_in_the_list_goes_to_the_conversation_on_screen(server, tmp_path):
    """Type-to-compose: printable keys in the buddy list go to the shown conversation's
    composer, except the list's own keys on the highlighted row (b on a contact)."""
    from cfm_tui.screens.confirm import ConfirmScreen

    async with alice_and_bob(tmp_path, server.url) as (alice, pa, bob, pb):
        alice.contact("add", "bob")
        await wait_until(pa, lambda: "bob" in alice.state.contacts, "bob listed")
        await alice.open_dm("bob")
        await pa.pause()
        buddies = alice.main.query_one(BuddyList)
        await pa.press("f2")
        await wait_until(pa, lambda: alice.focused is buddies, "in the list")
        buddies.highlighted = None
        await pa.press(*"bob?")  # b with no contact highlighted is just a letter
        composer = active_view(alice).composer
        await wait_until(pa, lambda: composer.text == "bob?", "typed into the composer")
        assert alice.focused is composer
        await pa.press("f2")
        await wait_until(pa, lambda: alice.focused is buddies, "in the list again")
        buddies.highlighted = buddies.get_option_index("user:bob")
        await pa.press("b")  # the list's key on a contact row
        await wait_until(pa, lambda: isinstance(alice.screen, ConfirmScreen), "the question")
        await pa.press("escape")
        await wait_until(pa, lambda: alice.focused is buddies, "back in the list")
        await pa.press(*" yes", "enter")
        await wait_until(pb, lambda: "bob? yes" in transcript_text(bob, DM), "sent")
        assert "bob" not in alice.state.blocked


async def test_typing_in_the_buddy_list_with_no_conversation_says_where_to_type(
        server, tmp_path):
    app = make_app(tmp_path, server.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        assert isinstance(app.focused, BuddyList)
        await pilot.press(*"/add bob")
        await wait_until(pilot, lambda: any("Nothing to type into here" in n.message
                                            for n in app._notifications), "the hint")
        assert sum("Nothing to type into" in n.message for n in app._notifications) == 1


async def test_the_composer_clears_and_selects_all_with_the_usual_keys(server, tmp_path):
    app = make_app(tmp_path, server.url, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main is not None, "signed in")
        await app.open_dm("bob")
        await pilot.pause()
        composer = active_view(app).composer
        draft = "a long draft that wraps over several lines of the composer " * 4
        composer.insert(draft)
        await pilot.press("ctrl+u")  # all of it, not one wrapped line
        assert composer.text == ""
        await pilot.press("ctrl+z")
        assert composer.text == draft
        await pilot.press("ctrl+a", "x")  # select all, then type over it
        assert composer.text == "x"


async def test_the_tabs_open_at_quit_come_back_at_the_next_sign_in(server, tmp_path):
    from cfm_tui.config import ChatConfig

    first = make_app(tmp_path, server.url, "alice")
    async with first.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: first.main is not None, "signed in")
        await first.open_dm("bob")
        first.join_room("#lobby")
        await wait_until(pilot, lambda: first.main.is_open("#lobby"), "in #lobby")
        # What Ctrl+Q runs (pressed through Pilot, the app may exit mid-press and
        # Pilot then waits for its animator for ever).
        await first.action_quit()
    config, warning = ChatConfig.load(tmp_path / "alice" / "chat.json")
    assert warning is None and config.open_tabs == [DM, "#lobby"]
    config.idle_minutes = 0
    again = make_app(tmp_path, server.url, "alice", config=config)
    async with again.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: again.main is not None, "signed in again")
        await wait_until(pilot, lambda: again.main.open_rooms() == [DM, "#lobby"], "the tabs")
        await wait_until(pilot, lambda: again.state.conversations["#lobby"].members == {"alice"},
                         "the room's members")
