"""The operator's lines of a user's sessions, alike on a single node and on a cluster's
nodes (docs/server.md, "Logging"): each sign-in names the user, the node (a cluster's),
the address and the session; its close (the sign-out) the same, with why it ended — and
a connection a proxy dropped (no close frame: websockets' 1006) is logged as lost, not
as closed by the client. Real servers (one node, or two over a real redis-server),
real WebSocket clients; the drop is a real TCP proxy aborting its links."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from cfm_server.logsetup import JsonFormatter
from tests.cluster.proxy import FaultyProxy
from tests.wire import WireClient, eventually, signed_in

pytestmark = pytest.mark.both_modes


def conn_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "cfm_server.conn"]


async def line_of(caplog: pytest.LogCaptureFixture, start: str) -> logging.LogRecord:
    await eventually(lambda: any(r.getMessage().startswith(start)
                                 for r in conn_lines(caplog)), timeout=10)
    return next(r for r in conn_lines(caplog) if r.getMessage().startswith(start))


def where(session: str) -> str:
    """`` on node n1`` for a cluster node's session id ``n1.s3``, else nothing."""
    node, dot, _ = session.rpartition(".")
    return f" on node {node}" if dot else ""


async def test_sign_in_and_sign_out_name_the_node_the_address_and_the_session(
        server_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cfm_server.conn")
    server = await server_factory()
    async with signed_in(server.url, "alice") as alice:
        session = alice.welcome["session"]  # type: ignore[attr-defined]
        on = where(session)
        signed = await line_of(caplog, "sign-in: alice")
        assert signed.getMessage() == f"sign-in: alice{on} from 127.0.0.1, session {session}"
        token = alice.token
    closed = await line_of(caplog, "closed alice")
    assert re.fullmatch(rf"closed alice{on} from 127\.0\.0\.1, session {re.escape(session)}, "
                        r"after \d+\.\d s: code 1000 by the client", closed.getMessage())
    # The keys a log pipeline follows a user by, across nodes; never the token.
    keys = {json.loads(JsonFormatter().format(r))["event"]: json.loads(JsonFormatter().format(r))
            for r in (signed, closed)}
    for record in keys.values():
        assert (record["user"], record["session"], record["peer"]) == (
            "alice", session, "127.0.0.1")
        assert record.get("node") == (on.removeprefix(" on node ") or None)
    assert keys["close"]["by"] == "client"
    assert all(token not in r.getMessage() for r in conn_lines(caplog))


async def test_a_connection_a_proxy_drops_is_logged_as_lost_not_closed_by_the_client(
        server_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A proxy's timeout (nginx, HAProxy) ends the TCP connection with no close frame;
    so does a network that breaks. The line used to say "by the client"."""
    caplog.set_level(logging.INFO, logger="cfm_server.conn")
    server = await server_factory()
    target = server.url
    port = int(re.search(r":(\d+)/", target).group(1))  # type: ignore[union-attr]
    proxy = FaultyProxy(port)
    await proxy.start()
    try:
        via = f"ws://127.0.0.1:{proxy.url.rsplit(':', 1)[1].split('/')[0]}/ws"
        client = await WireClient.open(via)
        welcome = await client.hello("bob")
        session = welcome["session"]
        proxy.cut()  # the proxy gives up on it: RST both ways, no close frame
        closed = await line_of(caplog, "closed bob")
        assert re.fullmatch(
            rf"closed bob{where(session)} from 127\.0\.0\.1, session {re.escape(session)}, "
            r"after \d+\.\d s: connection lost \(no close frame\)", closed.getMessage())
        record = json.loads(JsonFormatter().format(closed))
        assert (record["code"], record["by"]) == (None, "lost")
    finally:
        await proxy.close()
