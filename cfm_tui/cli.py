"""``cfm chat``: open the messenger (Textual is imported only when the command runs)."""

from __future__ import annotations

from typing import Annotated

import typer

from cfm_common import rules
from cfm_tui import slash

app = typer.Typer(help="Chat in the terminal: the MSN Messenger window.")


def parse_status(value: str) -> str:
    """A protocol status (``brb``) or its label in any case (``be-right-back``)."""
    status = slash.parse_status(value)
    if status is None:
        choices = ", ".join(sorted(rules.CLIENT_STATUSES))
        raise typer.BadParameter(f"{value!r} is not a status; one of {choices}")
    return status


@app.callback(invoke_without_command=True)
def chat(
    server: Annotated[str | None, typer.Option(
        "--server", envvar="CFM_SERVER",
        help="ws://host:port/ws of a cfm server. Default: the last one used, else a "
             "local server started inside this process.")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Your handle; given, the sign-in screen is skipped.")] = None,
    status: Annotated[str | None, typer.Option(
        "--status", help="online, busy, away, brb, phone, lunch or invisible.")] = None,
    display: Annotated[str | None, typer.Option(
        "--display", help="Your display name.")] = None,
) -> None:
    """Open the messenger."""
    from cfm_tui.launch import run_chat

    chosen = parse_status(status) if status is not None else None
    if name is not None and not rules.is_valid_name(name):
        from cfm_tui.session import HANDLE_RULE

        raise typer.BadParameter(f"{name!r} is not a valid handle. {HANDLE_RULE}",
                                 param_hint="--name")
    raise typer.Exit(run_chat(server=server, name=name, status=chosen, display=display))
