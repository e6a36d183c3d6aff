"""The notification policy: what each :class:`Notice` becomes for the user.

A toast, a desktop notification (OSC 9, when the user turned them on), the terminal
bell (when on), a shaking window — or nothing, when the conversation is already on
screen. Toasts for one conversation come at most every few seconds, so a burst of
offline messages is one toast. No Textual here: the app carries out each
:class:`Alert` (tests/tui/test_controller_alerts.py checks the decisions).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cfm_common import rules
from cfm_tui import render
from cfm_tui.config import ChatConfig
from cfm_tui.emoticons import replace_emoticons
from cfm_tui.sanitize import clean_line
from cfm_tui.state import ChatState, Notice, NoticeKind

TOAST_EVERY_S = 3.0  # per conversation, so a burst of offline messages is one toast
PREVIEW_WORDS = 8


@dataclass(frozen=True, slots=True)
class Alert:
    """What to do for one notice; the empty Alert does nothing."""

    text: str | None = None  # a toast
    warning: bool = False  # shown as a warning
    desktop: bool = False  # the toast as a desktop notification too
    ring: bool = False  # the terminal bell
    shake: bool = False  # the window shakes (a nudge)


def _preview(text: str) -> str:
    """The first words, emoticons as the transcript shows them (replaced before the cut,
    so a code is never split)."""
    words = replace_emoticons(clean_line(text)).split()
    return " ".join(words[:PREVIEW_WORDS]) + ("…" if len(words) > PREVIEW_WORDS else "")


class NotificationPolicy:
    def __init__(self, config: ChatConfig, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config  # read at each decision: the bell and desktop toggles
        self.clock = clock
        self._last_toast: dict[str, float] = {}

    def decide(self, notice: Notice, state: ChatState, *, in_view: bool = False) -> Alert:
        """``in_view``: the notice's conversation is on screen, in a focused window."""
        who = clean_line(state.label(notice.who))
        if notice.kind is NoticeKind.NUDGE and notice.room:
            # Always shaken and rung: the nudge is the point, seen or not.
            if in_view:
                return Alert(shake=True, ring=self.config.bell)
            return self._toast(f"{who} just sent you a nudge!", notice.room, shake=True,
                               ring=self.config.bell)
        if notice.kind is NoticeKind.MENTION and notice.room:
            if in_view:
                return Alert()
            # Always a toast and the bell, past the per-conversation limit: a busy room
            # whose other messages make at most a toast every few seconds still tells
            # the user each time they are named.
            where = f" in {notice.room}" if rules.is_group_room(notice.room) else ""
            return Alert(f"{who} mentioned you{where}: {_preview(notice.text)}",
                         desktop=self.config.desktop_notifications, ring=self.config.bell)
        if notice.kind is NoticeKind.MESSAGE and notice.room:
            if in_view:
                return Alert()
            # Rung with its toast only: a burst of messages rings once.
            return self._toast(f"{who} says: {_preview(notice.text)}", notice.room,
                               ring=self.config.bell, ring_only_with_toast=True)
        if notice.kind is NoticeKind.SIGNED_IN:
            return self._toast(f"{who} has just signed in")
        if notice.kind is NoticeKind.ADDED_YOU:
            answer = (" F3 to answer: Add back, Block or Not now."
                      if notice.who in state.added_you else "")
            who = render.label_with_handle(notice.who, state)
            return self._toast(f"{who} has added you to their contact list.{answer}",
                               ring=self.config.bell)
        if notice.kind is NoticeKind.ERROR:
            return Alert(clean_line(notice.text), warning=True)
        if notice.kind is NoticeKind.INFO:
            return Alert(clean_line(notice.text))
        return Alert()

    def _toast(self, text: str, key: str | None = None, *, shake: bool = False,
               ring: bool = False, ring_only_with_toast: bool = False) -> Alert:
        """A toast, unless one for ``key`` was shown less than TOAST_EVERY_S ago."""
        if key is not None:
            now = self.clock()
            if now - self._last_toast.get(key, -TOAST_EVERY_S) < TOAST_EVERY_S:
                return Alert(shake=shake, ring=ring and not ring_only_with_toast)
            self._last_toast[key] = now
        return Alert(text, desktop=self.config.desktop_notifications, ring=ring, shake=shake)
