"""``cfm bot ai``: run one AI contact against any cfm server; ``--list`` shows the cast.

Settings come from, lowest first: defaults, the ``[ai]`` table of ``--config``, the
``CFM_AI_*`` environment variables, these flags. The running parts (websockets, httpx)
are imported inside the command so ``cfm --help`` stays fast.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from cfm_common.rules import DEFAULT_PORT, WS_PATH

app = typer.Typer(help="Run bots (AI contacts) against a cfm server.", no_args_is_help=True,
                  add_completion=False)

DEFAULT_SERVER = f"ws://127.0.0.1:{DEFAULT_PORT}{WS_PATH}"
EXIT_CONFIG = 2


def _fail(message: str, code: int = EXIT_CONFIG) -> typer.Exit:
    typer.echo(f"cfm bot ai: {message}", err=True)
    return typer.Exit(code)


def _ai_table(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise _fail(f"cannot read {path}: {exc}") from None
    table = document.get("ai")
    if table is not None and not isinstance(table, dict):
        raise _fail(f"{path}: [ai] must be a table")
    return table


@app.command("ai")
def ai(
    server: Annotated[str, typer.Option("--server", envvar="CFM_SERVER", help="ws://host:port/ws of the cfm server.")] = DEFAULT_SERVER,  # noqa: E501
    persona: Annotated[str | None, typer.Option("--persona", help="The handle of the persona to run (see --list).")] = None,  # noqa: E501
    list_personas: Annotated[bool, typer.Option("--list", help="List the personas and exit.")] = False,  # noqa: E501
    backend: Annotated[str | None, typer.Option(help="offline (default), openai or workers-ai.")] = None,  # noqa: E501
    base_url: Annotated[str | None, typer.Option(help="The backend's base URL, e.g. http://127.0.0.1:11434/v1 for Ollama.")] = None,  # noqa: E501
    model: Annotated[str | None, typer.Option(help="The model name (default: llama3.2 / @cf/meta/llama-3.2-3b-instruct).")] = None,  # noqa: E501
    account_id: Annotated[str | None, typer.Option(help="Cloudflare account id (workers-ai). Env: CFM_AI_ACCOUNT_ID.")] = None,  # noqa: E501
    stream: Annotated[bool | None, typer.Option("--stream/--no-stream", help="Read openai replies as server-sent events.")] = None,  # noqa: E501
    config: Annotated[Path | None, typer.Option("--config", help="A TOML file whose \\[ai] table holds settings and \\[\\[ai.personas]].")] = None,  # noqa: E501
    token_dir: Annotated[Path | None, typer.Option(help="Where the persona keeps its token and its memory of people (default: the SDK's per-server token file, and no memory across runs).")] = None,  # noqa: E501
    log_level: Annotated[str, typer.Option(help="Logging level: debug, info, warning, error.")] = "info",  # noqa: E501
) -> None:
    """Run one AI contact (a persona) against a cfm server, until Ctrl+C or SIGTERM.

    An API key comes from CFM_AI_API_KEY only (never a flag: it stays out of `ps`).
    """
    from cfm_server.ai.config import AIConfig, AIConfigError

    try:
        ai_config = AIConfig.from_sources(
            _ai_table(config), os.environ, backend=backend, base_url=base_url, model=model,
            account_id=account_id, stream=stream,
        )
    except AIConfigError as exc:
        raise _fail(str(exc)) from None
    if list_personas:
        _print_cast(ai_config)
        return
    if persona is None:
        raise _fail("which persona? Give --persona HANDLE (see --list)")
    try:
        chosen = ai_config.persona(persona)
    except AIConfigError as exc:
        raise _fail(str(exc)) from None

    import asyncio
    import logging

    from cfm_common.procsignals import ProcessSignals

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # From here to the process's exit a SIGTERM or SIGINT stops it cleanly (status 0), at
    # whatever moment it lands: while the persona signs in, during its stop, after.
    signals = ProcessSignals(reload=False)
    try:
        code = asyncio.run(_run(ai_config, chosen, server, token_dir, signals))
    finally:
        signals.release(ignore=signals.stop_requested)
    raise typer.Exit(code)


def _print_cast(ai_config: Any) -> None:
    width = max(len(p.handle) for p in ai_config.personas)
    for p in ai_config.personas:
        typer.echo(f"{p.handle:<{width}}  {p.status:<6}  {p.display} — {p.psm}")


async def _run(ai_config: Any, persona: Any, server: str, token_dir: Path | None,
               signals: Any) -> int:
    import asyncio

    from cfm_common.procsignals import unless_stopped
    from cfm_server.ai.service import start_ai_contacts

    stop = asyncio.Event()
    signals.attach(asyncio.get_running_loop(), stop=stop.set)
    starting = await unless_stopped(
        start_ai_contacts(ai_config, server, token_dir=token_dir, personas=(persona,)), stop)
    if starting is None:  # its start undone (start_ai_contacts signs them out)
        typer.echo(f"cfm bot ai: {persona.handle} stopped before it started", err=True)
        return 0
    cast = starting.result()
    if not cast.contacts:
        typer.echo(f"cfm bot ai: {persona.handle} could not sign in to {server}", err=True)
        await cast.stop()
        return 1
    typer.echo(f"{persona.handle} is online at {server} ({ai_config.backend} backend); "
               "Ctrl+C to stop", err=True)
    closed = asyncio.ensure_future(cast.contacts[0].bot.wait_closed())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for task in (closed, stopped):
        task.cancel()
    await cast.stop()
    return 0 if stop.is_set() else 1
