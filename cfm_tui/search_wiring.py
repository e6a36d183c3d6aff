"""The app's part for search and selection: the search screen opened and refreshed, a
hit jumped to, its message selected in its conversation. A mixin of :class:`ChatApp`
(kept apart so that app.py stays the short wiring it is)."""

from __future__ import annotations

from datetime import tzinfo
from typing import TYPE_CHECKING

from textual.app import App
from textual.widget import AwaitMount

from cfm_tui.palette import Intent
from cfm_tui.screens.search import SearchScreen
from cfm_tui.state import Update

if TYPE_CHECKING:
    from cfm_tui.controller import ChatController
    from cfm_tui.screens.main import MainScreen


class SearchWiring(App[None]):
    controller: ChatController | None
    main: MainScreen | None
    tz: tzinfo | None

    def run_intent(self, intent: Intent) -> None:
        raise NotImplementedError

    async def _show_search_and_selection(self, update: Update) -> None:
        """The search screen (opened by a new search, refreshed by its results), and a
        message to select (a search hit jumped to)."""
        screen = self.screen
        if update.open_search and not isinstance(screen, SearchScreen):
            # A screen just pushed has no widgets until it is mounted, and shows the
            # results itself when it is (its on_mount): wait for that, then the search's
            # request goes out (the caller starts it after this), so that its answer
            # always finds the screen built.
            opened = self._open_search()
            if opened is not None:
                await opened
        elif update.search and isinstance(screen, SearchScreen) and screen.is_mounted:
            screen.show_results()
        view = self.main.view_for(update.select[0]) if update.select and self.main else None
        if view is not None and update.select is not None:
            view.select(update.select[1])

    def _open_search(self) -> AwaitMount | None:
        if self.controller is None:
            return None
        return self.push_screen(SearchScreen(self.controller.search, self.controller.state,
                                             self.tz), self._jump)

    def _jump(self, hit: tuple[str, int] | None) -> None:
        if hit is not None:
            self.run_intent(Intent("jump", hit[0], hit[1]))
