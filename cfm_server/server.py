"""``Server``: the store, the hub and the websockets listener, started and stopped together.

    server = Server(config); await server.start()   # or: async with Server(config) as s:
    server.url                                        # ws://127.0.0.1:1863/ws
    await server.stop(close_code=1001)

Shutdown: stop accepting, flush the store (so every ack that can go out does), close
every connection with ``close_code`` (1012 "restarting, reconnect" by default, 1001
"going away"), wait for the handlers with a timeout, then close the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import http
import logging
import os
import ssl
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from cfm_common import SUBPROTOCOL
from cfm_common.rules import CloseCode
from cfm_server.config import ServerConfig
from cfm_server.hub import Hub
from cfm_server.invites import InviteBook, InviteError, load_key
from cfm_server.limits import IpCounter
from cfm_server.metrics import CONTENT_TYPE, Metrics
from cfm_server.netaddr import WS_PATH, TrustedProxies, server_tls_context, ws_url
from cfm_server.session import Outbox, Session
from cfm_server.store import Store, StoreError

if TYPE_CHECKING:
    from cfm_server.ai import AIConfig, AIContacts

log = logging.getLogger(__name__)

DB_FILE = "cfm.sqlite3"
RUN_FILE = "server.json"  # the URL and registration of the last start, for cfm admin

# The cyclic garbage collector's young-generation threshold while a server runs. Every
# say allocates a handful of container objects (the stored message, its pending entry,
# a future, frames), so at the default of 700 the collector ran every ~100 messages and
# its passes over the survivors took a fifth of the CPU of a 10,000-connection server
# (the `rooms` profile in docs/performance.md). Reference counting frees almost all of
# it anyway; the collector is for cycles, and 50,000 allocations between passes still
# finds them promptly.
GC_YOUNG_THRESHOLD = 50_000


def open_store(config: ServerConfig, outbox: Outbox | None = None) -> tuple[Store, str]:
    """The configured store and a description of where its data lives.

    ``outbox``: flushed in the loop turn that runs a group commit's callbacks (SQLite).
    """
    if config.store == "memory":
        from cfm_server.store import MemoryStore

        return MemoryStore(), "memory (nothing is kept after exit)"
    data_dir = config.resolved_data_dir()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the data directory {data_dir}: {exc.strerror}; "
            "choose another with --data-dir"
        ) from None
    if not data_dir.is_dir() or not os.access(data_dir, os.W_OK | os.X_OK):
        raise StoreError(
            f"the data directory {data_dir} is not a writable directory; "
            "choose another with --data-dir"
        )
    from cfm_server.store.sqlite import SqliteStore

    path = data_dir / DB_FILE
    store = SqliteStore(
        path,
        synchronous=config.sqlite_synchronous,
        commit_interval_ms=config.commit_interval_ms,
        after_commit=outbox.flush_soon if outbox is not None else None,
    )
    return store, str(path)


T = TypeVar("T")


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when it is installed (``pip install cfm[speed]``).

    uvloop's transports and loop are C, so every write, read and callback of the hot path
    costs less; the server needs nothing else of it. Without uvloop: plain asyncio.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    log.debug("event loop: uvloop %s", uvloop.__version__)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def tune_gc() -> None:
    """Collect cyclic garbage less often (see ``GC_YOUNG_THRESHOLD``); never lowers it."""
    young, middle, old = gc.get_threshold()
    if young and young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    # websockets closes the connection after an HTTP response: say so, or a client that
    # keeps connections alive (httpx, a proxy) sends its next request into a closed one.
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Connection", "close")])
    return Response(status.value, status.phrase, headers, body)


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        # One outbox for all sessions: every loop turn's frames go out in one write each.
        self.outbox = Outbox()
        self.hub: Hub | None = None
        self.store: Store | None = None
        self.data_location = ""
        self._ws: WsServer | None = None
        self._ip_counter = IpCounter(config.max_conns_per_ip if config.rate_limits else None)
        self._proxies = TrustedProxies(config.trusted_proxies)
        self._stopping = False
        self._stopped = asyncio.Event()
        self._port: int | None = None  # kept after stop(), for restarts on the same port
        self._ai: AIContacts | None = None
        self._ai_tokens: tempfile.TemporaryDirectory[str] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, load the hub and listen. Raises StoreError or OSError."""
        config = self.config.validate()
        ai = self._ai_config()
        # Every new user finds the AI contacts in their list, as MSN shipped its own.
        extra = [h for h in ai.handles if h not in config.default_contacts] if ai.enabled else []
        config = self.config = dataclasses.replace(
            config, ai=ai, default_contacts=[*config.default_contacts, *extra]
        )
        store, self.data_location = open_store(config, self.outbox)
        tune_gc()
        await store.open()
        self.store = store
        try:
            self.hub = Hub(config, store, self.metrics)
            self.hub.load()
            if config.registration == "invite":
                self.hub.invites = self._invite_book(store)
            ai_tokens = self._provision_ai_contacts(ai) if ai.enabled else {}
            origins: list[Any] | None = None
            if config.allowed_origins:
                # Terminal clients send no Origin; only browsers' Origins are checked.
                origins = [*config.allowed_origins, None]
            tls = (server_tls_context(config.tls_cert, config.tls_key)
                   if config.tls_cert is not None and config.tls_key is not None else None)
            self._ws = await serve(
                self._handle,
                config.host,
                config.port,
                ssl=tls,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                compression=None,
                max_size=config.max_frame,
                process_request=self._process_request,
                origins=origins,
                ping_interval=config.ping_interval or None,
                ping_timeout=config.ping_timeout or None,
                close_timeout=config.close_timeout,
                open_timeout=config.hello_timeout,
                logger=logging.getLogger("cfm_server.websockets"),
            )
        except BaseException:
            await store.close()
            raise
        self._port = int(self._ws.sockets[0].getsockname()[1])
        log.info("listening on %s, data in %s", self.url, self.data_location)
        if config.store == "sqlite":
            self._record_run()
        if ai_tokens:
            await self._start_ai_contacts(ai, ai_tokens)

    def _record_run(self) -> None:
        """Leave how this server runs in its data directory (``server.json``), so that
        ``cfm admin`` knows the URL and registration flags gave it, not only the files."""
        import json

        from cfm_common.tokens import write_private

        record = {"url": self.url, "dial": self._loopback()[0],
                  "registration": self.config.registration, "pid": os.getpid()}
        try:
            write_private(self.config.resolved_data_dir() / RUN_FILE,
                          json.dumps(record, indent=1) + "\n")
        except OSError as exc:
            log.warning("cannot write %s: %s", RUN_FILE, exc)

    def _invite_book(self, store: Store) -> InviteBook:
        try:
            key = load_key(self.config.resolved_data_dir(), create=True)
        except OSError as exc:
            raise StoreError(f"cannot make the invite key in {self.config.resolved_data_dir()}:"
                             f" {exc.strerror or exc}") from None
        except InviteError as exc:
            raise StoreError(str(exc)) from None
        assert key is not None
        return InviteBook(key, store.load_invite_uses())

    # --- AI contacts ---------------------------------------------------------------------

    def _ai_config(self) -> AIConfig:
        from cfm_server.ai import AIConfig

        ai = self.config.ai if self.config.ai is not None else AIConfig()
        if not self.config.ai_enabled and ai.enabled:
            ai = dataclasses.replace(ai, enabled=False)
        return ai

    def _ai_token_dir(self) -> Path:
        if self.config.store == "memory":
            # Nothing outlives a memory server, its personas' tokens included.
            self._ai_tokens = tempfile.TemporaryDirectory(prefix="cfm-ai-")
            return Path(self._ai_tokens.name)
        return self.config.resolved_data_dir() / "ai"

    def _provision_ai_contacts(self, ai: AIConfig) -> dict[str, Path]:
        """Create (or re-token) each persona's identity before anyone can connect.

        Done before listening so that no person can claim a persona's handle first. The
        token goes into the file the persona's SDK client reads.
        """
        from cfm_common.tokens import write_token

        assert self.hub is not None
        token_dir = self._ai_token_dir()
        files: dict[str, Path] = {}
        for persona in ai.personas:
            token = self.hub.provision_bot(
                persona.handle, persona.display, persona.psm, persona.status
            )
            if token is None:
                log.warning("AI contact %s not started: a person holds that handle",
                            persona.handle)
                continue
            path = token_dir / f"{persona.key}.token"
            write_token(path, token)
            files[persona.handle] = path
        return files

    async def _start_ai_contacts(self, ai: AIConfig, tokens: dict[str, Path]) -> None:
        """Start the built-in AI contacts: SDK clients of ``self.url`` in this process."""
        from cfm_server.ai import start_ai_contacts

        personas = tuple(p for p in ai.personas if p.handle in tokens)
        token_dir = next(iter(tokens.values())).parent
        url, tls = self._loopback()
        self._ai = await start_ai_contacts(
            ai, url, token_dir=token_dir, registry=self.metrics.registry,
            personas=personas, ssl=tls,
        )

    def _loopback(self) -> tuple[str, ssl.SSLContext | None]:
        """How this process reaches its own port: a wildcard listen address is dialled on
        loopback, and with TLS the certificate is not checked — it names the public host,
        not 127.0.0.1, and the other end is this very server."""
        tls = self.config.tls_cert is not None
        url = ws_url(self.config.host, self.port, tls=tls, dial=True)
        if not tls:
            return url, None
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return url, context

    async def _stop_ai_contacts(self) -> None:
        """End what ``_start_ai_contacts`` started (called first thing in ``stop``)."""
        if self._ai is not None:
            await self._ai.stop()
            self._ai = None
        if self._ai_tokens is not None:
            self._ai_tokens.cleanup()
            self._ai_tokens = None

    async def stop(self, close_code: int | None = None) -> None:
        """Stop accepting, flush, close every client with ``close_code``, close the store."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        code = self.config.shutdown_close_code if close_code is None else close_code
        reason = "server restarting" if code == CloseCode.SERVICE_RESTART else "server going away"
        try:
            await self._stop_ai_contacts()
            if self._ws is not None:
                self._ws.server.close()  # stop accepting first
            if self.store is not None:
                try:
                    await asyncio.wait_for(self.store.flush(), self.config.close_timeout)
                except (StoreError, TimeoutError) as exc:
                    log.error("flushing the store at shutdown failed: %s", exc)
            if self._ws is not None:
                # The acks of that last commit go out in its callbacks, then in the
                # outbox's next write: both before the close frames.
                await asyncio.sleep(0)
                self.outbox.flush()
                self._ws.close(close_connections=True, code=code, reason=reason)
                try:
                    await asyncio.wait_for(self._ws.wait_closed(), self.config.close_timeout + 1)
                except TimeoutError:
                    log.warning("some connections did not close in time; dropping them")
                    for connection in list(self._ws.connections):
                        connection.transport.abort()
            if self.store is not None:
                await self.store.close()
        finally:
            self._stopped.set()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # --- addresses -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._port is not None, "the server is not started"
        return self._port

    @property
    def url(self) -> str:
        return ws_url(self.config.host, self.port, tls=self.config.tls_cert is not None)

    @property
    def http_url(self) -> str:
        return "http" + self.url.removeprefix("ws").removesuffix(WS_PATH)

    @property
    def data_dir(self) -> Path:
        return self.config.resolved_data_dir()

    # --- connections ---------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == WS_PATH:
            if self._ip_counter.full(self._client_ip(connection, request)):
                return _response(
                    http.HTTPStatus.TOO_MANY_REQUESTS,
                    b"too many connections from your address\n",
                    "text/plain; charset=utf-8",
                )
            return None  # on to the WebSocket handshake
        if path == "/healthz":
            return _response(http.HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        if path == "/metrics":
            return _response(http.HTTPStatus.OK, self.metrics.render(), CONTENT_TYPE)
        return _response(http.HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    async def _handle(self, ws: ServerConnection) -> None:
        assert self.hub is not None
        ip = self._client_ip(ws, ws.request)
        if not self._ip_counter.add(ip):
            # Raced past the check in _process_request: refuse politely.
            self.metrics.closes.labels(str(int(CloseCode.TRY_AGAIN_LATER))).inc()
            await ws.close(CloseCode.TRY_AGAIN_LATER, "too many connections from your address")
            return
        self.metrics.connections.inc()
        session = Session(ws, self.hub, self.config, self.metrics, self.outbox)
        session.address = ip
        try:
            await session.run()
        except Exception:
            log.exception("session %s failed", session.id or "-")
        finally:
            self.hub.sign_out(session)
            self.metrics.connections.dec()
            self._ip_counter.remove(ip)

    def _client_ip(self, connection: ServerConnection, request: Request | None) -> str:
        address = connection.remote_address
        peer = str(address[0]) if address else "?"
        if request is None or not self._proxies.trusts(peer):
            return peer  # the header is read only from a trusted proxy
        # Several header lines are one list (a proxy may add its own line).
        forwarded = ",".join(request.headers.get_all("X-Forwarded-For"))
        return self._proxies.client_ip(peer, forwarded or None)
