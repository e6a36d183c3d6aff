"""The "msn" theme: MSN Messenger's blues on white, the orange of its nudges."""

from __future__ import annotations

from textual.theme import Theme

MSN_THEME = Theme(
    name="msn",
    primary="#1f5fa8",
    secondary="#5c9ded",
    accent="#f5a623",
    warning="#f5a623",
    error="#e0301e",
    success="#3cb043",
    foreground="#1b2838",
    background="#dfeaf7",
    surface="#ffffff",
    panel="#c9dcf2",
    dark=False,
)
