"""The sign-in window: handle, display name, status, server; errors shown inline.

The invite code field shows only when it matters: the code came with ``--invite``, or
the server refused a new handle for want of a (good) code.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Center, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from cfm_common import rules
from cfm_tui.session import handle_refusal
from cfm_tui.slash import display_refusal
from cfm_tui.widgets.me_header import STATUS_CHOICES

LOGO = "cfm Messenger"
TAGLINE = "MSN Messenger, reborn for the terminal"
# Characters of error above which the tagline makes room for two more lines (about
# four lines of the box's 52 columns fit without that).
LONG_ERROR = 160
# Terminals shorter than this get the compact form (no tagline, no gaps): 60x20 fits.
SHORT_BELOW = 24


@dataclass(frozen=True, slots=True)
class SignInForm:
    name: str
    display: str
    status: str
    server: str | None  # None: the embedded local server
    invite: str | None = None  # for a new handle on a server that asks for one


@dataclass(frozen=True, slots=True)
class SignInError:
    """Why signing in failed, and the field to fix (``name``, ``server``, ``invite``)."""

    text: str
    field: str | None = None


class SignInScreen(Screen[None]):
    class Submitted(Message):
        def __init__(self, form: SignInForm) -> None:
            super().__init__()
            self.form = form

    def __init__(self, *, name: str = "", display: str = "", status: str = "online",
                 server: str = "", invite: str = "") -> None:
        super().__init__()
        self._defaults = (name, display, status if status in rules.CLIENT_STATUSES else "online",
                          server)
        self._invite = invite
        self.busy = False

    def compose(self) -> ComposeResult:
        name, display, status, server = self._defaults
        with Center(), Vertical(id="signin-box"):
            yield Static(Text(LOGO), id="signin-logo")
            yield Static(Text(TAGLINE), id="signin-tagline")
            yield Label("Handle:")
            # No max_length: a longer handle is refused with the limit, never cut.
            yield Input(name, placeholder="e.g. alice", id="signin-name", compact=True)
            yield Label("Display name:")
            yield Input(display, placeholder="how others see you (optional)",
                        id="signin-display", compact=True)
            yield Label("Status:")
            yield Select(STATUS_CHOICES, allow_blank=False, value=status, id="signin-status",
                         compact=True)
            yield Label("Server:")
            yield Input(server, placeholder="empty: a local server on this machine",
                        id="signin-server", compact=True)
            yield Label("Invite code (for a new account):", classes="invite")
            yield Input(self._invite, placeholder="from the server's operator",
                        id="signin-invite", classes="invite", max_length=rules.MAX_INVITE,
                        compact=True)
            yield Static(id="signin-error")
            yield Button("Sign In", id="signin-button", variant="primary", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        if self._invite:
            self.show_invite()
        # A remembered handle: Enter signs in again (Shift+Tab goes back to the fields).
        target = "#signin-button" if self._defaults[0] else "#signin-name"
        self.query_one(target).focus()

    def on_resize(self, event: events.Resize) -> None:
        self.query_one("#signin-box").set_class(event.size.height < SHORT_BELOW, "-short")

    def show_error(self, message: str, field: str | None = None) -> None:
        """The error under the form; the focus goes to the field to fix, if one is."""
        self.busy = False
        self.query_one("#signin-error", Static).update(Text(message))
        # A long error (a token path in it) takes the tagline's lines: still fits 80x24.
        self.query_one("#signin-box").set_class(len(message) > LONG_ERROR, "-long-error")
        self.query_one("#signin-button", Button).disabled = False
        if field == "invite":
            self.show_invite()
        if field is not None:
            target = self.query_one(f"#signin-{field}", Input)
            # At once, with the error (``focus()`` waits for the next loop turn: a key
            # typed in between would go to another field), and again once the screen is
            # mounted, since on_mount focuses its default field.
            self.set_focus(target)
            target.focus()

    def show_invite(self) -> None:
        """Reveal the invite code field (it stays for the rest of this screen)."""
        self.query_one("#signin-box").add_class("-with-invite")
        for widget in self.query(".invite"):
            widget.display = True  # at once, not at the next restyle: it may get the focus

    @property
    def invite_shown(self) -> bool:
        return self.query_one("#signin-box").has_class("-with-invite")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.submit()

    def submit(self) -> None:
        if self.busy:
            return
        name = self.query_one("#signin-name", Input).value.strip()
        refusal = handle_refusal(name)
        if refusal is not None:
            self.show_error(refusal, "name")
            return
        display = self.query_one("#signin-display", Input).value.strip()
        refusal = display_refusal(display)
        if refusal is not None:
            self.show_error(refusal, "display")
            return
        status = self.query_one("#signin-status", Select).value
        server = self.query_one("#signin-server", Input).value.strip() or None
        invite = self.query_one("#signin-invite", Input).value.strip() if self.invite_shown else ""
        form = SignInForm(
            name=name,
            display=display,
            status=status if isinstance(status, str) else "online",
            server=server,
            invite=invite or None,
        )
        self.busy = True
        self.query_one("#signin-error", Static).update(Text("Signing in…"))
        self.query_one("#signin-button", Button).disabled = True
        self.post_message(self.Submitted(form))
