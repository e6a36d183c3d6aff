"""``cfm serve``: maps flags onto a ServerConfig and runs the Server until a signal.

Heavy imports (websockets, the hub, the stores) happen inside the command, so ``cfm
--version`` and ``cfm --help`` stay fast. Settings come from, lowest first: defaults,
the TOML file, ``CFM_*`` environment variables, these flags.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from cfm_common.procsignals import ProcessSignals

app = typer.Typer(help="Run the cfm relay server.", add_completion=False)

EXIT_CONFIG = 2


def _fail(message: str) -> typer.Exit:
    typer.echo(f"cfm serve: {message}", err=True)
    return typer.Exit(EXIT_CONFIG)


@app.callback(invoke_without_command=True)
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on. (default: 127.0.0.1; env CFM_HOST)")] = None,  # noqa: E501
    port: Annotated[int | None, typer.Option(help="Port (0 picks a free one). (default: 1863; env CFM_PORT)")] = None,  # noqa: E501
    data_dir: Annotated[Path | None, typer.Option(help="Where the SQLite database lives. (default: the user data dir, e.g. ~/.local/share/cfm; env CFM_DATA_DIR)")] = None,  # noqa: E501
    config: Annotated[Path | None, typer.Option("--config", help="A TOML settings file. (default: <user config dir>/cfm/server.toml if it exists)")] = None,  # noqa: E501
    store: Annotated[str | None, typer.Option(help="sqlite (durable) or memory (gone at exit). (default: sqlite)")] = None,  # noqa: E501
    no_ai: Annotated[bool, typer.Option("--no-ai", help="Do not start the built-in AI contacts.")] = False,  # noqa: E501
    ai_backend: Annotated[str | None, typer.Option(help="AI contacts' engine: offline (no network), openai (any OpenAI-compatible server) or workers-ai. (default: offline; env CFM_AI_BACKEND)")] = None,  # noqa: E501
    ai_base_url: Annotated[str | None, typer.Option(help="Base URL of the AI backend, e.g. http://127.0.0.1:11434/v1 for Ollama. (env CFM_AI_BASE_URL)")] = None,  # noqa: E501
    ai_model: Annotated[str | None, typer.Option(help="Model name for the AI backend. (env CFM_AI_MODEL; the API key only from CFM_AI_API_KEY)")] = None,  # noqa: E501
    ai_account_id: Annotated[str | None, typer.Option(help="Cloudflare account id for --ai-backend workers-ai. (env CFM_AI_ACCOUNT_ID)")] = None,  # noqa: E501
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate chain (PEM): serve wss:// and https://. Needs --tls-key. (env CFM_TLS_CERT)")] = None,  # noqa: E501
    tls_key: Annotated[Path | None, typer.Option(help="The private key (PEM) of --tls-cert. (env CFM_TLS_KEY)")] = None,  # noqa: E501
    trusted_proxy: Annotated[list[str] | None, typer.Option("--trusted-proxy", help="A reverse proxy (address or network) whose X-Forwarded-For names the client, for the per-IP cap (repeatable).")] = None,  # noqa: E501
    registration: Annotated[str | None, typer.Option(help="Who may claim a new handle: open (anyone), invite (with a code from cfm admin invite) or closed (accounts from cfm admin add-user). (default: open; env CFM_REGISTRATION)")] = None,  # noqa: E501
    no_rate_limits: Annotated[bool, typer.Option("--no-rate-limits", help="Lift the per-session token buckets and the per-IP connection cap.")] = False,  # noqa: E501
    max_frame: Annotated[int | None, typer.Option(help="Largest WebSocket message in bytes (bigger: close 1009). (default: 65536)")] = None,  # noqa: E501
    max_text: Annotated[int | None, typer.Option(help="Longest message text in characters. (default: 4096)")] = None,  # noqa: E501
    hello_timeout: Annotated[float | None, typer.Option(help="Seconds a connection has to send hello (else close 4001). (default: 10)")] = None,  # noqa: E501
    max_conns_per_ip: Annotated[int | None, typer.Option(help="Open connections allowed per client IP. (default: 32)")] = None,  # noqa: E501
    allowed_origin: Annotated[list[str] | None, typer.Option("--allowed-origin", help="A browser Origin allowed to connect (repeatable; none given: any).")] = None,  # noqa: E501
    send_buffer: Annotated[int | None, typer.Option(help="Bytes queued to one slow reader before it is closed with 1013. (default: 1048576)")] = None,  # noqa: E501
    replay_limit: Annotated[int | None, typer.Option(help="Most messages replayed by join{since}. (default: 500)")] = None,  # noqa: E501
    say_rate: Annotated[float | None, typer.Option(help="say frames per second per session. (default: 20)")] = None,  # noqa: E501
    say_burst: Annotated[int | None, typer.Option(help="say frames a session may send at once. (default: 60)")] = None,  # noqa: E501
    nudge_interval: Annotated[float | None, typer.Option(help="Seconds between two nudges to the same contact. (default: 5)")] = None,  # noqa: E501
    abuse_max: Annotated[int | None, typer.Option(help="Errors or rate-limit breaches within --abuse-window that close a session (4008). (default: 30)")] = None,  # noqa: E501
    abuse_window: Annotated[float | None, typer.Option(help="Seconds over which --abuse-max is counted. (default: 10)")] = None,  # noqa: E501
    ping_interval: Annotated[float | None, typer.Option(help="Seconds between keepalive pings (0: off). (default: 20)")] = None,  # noqa: E501
    ping_timeout: Annotated[float | None, typer.Option(help="Seconds to wait for a pong before dropping a connection. (default: 20)")] = None,  # noqa: E501
    shutdown_close_code: Annotated[int | None, typer.Option(help="Close code sent to clients on SIGTERM/SIGINT: 1012 (restart) or 1001 (going away). (default: 1012)")] = None,  # noqa: E501
    default_contact: Annotated[list[str] | None, typer.Option("--default-contact", help="A handle added to every new user's contact list (repeatable).")] = None,  # noqa: E501
    set_values: Annotated[list[str] | None, typer.Option("--set", help="Any other setting as KEY=VALUE (repeatable), e.g. --set typing_rate=5. See docs/server.md.")] = None,  # noqa: E501
    redis: Annotated[str | None, typer.Option("--redis", help="Run as one node of a cluster over this Redis (redis://HOST:PORT/DB; docs/cluster.md). (env CFM_REDIS_URL)")] = None,  # noqa: E501
    allow_redis_eviction: Annotated[bool, typer.Option("--allow-redis-eviction", help="Start even if Redis's maxmemory-policy may evict keys (and stored messages with them); refused otherwise. (env CFM_ALLOW_REDIS_EVICTION)")] = False,  # noqa: E501
    node_id: Annotated[str | None, typer.Option(help="This node's name in the cluster. (default: <hostname>-<port>; env CFM_NODE_ID)")] = None,  # noqa: E501
    metrics_listen: Annotated[str | None, typer.Option(help="Serve /metrics on this HOST:PORT (e.g. 127.0.0.1:9464) instead of the public port, which then answers 404. (env CFM_METRICS_LISTEN)")] = None,  # noqa: E501
    log_level: Annotated[str, typer.Option(envvar="CFM_LOG_LEVEL", help="Logging level: debug, info, warning, error.")] = "info",  # noqa: E501
    log_format: Annotated[str, typer.Option(envvar="CFM_LOG_FORMAT", help="Log lines as text or json (one object per line).")] = "text",  # noqa: E501
    log_file: Annotated[Path | None, typer.Option(envvar="CFM_LOG_FILE", help="Append the log to this file instead of stderr; reopened on SIGHUP (for logrotate).")] = None,  # noqa: E501
) -> None:
    """Run the cfm relay server: WebSocket at /ws, /healthz and /metrics on the same port."""
    from cfm_server.config import ConfigError, load_config, parse_assignment

    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "data_dir": data_dir,
        "store": store,
        "max_frame": max_frame,
        "max_text": max_text,
        "hello_timeout": hello_timeout,
        "max_conns_per_ip": max_conns_per_ip,
        "allowed_origins": allowed_origin or None,
        "send_buffer": send_buffer,
        "replay_limit": replay_limit,
        "say_rate": say_rate,
        "say_burst": say_burst,
        "nudge_interval": nudge_interval,
        "abuse_max": abuse_max,
        "abuse_window": abuse_window,
        "ping_interval": ping_interval,
        "ping_timeout": ping_timeout,
        "shutdown_close_code": shutdown_close_code,
        "default_contacts": default_contact or None,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "trusted_proxies": trusted_proxy or None,
        "registration": registration,
        "metrics_listen": metrics_listen,
        "redis_url": redis,
        "node_id": node_id,
    }
    if no_ai:
        overrides["ai_enabled"] = False
    if no_rate_limits:
        overrides["rate_limits"] = False
    if allow_redis_eviction:
        overrides["allow_redis_eviction"] = True
    try:
        for item in set_values or ():
            key, value = parse_assignment(item)
            overrides[key] = value
        ai_flags = {"backend": ai_backend, "base_url": ai_base_url, "model": ai_model,
                    "account_id": ai_account_id}
        settings = load_config(config, overrides, ai_flags=ai_flags)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    logs = _setup_logging(log_level, log_format, log_file)
    from cfm_common.eventloop import run_event_loop
    from cfm_common.procsignals import ProcessSignals

    # Before anything is announced: a supervisor may send SIGTERM the moment it reads
    # "listening", and that must be a clean shutdown, not the default death by signal;
    # SIGHUP (a reload) must never end the server. From here to the process's end.
    signals = ProcessSignals()
    try:
        _prepare_process()
        code = run_event_loop(_run(settings, logs, signals))  # uvloop when installed
    finally:
        signals.release(ignore=signals.stop_requested)  # (if _run did not)
        logs.close()
    if code:
        raise typer.Exit(code)


def _setup_logging(level: str, fmt: str, file: Path | None) -> Any:
    from cfm_server.logsetup import FORMATS, parse_level, setup_logging

    try:
        parse_level(level)
    except ValueError as exc:
        raise _fail(f"--log-level {exc}") from None
    if fmt not in FORMATS:
        raise _fail(f"--log-format must be text or json, not {fmt!r}")
    try:
        return setup_logging(level, fmt, file)
    except OSError as exc:
        raise _fail(f"cannot open the log file {file}: {exc.strerror or exc}; fix its "
                    f"directory's permissions or choose another --log-file") from None


def _prepare_process() -> None:
    """Before the event loop: what only a real server process does (not a Server
    embedded in cfm chat or a test)."""
    import logging

    from prometheus_client import disable_created_metrics

    from cfm_server.config import unknown_env_warnings
    from cfm_server.descriptors import check_descriptors

    disable_created_metrics()  # a `_created` series beside every counter is scrape noise
    for warning in unknown_env_warnings():
        logging.getLogger("cfm_server.config").warning("%s", warning)
    check_descriptors()


_WILDCARDS = {"0.0.0.0": "every IPv4 interface", "::": "every interface", "": "every interface"}
_REGISTRATION = {"open": "anyone who reaches the server may claim a handle",
                 "invite": "new handles only with a code from cfm admin invite",
                 "closed": "no new handles; accounts from cfm admin add-user"}


def security_summary(config: Any) -> list[str]:
    """The settings that decide who gets in, as they are in force (after the TOML file,
    the environment and the flags), for the start-up banner and the log."""
    import ipaddress

    host = config.host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    reach = _WILDCARDS.get(host) or ("this machine only" if loopback else "that address")
    tls = (f"on ({config.tls_cert}; SIGHUP reloads it)" if config.tls_cert is not None
           else "off" + ("" if loopback else " (put a TLS proxy in front, or give "
                                              "--tls-cert)"))
    proxies = ", ".join(config.trusted_proxies) or "none"
    limits = ("rate limits on" if config.rate_limits
              else "rate limits OFF (--no-rate-limits: no token buckets, no per-IP cap)")
    origins = ", ".join(config.allowed_origins) or "any"
    return [f"registration {config.registration}: {_REGISTRATION[config.registration]}",
            f"bound to {host or '*'} ({reach}); TLS {tls}; trusted proxies: {proxies}",
            f"{limits}; browser origins: {origins}"]


def _reload(server: Any, logs: Any) -> None:
    """SIGHUP: reopen the log file and reload the TLS certificate, and say so."""
    import logging

    from cfm_server.config import ConfigError

    log = logging.getLogger("cfm_server.cli")
    done = []
    failed = False  # an error line said what was refused: "nothing to reload" would lie
    try:
        path = logs.reopen()
    except OSError as exc:
        failed = True
        log.error("SIGHUP: cannot reopen the log file %s (%s); still writing to the old "
                  "one", logs.file, exc.strerror or exc)
    else:
        if path is not None:
            done.append(f"reopened the log file {path}")
    if server is not None:
        try:
            if server.reload_tls():
                done.append(f"reloaded the TLS certificate {server.config.tls_cert}")
        except ConfigError as exc:
            failed = True
            log.error("SIGHUP: %s; still serving the old certificate", exc)
    if done:
        log.info("SIGHUP: %s", "; ".join(done))
    elif not failed:
        log.info("SIGHUP: nothing to reload (no --log-file, no TLS)")


async def _run(settings: Any, logs: Any, signals: ProcessSignals) -> int:
    import asyncio
    import logging

    from cfm_common.procsignals import unless_stopped
    from cfm_server.config import ConfigError
    from cfm_server.descriptors import quiet_exhaustion
    from cfm_server.opmetrics import describe
    from cfm_server.server import Server
    from cfm_server.store import StoreError

    loop = asyncio.get_running_loop()
    quiet_exhaustion(loop)  # one line per interval when descriptors run out
    stop_requested = asyncio.Event()
    server: Server | None = None
    signals.attach(loop, stop=stop_requested.set, reload=lambda: _reload(server, logs))
    ran = False
    try:
        server = Server(settings)
        try:
            # (a cluster node waits while its Redis is out of reach: a stop ends the wait)
            starting = await unless_stopped(server.start(), stop_requested)
            if starting is None:  # Server.start undid what it did
                typer.echo("cfm serve: stopped before it started")
                return 0
            starting.result()  # raises what Server.start raised
            ran = True
        except (StoreError, ConfigError) as exc:
            typer.echo(f"cfm serve: {exc}", err=True)
            return EXIT_CONFIG
        except OSError as exc:
            typer.echo(
                f"cfm serve: cannot listen on {settings.host}:{settings.port}: "
                f"{exc.strerror or exc}; pick another --host/--port",
                err=True,
            )
            return EXIT_CONFIG
        typer.echo(f"cfm serve: listening on {server.url}", err=False)
        if settings.public_url:
            typer.echo(f"cfm serve: public URL {settings.public_url} (what users type)")
        typer.echo(f"cfm serve: data in {server.data_location}")
        typer.echo(f"cfm serve: health at {server.http_url}/healthz and /readyz, "
                   f"{describe(server)}")
        for line in security_summary(server.config):
            typer.echo(f"cfm serve: {line}")
            logging.getLogger("cfm_server.cli").info("%s", line)
        try:
            await stop_requested.wait()
        finally:
            _tell("cfm serve: shutting down")
            await server.stop()
    finally:
        # The server has stopped: what is left of the process (the loop's close, its
        # threads joined, the interpreter's exit) ignores them.
        signals.release(ignore=ran or signals.stop_requested)
    return 0


def _tell(line: str) -> None:
    """A line on standard output that may find nobody reading: ``cfm serve | tee log``
    and a Ctrl+C end tee too (the same process group), and the failed write must not
    skip the shutdown (clients closed 1001/1012, the node's id freed). From then on the
    output goes nowhere, so that exiting does not fail on it again."""
    try:
        typer.echo(line)
        sys.stdout.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
