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
