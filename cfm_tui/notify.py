"""Desktop notifications through the terminal: OSC 9, and tmux's passthrough for it.

Nothing here writes anything: these functions build the bytes, the app hands them to
its driver. Untrusted text is cleaned first, so a name like ``"\\x07\\x1b]0;pwned"``
can neither end the sequence early nor start one of its own.
"""

from __future__ import annotations

from cfm_tui.sanitize import for_escape_sequence

BEL = "\x07"
ESC = "\x1b"


def osc9(text: str) -> str:
    """``ESC ] 9 ; text BEL``: iTerm2, kitty, WezTerm, Windows Terminal show it."""
    return f"{ESC}]9;{for_escape_sequence(text)}{BEL}"


def tmux_passthrough(sequence: str) -> str:
    """Wrap a sequence in tmux's DCS passthrough (every ESC inside doubled)."""
    return f"{ESC}Ptmux;{sequence.replace(ESC, ESC + ESC)}{ESC}\\"


def desktop_notification(text: str, *, in_tmux: bool) -> str:
    sequence = osc9(text)
    return tmux_passthrough(sequence) if in_tmux else sequence
