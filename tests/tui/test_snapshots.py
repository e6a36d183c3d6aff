"""SVG snapshots of the main views, from seeded state (no server, fixed clock and zone).

Update after a deliberate visual change with
``.venv/bin/python -m pytest tests/tui/test_snapshots.py --snapshot-update``
and look at the SVGs under ``tests/tui/__snapshots__/`` before committing them.
"""

from __future__ import annotations

from cfm_common import rules
from cfm_common.frames import Msg, Read
from cfm_tui.app import ChatApp, ChatOptions
from cfm_tui.config import ChatConfig
from tests.tui.seed import TZ, seeded_state, ts

BOB = rules.dm_room("alice", "bob")


async def steady(pilot) -> None:
    """Cursors that do not blink: a loaded machine takes the picture later than 0.5 s
    after the focus moved, when a blinking cursor may be in its off phase."""
    for widget in pilot.app.screen.query("Input, TextArea"):
        widget.cursor_blink = False
    await pilot.pause()


async def drawn(pilot) -> None:
    """Until the open conversation has drawn its room (bounded): under load its rows
    mount their children a turn or more after the view, and a fixed pause may not do."""
    for _ in range(500):
        main = pilot.app.main
        view = main.active_view() if main is not None else None
        if view is not None and view.drawn:
            break
        await pilot.pause(0.01)
    await steady(pilot)


def seeded_app(**kw) -> ChatApp:
    options = ChatOptions(config=ChatConfig(idle_minutes=0), animations=False)
    return ChatApp(options, state=seeded_state(**kw), tz=TZ)


def test_sign_in(snap_compare, tmp_path):
    options = ChatOptions(config=ChatConfig(name="alice", idle_minutes=0),
                          data_dir=tmp_path, config_path=tmp_path / "chat.json",
                          animations=False)
    assert snap_compare(ChatApp(options), terminal_size=(120, 40), run_before=steady)


def test_sign_in_refused_invite_at_80x24(snap_compare, tmp_path):
    """The invite field (shown for --invite, or when the server asks for a code) with the
    server's reason under the form: the whole box fits 80x24."""
    options = ChatOptions(config=ChatConfig(name="alice", idle_minutes=0),
                          data_dir=tmp_path, config_path=tmp_path / "chat.json",
                          animations=False, invite="68e1fc1a-6b1238ec-5-f7276a253467922ba213")

    async def refused(pilot):
        pilot.app.screen.show_error("That invite code has been used up; ask for a new one",
                                    "invite")
        await steady(pilot)

    assert snap_compare(ChatApp(options), terminal_size=(80, 24), run_before=refused)


def test_buddy_list(snap_compare):
    assert snap_compare(seeded_app(with_request=True), terminal_size=(120, 40),
                        run_before=steady)


def test_conversation(snap_compare):
    async def open_bob(pilot):
        await pilot.app.open_dm("bob")
        await drawn(pilot)

    assert snap_compare(seeded_app(), terminal_size=(120, 40), run_before=open_bob)


def test_nudge_received(snap_compare):
    async def nudge(pilot):
        app = pilot.app
        await app.open_dm("bob")
        await app.apply_update(app.state.apply(Msg(BOB, 5, "bob", "", ts(-1), "nudge", "n1")))
        await drawn(pilot)

    assert snap_compare(seeded_app(), terminal_size=(120, 40), run_before=nudge)


def test_narrow_buddy_list(snap_compare):
    assert snap_compare(seeded_app(), terminal_size=(80, 30), run_before=steady)


def test_narrow_conversation(snap_compare):
    async def open_lobby(pilot):
        await pilot.app.open_room("#lobby")
        await drawn(pilot)

    assert snap_compare(seeded_app(), terminal_size=(80, 30), run_before=open_lobby)


def test_dm_at_80_columns(snap_compare):
    """80x24, typing in a DM: the footer keeps nudge, F2, close, add, join and ^q (short
    labels), and bob has read alice's last message ("Seen" under it)."""
    async def open_bob(pilot):
        app = pilot.app
        await app.apply_update(app.state.apply(Msg(BOB, 5, "alice", "good luck! (Y)", ts(-1),
                                                   "text", "a5")))
        await app.apply_update(app.state.apply(Read(BOB, "bob", 5)))
        await app.open_dm("bob")
        await drawn(pilot)

    assert snap_compare(seeded_app(), terminal_size=(80, 24), run_before=open_bob)
