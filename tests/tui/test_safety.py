"""Untrusted text stays text: markup is shown as typed, escape sequences never reach the
terminal. Seeded state where the server would refuse the bytes; a live server for the rest."""

from __future__ import annotations

from rich.cells import cell_len
from textual.widgets import Static

from cfm_common import rules
from cfm_common.frames import Msg, Presence
from cfm_tui.app import ChatApp, ChatOptions
from cfm_tui.config import ChatConfig
from cfm_tui.render import buddy_line, transcript
from cfm_tui.state import Person
from tests.tui.helpers import SIZE, plain, send_text, transcript_text, wait_until
from tests.tui.seed import TZ, seeded_state, ts

BOB = rules.dm_room("alice", "bob")
HOSTILE = "[bold]x[/] \x1b]0;pwned\x07 \x1b[2J [link=http://evil]y[/link] \x9b31m"


def test_render_keeps_markup_literal_and_drops_escapes():
    state = seeded_state()
    state.apply(Msg(BOB, 9, "bob", HOSTILE, ts(0), "text", "h1"))
    text = transcript(state.conversations[BOB].lines(), state, TZ)
    assert "[bold]x[/]" in text.plain and "[link=http://evil]y[/link]" in text.plain
    assert not any(ch in text.plain for ch in "\x1b\x07\x9b")
    assert all(not span.style or "link" not in str(span.style) for span in text.spans)
    row = buddy_line(Person("eve", HOSTILE, "online", HOSTILE, False))
    assert "[bold]x[/]" in row.plain and "\x1b" not in row.plain


async def test_hostile_names_and_messages_in_the_app(tmp_path):
    config = ChatConfig(idle_minutes=0, desktop_notifications=True)
    app = ChatApp(ChatOptions(config=config, config_path=tmp_path / "c.json",
                              animations=False), state=seeded_state(), tz=TZ)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.open_room("#lobby")
        await app.apply_update(app.state.apply(Presence("bob", HOSTILE, "online", HOSTILE, False)))
        # A message in a conversation that is not open: a toast and a desktop note.
        await app.apply_update(app.state.apply(Msg(BOB, 9, "bob", HOSTILE, ts(0), "text", "h")))
        await pilot.pause()
        shown = transcript_text(app, BOB)
        assert "[bold]x[/]" in shown and "\x1b" not in shown
        toasts = [n.message for n in app._notifications]
        assert any("[bold]x[/]" in t for t in toasts)
        assert all("\x1b" not in t and "\x07" not in t for t in toasts)
        assert app.main.active_room == "#lobby"
        assert app.desktop_notes and all("\x1b" not in t for t in app.desktop_notes)
        header = plain(app.main.view_for(BOB).query_one(".conv-header", Static))
        assert "[bold]x[/]" in header and "\x1b" not in header


async def test_markup_through_a_live_server(server, tmp_path, monkeypatch):
    from tests.tui.helpers import make_app

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    alice = make_app(tmp_path, server.url, "alice", display="[red]Alice[/red]")
    bob = make_app(tmp_path, server.url, "bob")
    async with alice.run_test(size=SIZE) as pa, bob.run_test(size=SIZE) as pb:
        await wait_until(pa, lambda: alice.main is not None, "alice signed in")
        await wait_until(pb, lambda: bob.main is not None, "bob signed in")
        bob.contact("add", "alice")
        await wait_until(pb, lambda: bob.state.label("alice") == "[red]Alice[/red]", "display")
        await alice.open_dm("bob")
        send_text(alice, BOB, "[bold]not bold[/] [/]")
        await wait_until(pb, lambda: "[bold]not bold[/] [/]" in transcript_text(bob, BOB),
                         "literal markup at bob")
        assert "[red]Alice[/red] says" in transcript_text(bob, BOB)


def test_wrapped_lines_keep_their_indent():
    state = seeded_state()
    state.apply(Msg(BOB, 9, "bob", "word " * 30 + "😀" * 20, ts(0), "text", "w"))
    text = transcript(state.conversations[BOB].lines(), state, TZ, width=40)
    body = text.plain.split("Bob says (10:00):\n")[1].split("\n")
    assert len(body) > 3
    assert all(line.startswith("  ") and cell_len(line) <= 40 for line in body)
