"""``cfm chat``: the TUI helper replaces this placeholder."""

import typer

app = typer.Typer(help="Chat in the terminal.")


@app.callback(invoke_without_command=True)
def chat() -> None:
    """Open the messenger (not yet implemented)."""
    raise typer.Exit(1)
