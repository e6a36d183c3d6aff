"""``cfm bot``: the AI helper replaces this placeholder."""

import typer

app = typer.Typer(help="Run bots (AI contacts) against a cfm server.", no_args_is_help=True)


@app.command("ai")
def ai() -> None:
    """Run one AI contact (not yet implemented)."""
    raise typer.Exit(1)
