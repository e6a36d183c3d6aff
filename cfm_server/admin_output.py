"""What ``cfm admin`` prints, the same for a data dir and for a cluster's Redis: the
users table, the stats, the usage, a new token handed over, a removal's plan; and its errors."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from cfm_server.accounts import Stats, UserInfo
    from cfm_server.usage import Usage

EXIT_ERROR = 2
EXIT_DECLINED = 1


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    typer.echo(f"cfm admin: {message}", err=True)
    return typer.Exit(code)


def hand_over(data_dir: Path | None, key: str, token: str, token_file: Path | None, url: str,
               what: str) -> None:
    """Show (or say where) the token, and how its owner installs it."""
    from cfm_common import tokens

    if token_file is None:
        typer.echo(f"{what} (shown once):\n")
        typer.echo(f"  {token}\n")
    else:
        typer.echo(f"{what}: written to {token_file} (mode 0600).")
    # cfm chat's own local server keeps its users' tokens by name (cfm_tui/app.py).
    if data_dir is not None and \
            data_dir.resolve() == (tokens.data_dir() / "embedded").resolve():
        path = data_dir / "tokens" / f"{key}.token"
        typer.echo(f"This is cfm chat's own local server: it reads {key}'s token from\n"
                   f"  {path}")
        return
    path = tokens.default_token_file(url, key)
    if token_file is not None:
        typer.echo(f"{key} can sign in with that file as it is:\n"
                   f"  cfm chat --server {url} --name {key} --token-file {token_file.name}")
    typer.echo(("Or " if token_file is not None else "") +
               f"{key} installs it by writing it into the token file that "
               f"cfm chat --server {url}\nand bots read on their machine (one line, "
               f"mode 0600; it replaces what is there):\n  {home_relative(path)}\n"
               f"The file is named after the server URL as the user types it (another "
               f"address, another file: see --server); a bot started with its own "
               f"token_file= or token= takes it there instead.")


def describe(plan: Any) -> str:
    """What removing a user will do (``plan``: an ``accounts.Removal``)."""
    kept = ("messages" if plan.messages_kept is None  # not counted on a cluster
            else plural(plan.messages_kept, "message"))
    lines = [
        f"{plan.name}: {plural(plan.memberships, 'room membership')}, "
        f"{plural(plan.contacts, 'contact entry', 'contact entries')} (its own list and "
        f"others') and {plural(plan.reads, 'read mark')} will be deleted.",
        f"Its {kept} in group rooms will be kept, so no history gets a hole; they still "
        f"show {plan.name!r} as the sender, also once someone new claims the handle.",
    ]
    if plan.dms:
        lines.append(
            f"Its {plural(len(plan.dms), 'direct conversation')} "
            f"({plural(plan.dm_messages, 'message')}"
            f", both sides) will be archived where no client can open them, so a new "
            f"{plan.name} cannot read them: {', '.join(plan.dms)}.")
    return "\n".join(lines)


def print_users(rows: Sequence[UserInfo], as_json: bool) -> None:
    """``cfm admin users``' table (or JSON); a count not made shows as -."""
    import json

    if as_json:
        typer.echo(json.dumps([row.as_dict() for row in rows], ensure_ascii=False, indent=1))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # Piped (not a terminal): wide enough that nothing but long display names is cut.
    console = Console(width=None if sys.stdout.isatty() else 120)
    table = Table(title=f"{len(rows)} users", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    # "chosen status": the status the user last set (kept while signed out), which a
    # bare "status" of "online" would pass off as their presence now.
    headers = ("handle", "display", "kind", "chosen status", "created", "rooms", "DMs",
               "sent")
    cells = [[row.name, row.display, row.kind, row.status, row.created, str(row.rooms),
              str(row.dms), "-" if row.messages is None else str(row.messages)] for row in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
    # Only the display name gives way on a narrow terminal (3: a column's padding).
    room = max(len(headers[1]), console.width - sum(w + 3 for w in widths) + widths[1] - 1)
    for row_cells in cells:
        if len(row_cells[1]) > room:
            row_cells[1] = row_cells[1][: room - 1] + "…"
    for i, header in enumerate(headers):
        table.add_column(header, no_wrap=True, justify="right" if i >= 5 else "left")
    for row_cells in cells:
        table.add_row(*row_cells)
    console.print(table)


def print_stats(result: Stats, as_json: bool, storage: str) -> None:
    """``cfm admin stats``' lines (or JSON); ``storage``: the last line, where the data is."""
    import json

    if as_json:
        typer.echo(json.dumps(result.as_dict()))
        return
    typer.echo(f"users     {result.users} ({plural(result.persons, 'person', 'people')}, "
               f"{plural(result.bots, 'bot')})")
    typer.echo(f"rooms     {plural(result.rooms, 'group room')}, "
               f"{plural(result.dms, 'direct conversation')}, {result.archived} archived")
    typer.echo(f"messages  {result.messages}")
    typer.echo(storage)


def print_usage(result: Usage, as_json: bool, counted: str) -> None:
    """``cfm admin usage``'s lines (or JSON); ``counted``: what its bytes are."""
    import json

    if as_json:
        typer.echo(json.dumps(result.as_dict(), ensure_ascii=False))
        return
    typer.echo(f"messages  {result.total_messages}, {size(result.total_bytes)} ({counted})")
    for title, rows in (("rooms", result.rooms), ("users (messages sent)", result.users)):
        typer.echo(f"\n{title}")
        width = max((len(r.name) for r in rows), default=0)
        for row in rows:
            typer.echo(f"  {row.name:<{width}}  {size(row.bytes):>10}  "
                       f"{plural(row.messages, 'message')}")


def plural(count: int, singular: str, many: str | None = None) -> str:
    return f"{count} {singular if count == 1 else many or singular + 's'}"


def home_relative(path: Path) -> str:
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
