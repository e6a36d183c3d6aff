"""What an idle signed-in connection keeps (docs/performance.md, "Idle memory").

The server holds tens of thousands of idle connections, so what each keeps after the
sign-in is its memory: not the upgrade's headers, no empty queues, and an instance dict
that CPython can share among the connections. Each test below is one of those cuts,
checked on a real connection.
"""

from __future__ import annotations

from typing import Any

from cfm_server.session import Session
from cfm_server.wsconn import MeteredConnection
from tests.wire import eventually, signed_in


def only_connection(server: Any) -> MeteredConnection:
    connections = list(server._ws.connections)
    assert len(connections) == 1, connections
    ws = connections[0]
    assert isinstance(ws, MeteredConnection)
    return ws


async def idle_after_join(server: Any) -> tuple[MeteredConnection, Session]:
    ws = only_connection(server)
    session = ws.session
    assert isinstance(session, Session)
    # The joined answer is produced by the pump; idle once it is all out.
    await eventually(lambda: session._held is None and session._out is None)
    return ws, session


async def test_an_idle_session_keeps_no_upgrade_headers_nor_empty_queues(server) -> None:
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#lobby"})
        await alice.recv_until("joined")
        ws, session = await idle_after_join(server)
        assert ws.response is None
        assert ws.request is not None and not ws.request.headers
        assert session.limits.abuse.events is None  # no error so far
        # Pinged by the server's keepalive wheel, not by a task of its own.
        assert ws.keepalive_task is None
        assert len(server._guard.keepalive) == 1
        # Still served after all that: the next frame is answered.
        await alice.send({"t": "join", "room": "#second"})
        assert (await alice.recv_until("joined"))["room"] == "#second"


async def test_a_connection_uses_few_enough_attribute_names_to_share_its_dict_keys(
    server,
) -> None:
    # CPython (3.11+) shares one key table among the instance dicts of a class only while
    # its instances use fewer than 30 attribute names; beyond, every connection has a
    # dict of its own (1.6 KB instead of ~0.3 KB of values).
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": "#lobby"})
        await alice.recv_until("joined")
        ws, _ = await idle_after_join(server)
        assert len(vars(ws)) < 30, sorted(vars(ws))


async def test_an_error_makes_the_abuse_meter_count(server) -> None:
    async with signed_in(server.url, "alice") as alice:
        await alice.send({"t": "join", "room": "not a room name"})
        assert (await alice.recv_until("error"))["code"]
        session = only_connection(server).session
        assert isinstance(session, Session)
        assert session.limits.abuse.events is not None
        assert len(session.limits.abuse.events) == 1
