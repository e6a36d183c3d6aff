"""The bare-library yardstick: a websockets server that only relays, for ``cfm bench``.

It speaks just enough of cfm.v1 for the bench driver: ``hello`` → a ``welcome``-shaped
map, ``join`` → the socket joins a room set (``joined``, a ``member`` frame to the
others, and ``since`` replays from an in-memory list), ``say`` → decode, build the
``msg`` map, encode it once, ``ack`` the sender and ``websockets.broadcast()`` it to
the other members; ``presence`` → broadcast to the user's rooms. No validation, no
store, no limits, no metrics: whatever cfm costs above this is cfm's own work.

    python benchmarks/baseline_server.py --port 9001

Only websockets and msgpack are imported, so the yardstick reads in one sitting.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import time
from typing import Any

import msgpack
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

SUBPROTOCOL = "cfm.v1"
REPLAY_LIMIT = 500  # as cfm's default: the rest is paged with history{after}
HISTORY_LIMIT = 200

packb = msgpack.packb
unpackb = msgpack.unpackb


class Room:
    __slots__ = ("log", "members", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: set[ServerConnection] = set()
        self.log: list[dict[str, Any]] = []  # msg maps without "t", seq = index + 1


class Relay:
    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}
        self.sessions = itertools.count(1)

    async def handle(self, ws: ServerConnection) -> None:
        name = ""
        joined: list[Room] = []
        try:
            async for data in ws:
                frame = unpackb(data, raw=False)
                t = frame.get("t")
                if t == "say":
                    room = self.rooms[frame["room"]]
                    now = time.time_ns() // 1_000_000
                    msg = {"room": room.name, "seq": len(room.log) + 1, "from": name,
                           "text": frame["text"], "ts": now, "kind": "text", "id": frame["id"]}
                    room.log.append(msg)
                    await ws.send(packb({"t": "ack", "id": frame["id"], "room": room.name,
                                         "seq": msg["seq"], "ts": now}))
                    broadcast((m for m in room.members if m is not ws), packb({"t": "msg", **msg}))
                elif t == "hello":
                    name = frame["name"].lower()
                    await ws.send(packb({
                        "t": "welcome", "v": 1, "session": f"s{next(self.sessions)}",
                        "name": name, "token": "baseline", "display": name, "status": "online",
                        "psm": "", "server": "baseline",
                        "limits": {"max_text": 4096, "max_frame": 65536,
                                   "replay": REPLAY_LIMIT, "history": HISTORY_LIMIT},
                        "rooms": [], "contacts": [],
                    }))
                elif t == "join":
                    room = self.rooms.get(frame["room"])
                    if room is None:
                        room = self.rooms[frame["room"]] = Room(frame["room"])
                    if ws not in room.members:
                        broadcast(room.members, packb({"t": "member", "room": room.name,
                                                       "name": name, "op": "join"}))
                        room.members.add(ws)
                        joined.append(room)
                    since = frame.get("since")
                    replay = room.log[since:since + REPLAY_LIMIT] if since is not None else []
                    more = since is not None and len(room.log) > since + REPLAY_LIMIT
                    await ws.send(packb({"t": "joined", "room": room.name, "seq": len(room.log),
                                         "epoch": "baseline", "members": [], "more": more}))
                    for msg in replay:
                        await ws.send(packb({"t": "msg", **msg}))
                elif t == "history":
                    room = self.rooms[frame["room"]]
                    after = frame.get("after") or 0
                    limit = min(frame.get("limit") or 50, HISTORY_LIMIT)
                    await ws.send(packb({"t": "history", "room": room.name,
                                         "msgs": room.log[after:after + limit],
                                         "more": len(room.log) > after + limit}))
                elif t == "presence":
                    data = packb({"t": "presence", "name": name, "display": name,
                                  "status": frame.get("status", "online"), "psm": "",
                                  "bot": False})
                    targets: set[ServerConnection] = set()
                    for room in joined:
                        targets |= room.members
                    broadcast(targets, data)
        except ConnectionClosed:
            pass
        finally:
            for room in joined:
                room.members.discard(ws)


async def main(host: str, port: int) -> None:
    relay = Relay()
    async with serve(relay.handle, host, port, subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                     compression=None, max_size=1 << 16) as server:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"baseline listening on ws://{host}:{port}/ws", flush=True)
        await stop.wait()
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
