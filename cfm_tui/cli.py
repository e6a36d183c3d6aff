"""``cfm chat``: open the messenger (Textual is imported only when the command runs)."""

from __future__ import annotations

from pathlib import Path
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


def parse_invite(value: str) -> str | None:
    """An invite code as pasted (surrounding blanks dropped); None for an empty one."""
    code = value.strip()
    if len(code) > rules.MAX_INVITE or any(not ch.isprintable() for ch in code):
        raise typer.BadParameter(
            f"that is not an invite code (at most {rules.MAX_INVITE} characters, "
            f"like 3f9a1c2e-0-1-9b7c2e4f1a0d3c5b6e7f)", param_hint="--invite")
    return code or None


def parse_servers(values: list[str] | None) -> str | None:
    """``--server`` given once or more, each maybe several comma-separated addresses
    (the nodes of one cluster): one comma-separated list of ``ws://`` URLs, or None
    (not given, or blank: the last server used)."""
    from cfm_tui.session import server_urls

    given = [value for value in values or [] if value.strip()]
    if not given:
        return None
    try:
        urls = [url for value in given for url in server_urls(value)]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--server") from None
    return ",".join(dict.fromkeys(urls))


@app.callback(invoke_without_command=True)
def chat(
    # Defaults and env vars are written as `cfm serve` writes them: "(default: …; env …)".
    server: Annotated[list[str] | None, typer.Option(
        "--server", envvar="CFM_SERVER", show_envvar=False, metavar="URL",
        help="A cfm server, ws://host:port/ws (host:port will do). Several (the nodes of "
             "one cluster), comma-separated or --server repeated, are tried in turn. "
             "(default: the last one used, else a local server started inside this "
             "process; env CFM_SERVER)")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", metavar="NAME",
        help="Your handle; given, the sign-in screen is skipped. (default: the sign-in "
             "screen, with the last handle used)")] = None,
    status: Annotated[str | None, typer.Option(
        "--status", metavar="STATUS",
        help="online, busy, away, brb, phone, lunch or invisible. (default: the last one "
             "chosen)")] = None,
    display: Annotated[str | None, typer.Option(
        "--display", metavar="NAME",
        help="Your display name. (default: the last one used)")] = None,
    # No envvar: a code is for one sign-up, and a lingering CFM_INVITE would spend a
    # many-use code on every new handle signed up from that shell.
    invite: Annotated[str | None, typer.Option(
        "--invite", metavar="CODE",
        help="An invite code from the server's operator, for your first sign-in on a "
             "server that takes new users by invite. Not saved.")] = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", metavar="PATH", dir_okay=False,
        help="The token file to sign in with (e.g. the one `cfm admin add-user` or "
             "`reset-token` wrote); a refreshed token is written back to it. Not saved.")] = None,
) -> None:
    """Open the messenger."""
    from cfm_tui.launch import run_chat

    chosen = parse_status(status) if status is not None else None
    if name is not None and not rules.is_valid_name(name):
        from cfm_tui.session import handle_refusal

        raise typer.BadParameter(f"{name!r} is not a valid handle. {handle_refusal(name)}",
                                 param_hint="--name")
    code = parse_invite(invite) if invite is not None else None
    servers = parse_servers(server)
    raise typer.Exit(run_chat(server=servers, name=name, status=chosen, display=display,
                              invite=code, token_file=token_file))
