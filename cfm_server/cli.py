"""``cfm serve``: the server helper replaces this placeholder."""

import typer

app = typer.Typer(help="Run the cfm relay server.")


@app.callback(invoke_without_command=True)
def serve() -> None:
    """Run the cfm relay server (not yet implemented)."""
    raise typer.Exit(1)
