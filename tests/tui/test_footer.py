"""The footer's order and fitting (cfm_tui.widgets.footer.fit_keys)."""

from __future__ import annotations

from cfm_tui.widgets.footer import Key, fit_keys


def key(id: str, display: str, description: str) -> Key:
    return Key(id, display, display, description, id)


QUIT = key("app.quit", "^q", "Quit")
WINDOW = [key("chat.join_room", "f6", "Join room"), key("chat.nudge", "^g", "Nudge"),
          key("chat.switch_pane", "f2", "Buddies/Chat"), key("chat.close", "f4", "Close"),
          key("chat.add_contact", "f5", "Add contact")]


def names(keys: list[Key]) -> list[str]:
    return [k.description for k in keys]


def test_wide_keeps_every_label_in_order_with_quit_last():
    shown = fit_keys([QUIT, key("buddy.remove", "del", "Remove"), *WINDOW], 200)
    assert names(shown) == ["Nudge", "Buddies/Chat", "Close", "Add contact", "Join room",
                            "Remove", "Quit"]


def test_short_labels_before_dropping_anything():
    full = sum(k.width for k in [*WINDOW, QUIT])
    shown = fit_keys([*WINDOW, QUIT], full - 1)
    assert names(shown) == ["Nudge", "Buddies/Chat", "Close", "Add", "Join", "Quit"]


def test_least_useful_go_first_and_quit_stays():
    shown = fit_keys([*WINDOW, QUIT], 40)
    assert names(shown) == ["Nudge", "Buddies/Chat", "Quit"]
    assert sum(k.width for k in shown) <= 40
    assert names(fit_keys([*WINDOW, QUIT], 5)) == ["Quit"]


async def test_the_footer_refits_when_the_terminal_narrows():
    from textual.widgets._footer import FooterKey

    from tests.tui.test_snapshots import seeded_app

    app = seeded_app()
    async with app.run_test(size=(120, 24)) as pilot:
        await app.open_dm("bob")

        def shown() -> list[str]:
            return [k.description for k in app.screen.query(FooterKey)]

        await pilot.pause()
        assert shown() == ["Nudge", "Buddies/Chat", "Close", "Add contact", "Join room", "Quit",
                           "palette"]
        await pilot.resize_terminal(80, 24)
        for _ in range(50):  # the footer recomposes after the resize has been laid out
            if "Add" in shown():
                break
            await pilot.pause(0.02)
        assert shown() == ["Nudge", "Buddies/Chat", "Close", "Add", "Join", "Quit", "palette"]
        keys = list(app.screen.query(FooterKey))
        assert keys[-2].region.right <= keys[-1].region.x  # ^q is not under ^p


async def test_a_dm_whose_account_is_gone_offers_no_nudge_until_the_handle_is_back():
    from textual.widgets import Button
    from textual.widgets._footer import FooterKey

    from cfm_common import rules
    from cfm_common.frames import Member, Presence
    from tests.tui.test_snapshots import seeded_app

    app = seeded_app()
    dm = rules.dm_room("alice", "bob")
    async with app.run_test(size=(120, 24)) as pilot:
        await app.open_dm("bob")
        await pilot.pause()

        def offered() -> tuple[bool, bool]:
            footer = "Nudge" in [k.description for k in app.screen.query(FooterKey)]
            return footer, app.main.active_view().query_one(".nudge", Button).display

        assert offered() == (True, True)
        await app.apply_update(app.state.apply(Member(dm, "bob", "leave")))
        await pilot.pause()
        assert offered() == (False, False)
        await app.apply_update(app.state.apply(Presence("bob", "Bob", "online", "", False)))
        await pilot.pause()
        assert offered() == (True, True)
