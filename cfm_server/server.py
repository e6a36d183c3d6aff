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
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from cfm_common import SUBPROTOCOL
from cfm_common.rules import CloseCode
from cfm_server import oplog, ratelog, retention, runfile
from cfm_server.ai_launch import AIContactsRunner, ai_config
from cfm_server.config import ConfigError, ServerConfig, redact_url  # (redact_url: cfm admin too)
from cfm_server.control import start_control, stop_control
from cfm_server.datadir import (
    free_space_problem,
)
from cfm_server.hub import Hub
from cfm_server.invites import REVOKED_FILE, InviteBook, InviteError, load_key
from cfm_server.limits import IpCounter
from cfm_server.metrics import CONTENT_TYPE, Metrics
from cfm_server.netaddr import WS_PATH, TrustedProxies, is_loopback, server_tls_context, ws_url
from cfm_server.opmetrics import OpsMetrics, start_metrics_listener
from cfm_server.outbox import Outbox
from cfm_server.session import Session
from cfm_server.store import Store, StoreError
from cfm_server.storeopen import DB_FILE, open_store  # noqa: F401 (DB_FILE: cfm admin's too)
from cfm_server.wsconn import ConnectionGuard, MeteredConnection

if TYPE_CHECKING:
    from cfm_server.ai import AIConfig
    from cfm_server.cluster.node import ClusterNode
    from cfm_server.cluster.retention import ClusterRetention

log = logging.getLogger(__name__)

RUN_FILE = runfile.RUN_FILE  # (cfm admin's and the tests' name for it)

# The cyclic garbage collector's young-generation threshold while a server runs. Every
# say allocates a handful of container objects (the stored message, its pending entry,
# a future, frames), so at the default of 700 the collector ran every ~100 messages and
# its passes over the survivors took a fifth of the CPU of a 10,000-connection server
# (the `rooms` profile in docs/performance.md). Reference counting frees almost all of
# it anyway; the collector is for cycles, and 50,000 allocations between passes still
# finds them promptly.
GC_YOUNG_THRESHOLD = 50_000


def _no_password() -> str:
    raise ssl.SSLError("the key is encrypted")  # never prompt on the terminal


def tune_gc() -> None:
    """Collect cyclic garbage less often (see ``GC_YOUNG_THRESHOLD``); never lowers it."""
    young, middle, old = gc.get_threshold()
    if young and young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


# Why a WebSocket handshake was refused, by HTTP status, for cfm_refused_handshakes_total.
_REFUSALS = {400: "bad_handshake", 403: "origin_not_allowed", 426: "not_websocket",
             429: "too_many_from_address", 431: "upgrade_too_large", 500: "server_error",
             503: "shutting_down"}


def _too_many() -> Response:
    return _response(http.HTTPStatus.TOO_MANY_REQUESTS,
                     b"too many connections from your address\n", "text/plain; charset=utf-8")


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
        self.ops = OpsMetrics(self)
        self._metrics_server: asyncio.Server | None = None  # metrics_listen's
        # One outbox for all sessions: every loop turn's frames go out in one write each.
        self.outbox = Outbox()
        self.hub: Hub | None = None
        self.store: Store | None = None
        self.node: ClusterNode | None = None  # cluster mode (config.redis_url)
        self.data_location = ""
        self._ws: WsServer | None = None
        self._ip_counter = IpCounter(config.max_conns_per_ip if config.rate_limits else None)
        self._proxies = TrustedProxies(config.trusted_proxies)
        self._guard: ConnectionGuard | None = None
        self._uninstall_log_limits: Callable[[], None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self._port: int | None = None  # kept after stop(), for restarts on the same port
        self.ai_contacts = AIContactsRunner(self, self.metrics.registry)
        self._retention: asyncio.Task[None] | None = None
        self._cluster_retention: ClusterRetention | None = None
        self._tls: ssl.SSLContext | None = None  # the listener's; reload_tls() refreshes it
        self._control: asyncio.Server | None = None  # <data dir>/admin.sock (control.py)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, load the hub and listen. Raises StoreError or OSError."""
        config = self.config.validate()
        ai = ai_config(self.config)
        # Every new user finds the AI contacts in their list, as MSN shipped its own.
        extra = [h for h in ai.handles if h not in config.default_contacts] if ai.enabled else []
        config = self.config = dataclasses.replace(
            config, ai=ai, default_contacts=[*config.default_contacts, *extra]
        )
        if config.cluster:
            # Its data dir holds only what is this process's (the search index file,
            # server.json): no database, no control socket; its store is the memory
            # one, which keeps nothing.
            config = self.config = dataclasses.replace(config, store="memory")
            store, self.data_location, self.node = self._cluster_node(config)
        else:
            store, self.data_location = open_store(config, self.outbox)
        tune_gc()
        self._limit_outsider_logs()
        await store.open()
        self.store = store
        try:
            if self.node is not None:
                self.hub = Hub(config, store, self.metrics, **self.node.hub_parts())
                await self._start_node(self.node, self.hub)
            else:
                self.hub = Hub(config, store, self.metrics)
                self.hub.load()
            if config.registration == "invite":
                self.hub.invites = (await self._cluster_invite_book(self.node)
                                    if self.node is not None else self._invite_book(store))
            ai_tokens: dict[str, Path] = {}
            if ai.enabled and self.node is not None:
                self.ai_contacts.reserve_on_cluster(self.node, self.hub, ai)
            elif ai.enabled:
                ai_tokens = await self.ai_contacts.provision(self.hub, ai)
            origins: list[Any] | None = None
            if config.allowed_origins:
                # Terminal clients send no Origin; only browsers' Origins are checked.
                origins = [*config.allowed_origins, None]
            tls = self._tls = (server_tls_context(config.tls_cert, config.tls_key)
                               if config.tls_cert is not None and config.tls_key is not None
                               else None)
            self._ws = await serve(
                self._handle,
                config.host,
                config.port,
                ssl=tls,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                compression=None,
                max_size=config.max_frame,
                process_request=self._process_request,
                process_response=self._process_response,
                origins=origins,
                ping_interval=config.ping_interval or None,
                ping_timeout=config.ping_timeout or None,
                close_timeout=config.close_timeout,
                open_timeout=config.upgrade_timeout,
                create_connection=self._connection_factory(config),  # type: ignore[arg-type]
                logger=logging.getLogger("cfm_server.websockets"),
            )
        except BaseException:
            if self.node is not None:
                await self.node.close()
            await store.close()
            if self._uninstall_log_limits is not None:
                self._uninstall_log_limits()
                self._uninstall_log_limits = None
            raise
        self._port = int(self._ws.sockets[0].getsockname()[1])
        try:
            await self._after_listening(config, ai, ai_tokens)
        except BaseException as exc:
            # Stopped (a SIGTERM the moment "listening" is logged: cfm serve cancels the
            # start) or failed in a step after the listener: undone as a stop undoes a
            # running server, not left half started (the store never closed, a node's
            # id held in Redis until its expiry, admin.sock left behind).
            cancelled = isinstance(exc, asyncio.CancelledError)
            await self.stop(close_code=None if cancelled else CloseCode.GOING_AWAY)
            raise

    async def _after_listening(self, config: ServerConfig, ai: AIConfig,
                               ai_tokens: dict[str, Path]) -> None:
        """The steps of ``start`` once the listener is up."""
        if config.metrics_listen:
            try:
                self._metrics_server = await start_metrics_listener(
                    config.metrics_listen, self.metrics.render, CONTENT_TYPE)
            except OSError as exc:
                raise ConfigError(f"cannot listen on metrics_listen {config.metrics_listen}: "
                                  f"{exc.strerror or exc}") from None
        # Written before the line that tells a supervisor (and the tests) it is up.
        record = self._run_record()
        if self.node is not None:  # and in Redis, for cfm admin --redis
            from cfm_server.cluster import noderuns

            await noderuns.record(self.node.broker.batcher, self.node.node_id, record)
            record = {**record, "node": self.node.node_id,
                      "redis": redact_url(config.redis_url)}
        if config.store == "sqlite" or self.node is not None:  # (memory: no data dir)
            runfile.write(self.data_dir, record)
        log.info("listening on %s, data in %s", self.url, self.data_location)
        if config.store == "sqlite":
            self._control = await start_control(self)
        await self.ai_contacts.start(self.hub, ai, ai_tokens)
        if retention.enabled(config) and self.node is not None:
            from cfm_server.cluster.retention import ClusterRetention

            self._cluster_retention = ClusterRetention(self.node, config)
            await self._cluster_retention.start()  # prunes if this node gets the lease
        elif retention.enabled(config):
            self._retention = asyncio.create_task(retention.run_retention(self.hub, config),
                                                  name="cfm-retention")

    def _cluster_node(self, config: ServerConfig) -> tuple[Store, str, ClusterNode]:
        """Cluster mode: the node, and a store that keeps nothing (the shared state and
        the messages live in Redis; the store only answers the hub's lookups)."""
        from cfm_server.cluster.node import ClusterNode
        from cfm_server.cluster.nodemetrics import ClusterCollector
        from cfm_server.cluster.nodestore import NodeStore

        node = ClusterNode(config)
        self.metrics.registry.register(ClusterCollector(
            node, lambda: (self.ai_contacts.cluster, self._cluster_retention)))
        return NodeStore(), f"{redact_url(config.redis_url)} (node {node.node_id})", node

    async def _start_node(self, node: ClusterNode, hub: Hub) -> None:
        from cfm_server.cluster.errors import ClusterError
        from cfm_server.cluster.presence import NodeIdTaken
        from cfm_server.cluster.startup import StartRefused

        try:
            await node.start(hub)
        except (StartRefused, NodeIdTaken) as exc:  # the message says what to fix
            raise StoreError(str(exc)) from None
        except ClusterError as exc:
            raise StoreError(f"cannot load the cluster's state from "
                             f"{redact_url(self.config.redis_url)}: {exc}") from None

    def reload_tls(self) -> bool:
        """Read the certificate and key files again (SIGHUP): handshakes from now on
        present the new certificate; open connections keep theirs. False without TLS.

        The files are checked in a fresh context first, so a bad pair (a renewal caught
        half-written) raises ConfigError and the server keeps serving the old one.
        """
        cert, key = self.config.tls_cert, self.config.tls_key
        if self._tls is None or cert is None or key is None:
            return False
        # A snapshot of both files, so that what is checked is what gets loaded even if
        # a renewal rewrites them meanwhile.
        with tempfile.TemporaryDirectory(prefix="cfm-tls-") as tmp:
            copies = []
            for what, path in (("certificate", cert), ("key", key)):
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    raise ConfigError(f"cannot read the TLS {what} {path}: "
                                      f"{exc.strerror or exc}") from None
                copy = Path(tmp) / what
                copy.write_bytes(data)
                copies.append(copy)
            try:
                server_tls_context(*copies)
            except ConfigError as exc:  # name the real files, not the copies
                raise ConfigError(f"the TLS files {cert}, {key} cannot be used: "
                                  f"{str(exc).replace(str(tmp), '…')}") from None
            # The listener's context is the one each new connection is made from; loading
            # the checked pair into it replaces its certificate and key.
            self._tls.load_cert_chain(*copies, password=_no_password)
        return True

    def _run_record(self) -> dict[str, Any]:
        """How this server runs, as flags, environment and files made it, for ``cfm
        admin``: its URL and registration."""
        return {"url": self.url, "dial": self.loopback()[0],
                "public_url": self.config.public_url,
                "registration": self.config.registration, "pid": os.getpid()}

    def _invite_book(self, store: Store) -> InviteBook:
        try:
            key = load_key(self.config.resolved_data_dir(), create=True)
        except OSError as exc:
            raise StoreError(f"cannot make the invite key in {self.config.resolved_data_dir()}:"
                             f" {exc.strerror or exc}") from None
        except InviteError as exc:
            raise StoreError(str(exc)) from None
        assert key is not None
        return InviteBook(key, store.load_invite_uses(),
                          revoked=self.config.resolved_data_dir() / REVOKED_FILE)

    async def _cluster_invite_book(self, node: ClusterNode) -> InviteBook:
        """The cluster's invite key (made now if no node made it yet) and its counts."""
        from cfm_server.cluster.errors import ClusterError
        from cfm_server.cluster.invites import ClusterInviteBook, shared_key

        try:
            key = await shared_key(node.broker.batcher)
        except ClusterError as exc:
            raise StoreError(f"cannot read the invite key from Redis: {exc}") from None
        except InviteError as exc:
            raise StoreError(str(exc)) from None
        assert key is not None
        book = ClusterInviteBook(key, node.state)
        try:
            await book.follow(node.broker)
        except ClusterError as exc:
            raise StoreError(f"cannot read the withdrawn invites from Redis: {exc}") from None
        return book

    def loopback(self) -> tuple[str, ssl.SSLContext | None]:
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

    async def stop(self, close_code: int | None = None) -> None:
        """Stop accepting, flush, close every client with ``close_code``, close the store."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        code = self.config.shutdown_close_code if close_code is None else close_code
        try:
            try:
                await self._stop_serving(code)
            except Exception:
                # The store is closed all the same: a database left marked open without
                # its WAL (SQLite folds it in as the process exits) refuses the next start.
                log.exception("a step of the shutdown failed; closing the store anyway")
                if self._ws is not None:
                    self._ws.close(close_connections=True, code=code)
            if self.node is not None:
                await self.node.close()
            if self.store is not None:
                await self.store.close()
        finally:
            if self._uninstall_log_limits is not None:
                self._uninstall_log_limits()
                self._uninstall_log_limits = None
            self._stopped.set()

    async def _stop_serving(self, code: int) -> None:
        """Everything ``stop`` does before closing the node and the store."""
        reason = "server restarting" if code == CloseCode.SERVICE_RESTART else "server going away"
        await self.ai_contacts.stop()
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
        if self._cluster_retention is not None:
            await self._cluster_retention.stop()
            self._cluster_retention = None
        if self._metrics_server is not None:
            self._metrics_server.close()
        if self._control is not None:
            stop_control(self._control, self.data_dir)
            self._control = None
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

    def _limit_outsider_logs(self) -> None:
        """Rate-limit the log lines clients can trigger (``cfm_server/ratelog.py``)."""
        if self._uninstall_log_limits is None:
            self._uninstall_log_limits = ratelog.install()

    def _connection_factory(self, config: ServerConfig) -> Any:
        """Connections metered from accept on (``cfm_server/wsconn.py``); the per-address
        cap counts direct peers there, and a trusted proxy's clients after the upgrade."""
        self._guard = ConnectionGuard(config, self.metrics, self._proxies, self._ip_counter,
                                      on_refused=self._refused_at_accept)
        return self._guard.factory

    def _counted_at_accept(self, connection: ServerConnection) -> bool:
        return isinstance(connection, MeteredConnection) and connection.counted_ip is not None

    def _process_request(self, connection: ServerConnection, request: Request
                         ) -> Response | Awaitable[Response | None] | None:
        path = request.path.split("?", 1)[0]
        if path == WS_PATH:
            ip = self._client_ip(connection, request)
            if not self._counted_at_accept(connection) and self._ip_counter.full(ip):
                return _too_many()
            if self.node is not None and self.node.present.conns is not None:
                # A cluster node: the cap counts every node's connections (its future).
                return self.node.present.conns.admit(connection, ip, _too_many())
            return None  # on to the WebSocket handshake
        if path == "/healthz":
            return _response(http.HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        if path == "/readyz":
            return self._readyz(self.config.metrics_public or
                                is_loopback(self._client_ip(connection, request)))
        if path == "/metrics" and not self.config.metrics_listen and (
            self.config.metrics_public or is_loopback(self._client_ip(connection, request))
        ):
            return _response(http.HTTPStatus.OK, self.metrics.render(), CONTENT_TYPE)
        return _response(http.HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _uncount_in_cluster(self, connection: ServerConnection) -> None:
        if self.node is not None and self.node.present.conns is not None:
            self.node.present.conns.release(connection)

    def _process_response(self, connection: ServerConnection, request: Request,
                          response: Response) -> None:
        """Every WebSocket handshake the server refused (ours, like the per-IP cap, and
        websockets' own: no cfm.v1 subprotocol, a foreign Origin, not an upgrade):
        logged (rate-limited) and counted by reason."""
        if response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS:
            return
        self._uncount_in_cluster(connection)
        if request.path.split("?", 1)[0] != WS_PATH:
            return  # /healthz, /metrics and 404s are not refused handshakes
        reason = _REFUSALS.get(response.status_code, str(response.status_code))
        if response.status_code == http.HTTPStatus.TOO_MANY_REQUESTS:
            why = "too many connections from that address"
        else:  # websockets' own words (its body speaks to the client: "Failed to ...")
            lines = bytes(response.body or b"").decode("utf-8", "replace").strip().splitlines()
            why = lines[0] if lines else reason.replace("_", " ")
        oplog.refused(self._client_ip(connection, request), response.status_code, why)
        self.ops.refused.labels(reason).inc()

    def _refused_at_accept(self, ip: str, status: int, why: str) -> None:
        """A connection turned away before its upgrade (``wsconn``): logged and counted
        like the refusals websockets answers."""
        oplog.refused(ip, status, why)
        self.ops.refused.labels(_REFUSALS.get(status, str(status))).inc()

    def not_ready(self) -> str | None:
        """Why the server cannot take messages now (``/readyz``), or None when it can:
        stopping, the store's last commit failed (until one succeeds), or the disk is
        below ``min_free_mb``."""
        if self._stopping:
            return "shutting down"
        if self.store is None or self.hub is None:
            return "starting"
        if self.node is not None and self.node.unreachable():
            return "Redis is unreachable"
        failure = getattr(self.store, "write_error", None)
        if failure is not None:
            return f"the last commit failed: {failure}"
        if self.config.store == "sqlite" and self.config.min_free_mb:
            return free_space_problem(self.data_dir, self.config.min_free_mb)
        return None

    def _readyz(self, say_why: bool) -> Response:
        """The status for anyone (a load balancer needs only that); why, only to whom
        may read /metrics: the reason names the data dir and the store's error."""
        why = self.not_ready()
        if why is None:
            return _response(http.HTTPStatus.OK, b"ready\n", "text/plain; charset=utf-8")
        body = f"not ready: {why}\n" if say_why else "not ready\n"
        return _response(http.HTTPStatus.SERVICE_UNAVAILABLE, body.encode(),
                         "text/plain; charset=utf-8")

    async def _handle(self, ws: ServerConnection) -> None:
        assert self.hub is not None
        ip = self._client_ip(ws, ws.request)
        if isinstance(ws, MeteredConnection):
            ws.forget_handshake()  # nothing reads the upgrade's headers after this
        oplog.PEER.set(ip)  # this connection's task and what it calls: the hub's sign-up
        # Counted at accept already, unless the address is a trusted proxy's forwarded one.
        counted_here = not self._counted_at_accept(ws)
        if counted_here and not self._ip_counter.add(ip):
            # Raced past the check in _process_request: refuse politely.
            self.metrics.closes.labels(str(int(CloseCode.TRY_AGAIN_LATER))).inc()
            await ws.close(CloseCode.TRY_AGAIN_LATER, "too many connections from your address")
            return
        self.metrics.connections.inc()
        session = Session(ws, self.hub, self.config, self.metrics, self.outbox)
        session.ip = ip
        oplog.connected(ip)
        started = time.monotonic()
        try:
            await session.run()
        except Exception:
            log.exception("session %s failed", session.id or "-")
        finally:
            oplog.closed(ip, session.user.record.name if session.user is not None else None,
                         time.monotonic() - started, *oplog.close_of(ws), session=session.id,
                         node=self.node.node_id if self.node is not None else None)
            self.hub.sign_out(session)
            self.metrics.connections.dec()
            if counted_here:
                self._ip_counter.remove(ip)
            self._uncount_in_cluster(ws)

    def _client_ip(self, connection: ServerConnection, request: Request | None) -> str:
        address = connection.remote_address
        peer = str(address[0]) if address else "?"
        if request is None or not self._proxies.trusts(peer):
            return peer  # the header is read only from a trusted proxy
        # Several header lines are one list (a proxy may add its own line).
        forwarded = ",".join(request.headers.get_all("X-Forwarded-For"))
        return self._proxies.client_ip(peer, forwarded or None)
