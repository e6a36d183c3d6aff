"""``cfm bench``: the bench helper replaces this placeholder."""

import typer

app = typer.Typer(help="Measure a cfm server: fan-out, latency, capacity.")


@app.callback(invoke_without_command=True)
def bench() -> None:
    """Run a benchmark scenario (not yet implemented)."""
    raise typer.Exit(1)
