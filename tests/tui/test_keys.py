"""Alt+digit as terminals send it (ESC, then the digit) reaches cfm chat as Alt+digit."""

from __future__ import annotations

from textual._xterm_parser import XTermParser

from cfm_tui.app import ChatApp


def keys_read(data: str) -> list[str]:
    parser = XTermParser()
    events = [*parser.feed(data), *parser.feed("")]  # "" ends the input: a lone ESC is ESC
    return [event.key for event in events]


def test_esc_digit_is_alt_digit_once_the_app_exists():
    ChatApp()
    assert keys_read("\x1b1") == ["alt+1"]
    assert keys_read("\x1b9hi") == ["alt+9", "h", "i"]
    # What else ESC starts is unchanged: Alt+x, arrows, a lone Escape, and the
    # characters themselves (a Mac's Option+1 where the terminal sends "¡").
    assert keys_read("\x1bx") == ["alt+x"]
    assert keys_read("\x1b[A") == ["up"]
    assert keys_read("\x1b") == ["escape"]
    assert keys_read("¡") == ["inverted_exclamation_mark"]
