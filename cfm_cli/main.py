"""``cfm``: composes each package's sub-commands under one root.

Each package owns its ``typer.Typer()``; this module only adds them. Sub-command modules
import their heavy dependencies (Textual, the server) inside the command functions, so
``cfm --version`` and ``cfm --help`` stay fast.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperOption

from cfm_common import PROTOCOL_VERSION, __version__

app = typer.Typer(
    name="cfm",
    help="MSN Messenger reborn for the terminal: chat, run a server, write bots.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # -h as well as --help, for every sub-command too (click passes it down).
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _switches_show_no_value() -> None:
    """Typer's help puts a value placeholder beside every option, ``--no-ai <bool>``
    for a switch too, which reads as "needs a value": a switch shows none."""
    original = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else original(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_switches_show_no_value()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cfm {__version__} (protocol v{PROTOCOL_VERSION})")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """cfm: a terminal messenger in the spirit of MSN Messenger."""


def _add_subcommands() -> None:
    from cfm_bench.cli import app as bench_app
    from cfm_server.admin_cli import app as admin_app
    from cfm_server.ai.cli import app as bot_app
    from cfm_server.cli import app as serve_app
    from cfm_tui.cli import app as chat_app

    for name, sub in (("serve", serve_app), ("chat", chat_app), ("bench", bench_app)):
        _add_command(name, sub)
    app.add_typer(bot_app, name="bot")
    app.add_typer(admin_app, name="admin")


def _add_command(name: str, sub: typer.Typer) -> None:
    """Register a package's one-command Typer (its callback) as a plain command.

    Added as a group it would advertise ``cfm serve [OPTIONS] COMMAND [ARGS]...`` in its
    usage line although it has no sub-commands.
    """
    info = sub.registered_callback
    assert info is not None and info.callback is not None, name
    app.command(name)(info.callback)


_add_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
