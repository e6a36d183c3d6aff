"""Alt+1…9 as the terminal sends them: ESC and the digit.

xterm (with ``metaSendsEscape``), tmux, GNOME Terminal, Konsole, kitty's legacy mode and
most others send Alt+digit as ESC followed by the digit. Textual reads those sequences
as the characters Option+digit types on a Mac (``ESC 1`` → ``¡``), for WezTerm on macOS,
so under tmux Alt+1 typed ``¡`` into the composer instead of switching tabs. cfm binds
Alt+1…9 to its tabs, so the sequences are read as Alt+digit again. (A Mac keyboard's
Option+1 still types ``¡`` wherever the terminal sends the character itself.)
"""

from __future__ import annotations

from textual._ansi_sequences import ANSI_SEQUENCES_KEYS

ALT_DIGIT_SEQUENCES = tuple(f"\x1b{digit}" for digit in "0123456789")


def read_esc_digit_as_alt_digit() -> None:
    """Make Textual's input parser turn ESC+digit into ``alt+<digit>`` key events."""
    for sequence in ALT_DIGIT_SEQUENCES:
        ANSI_SEQUENCES_KEYS.pop(sequence, None)
