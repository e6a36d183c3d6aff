"""``/search words`` typed in a conversation, at 80x24 against a real server: the search
screen opens and shows what the server found (or that it found nothing), and Enter on a
hit opens its conversation there."""

from __future__ import annotations

from textual.widgets import OptionList, Static

from cfm_common.client import Client
from cfm_tui.screens.search import SearchScreen
from tests.tui.helpers import active_view, make_app, plain, wait_until

SIZE = (80, 24)
ROOM = "#games"


async def search_from_the_room(pilot, words: str) -> None:
    """Signed in, in ``ROOM``, ``/search words`` typed in its composer and Enter."""
    app = pilot.app
    await wait_until(pilot, lambda: app.main is not None, "signed in")
    app.join_room(ROOM)
    await wait_until(pilot, lambda: app.main.active_room == ROOM, "in the room")
    # Typed once the room's composer has the focus: on a loaded machine the keys could
    # reach the screen before the conversation took it (the search never opened).
    await wait_until(pilot, lambda: app.focused is active_view(app).composer,
                     "the composer focused")
    await pilot.press(*f"/search {words}", "enter")


def status(app) -> str:
    screen = app.screen
    return plain(screen.query_one("#search-status", Static)) \
        if isinstance(screen, SearchScreen) else ""


async def test_slash_search_shows_the_hits_and_one_opens_there(server, tmp_path):
    async with Client(server.url, "bob", token_file=False) as bob:
        await bob.join(ROOM)
        said = await bob.say("we can all go to the lake", room=ROOM)
        alice = make_app(tmp_path, server.url, "alice")
        async with alice.run_test(size=SIZE) as pilot:
            await search_from_the_room(pilot, "lake")
            await wait_until(pilot, lambda: status(alice).startswith("1 message with 'lake'"),
                             "the hit listed")
            hits = alice.screen.query_one("#search-hits", OptionList)
            assert hits.option_count == 1
            assert "we can all go to the lake" in hits.get_option_at_index(0).prompt.plain
            await pilot.press("down", "enter")
            await wait_until(pilot, lambda: alice.screen is alice.main
                             and alice.main.active_view().selected == said.seq,
                             "the hit selected in its conversation")


async def test_slash_search_with_no_hits_says_so(server, tmp_path):
    alice = make_app(tmp_path, server.url, "alice")
    async with alice.run_test(size=SIZE) as pilot:
        await search_from_the_room(pilot, "zebra")
        await wait_until(pilot, lambda: status(alice).startswith("0 messages with 'zebra'"),
                         "nothing found, said")
        assert alice.screen.query_one("#search-hits", OptionList).option_count == 0
