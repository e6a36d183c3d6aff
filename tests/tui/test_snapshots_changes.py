"""SVG snapshots at 80x24 of message changes: an edited, deleted, answered, reacted and
mentioning transcript; select mode; the emoji picker; the search screen with hits.

Update after a deliberate visual change with
``.venv/bin/python -m pytest tests/tui/test_snapshots_changes.py --snapshot-update``.
"""

from __future__ import annotations

from cfm_common import rules
from cfm_common.frames import Msg, StoredMsg
from tests.tui.seed import ts
from tests.tui.test_snapshots import drawn, seeded_app, steady

BOB = rules.dm_room("alice", "bob")
SIZE = (80, 24)
CHANGES = (
    Msg(BOB, 5, "bob", "@alice did you see this?", ts(-8), "text", "b5", reply=2,
        mentions=("alice",)),
    Msg(BOB, 6, "bob", "awful but nearly done", ts(-7), "text", "b6", change="edit", target=3),
    Msg(BOB, 7, "bob", "👍", ts(-7), "text", "b7", change="react", target=2, emoji="👍"),
    Msg(BOB, 8, "bob", "(L)", ts(-7), "text", "b8", change="react", target=2, emoji="(L)"),
    Msg(BOB, 9, "bob", "", ts(-6), "text", "b9", change="delete", target=4),
)


async def with_changes(pilot) -> None:
    app = pilot.app
    await app.open_dm("bob")
    for event in CHANGES:
        await app.handle_event(event)
    await drawn(pilot)


def test_changed_messages(snap_compare):
    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=with_changes)


def test_select_mode(snap_compare):
    async def select(pilot):
        await with_changes(pilot)
        await pilot.press("f7", "up")
        await steady(pilot)

    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=select)


def test_replying(snap_compare):
    async def reply(pilot):
        await with_changes(pilot)
        await pilot.press("f7", "up", "r", *"me too")
        await steady(pilot)

    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=reply)


def test_emoji_picker(snap_compare):
    async def pick(pilot):
        await with_changes(pilot)
        await pilot.press("f7", "a")
        await steady(pilot)

    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=pick)


def test_search_screen(snap_compare):
    async def search(pilot):
        app = pilot.app
        await pilot.press("ctrl+f", *"lake")
        await pilot.pause()
        results = app.controller.search.results
        results.text = "lake"
        results.hits = [
            StoredMsg(BOB, 3, "bob", "awful :( but nearly done\nthree to go, then it is "
                      "summer at last and we can all go to the lake", ts(-10), "text"),
            StoredMsg("#lobby", 1, "erin", "who is up for the lake (H)", ts(-30), "text"),
        ]
        results.more = True
        app.screen.show_results()
        await steady(pilot)

    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=search)
