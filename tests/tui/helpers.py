"""Helpers for driving ChatApp instances in Pilot tests against a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from textual import events
from textual.css.query import NoMatches
from textual.keys import _character_to_key
from textual.pilot import Pilot
from textual.widgets import Static

from cfm_tui.app import ChatApp, ChatOptions
from cfm_tui.config import ChatConfig
from cfm_tui.widgets.buddy_list import BuddyList
from cfm_tui.widgets.conversation_view import ConversationView

SIZE = (120, 40)
WAIT_S = 10.0


def make_app(tmp_path: Path, url: str | None, name: str | None, **options: object) -> ChatApp:
    """An app whose config and data live in ``tmp_path/<name>``."""
    home = tmp_path / (name or "anon")
    config = ChatConfig(idle_minutes=0)
    opts = ChatOptions(server=url, name=name, data_dir=home / "data",
                       config_path=home / "chat.json", config=config, animations=False)
    for key, value in options.items():
        setattr(opts, key, value)
    return ChatApp(opts)


@asynccontextmanager
async def alice_and_bob(tmp_path: Path, url: str
                        ) -> AsyncIterator[tuple[ChatApp, Pilot, ChatApp, Pilot]]:
    """Two apps, "alice" and "bob", signed in to ``url`` with their windows built."""
    alice = make_app(tmp_path, url, "alice")
    bob = make_app(tmp_path, url, "bob")
    async with alice.run_test(size=SIZE) as pa, bob.run_test(size=SIZE) as pb:
        await wait_until(pa, lambda: alice.main is not None, "alice signed in")
        await wait_until(pb, lambda: bob.main is not None, "bob signed in")
        yield alice, pa, bob, pb


async def wait_until(pilot: Pilot, condition: Callable[[], object], what: str,
                     timeout: float = WAIT_S) -> None:
    """Let the app run until ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await pilot.pause(0.02)


def plain(widget: Static) -> str:
    """The text a Static shows (markup never applies: we only give it Text)."""
    visual = widget.render()
    return getattr(visual, "plain", str(visual))


def _view_text(app: ChatApp, room: str, selector: str) -> str:
    """The text of one part of a conversation tab; "" while the tab is not built yet."""
    assert app.main is not None
    view = app.main.view_for(room)
    if view is None:
        return ""
    try:
        return plain(view.query_one(selector, Static))
    except NoMatches:
        return ""


def transcript_text(app: ChatApp, room: str) -> str:
    return _view_text(app, room, "#transcript-body")


def typing_text(app: ChatApp, room: str) -> str:
    return _view_text(app, room, ".conv-typing")


def members_text(app: ChatApp, room: str) -> str:
    """A group room's member panel."""
    return _view_text(app, room, ".conv-members")


def header_text(app: ChatApp, room: str) -> str:
    return _view_text(app, room, ".conv-header")


def buddy_rows(app: ChatApp) -> list[str]:
    """The buddy list's rows as they read."""
    assert app.main is not None
    buddies = app.main.query_one(BuddyList)
    return [str(getattr(o.prompt, "plain", o.prompt)) for o in buddies.options]


def active_view(app: ChatApp) -> ConversationView:
    assert app.main is not None
    view = app.main.active_view()
    assert view is not None
    return view


async def settle(*pilots: Pilot) -> None:
    for pilot in pilots:
        await pilot.pause()
    await asyncio.sleep(0)


def burst(app: ChatApp, *keys: str) -> None:
    """Queue key presses back to back, as a terminal delivers a paste tool's or a macro's
    keys in one read: no key waits for the app to handle the one before (``Pilot.press``
    does wait). A key is a character or a key name ("enter")."""
    for key in keys:
        character = key if len(key) == 1 else "\r" if key == "enter" else None
        name = _character_to_key(key) if len(key) == 1 else key
        event = events.Key(name, character)
        event.set_sender(app)
        app.post_message(event)


def send_text(app: ChatApp, room: str, text: str) -> None:
    """Send ``text`` in ``room`` as the composer's Enter does (through the controller)."""
    assert app.controller is not None
    app.show_now(app.controller.send_text(room, text))


def send_nudge(app: ChatApp, room: str) -> None:
    assert app.controller is not None
    app.show_now(app.controller.send_nudge(room))
