"""A server played by hand for :class:`cfm_common._core.ClientCore`: no socket, no event
loop, no sleeps. A test says what the server sends and when (``now`` is a number it
moves), and reads back what the core wrote and the events it handed on."""

from __future__ import annotations

from typing import Any

import msgpack

from cfm_common import codec
from cfm_common import frames as f
from cfm_common._core import ClientCore
from cfm_common._outbox import Outgoing

# Wide open: only the tests that are about pacing set budgets.
NO_LIMITS: dict[str, Any] = {}


def welcome(name: str = "alice", rooms: tuple[f.RoomState, ...] = (),
            limits: dict[str, Any] | None = None) -> f.Welcome:
    return f.Welcome(v=1, session="s1", name=name, token="tok", display=name.title(),
                     status="online", psm="", server="test", limits=limits or NO_LIMITS,
                     rooms=rooms, contacts=())


def msg(room: str, seq: int, sender: str = "bob", text: str | None = None,
        id: str | None = None) -> f.Msg:
    return f.Msg(room=room, seq=seq, sender=sender, text=text or f"m{seq}", ts=1000 + seq,
                 kind="text", id=id)


def stored(room: str, seq: int, sender: str = "bob") -> f.StoredMsg:
    return f.StoredMsg(room=room, seq=seq, sender=sender, text=f"m{seq}", ts=1000 + seq,
                       kind="text")


class Wire:
    """One core and the hand-played server it talks to."""

    def __init__(self, name: str = "alice", **options: Any) -> None:
        self.now = 0.0
        self.events: list[Any] = []
        self.core = ClientCore(name, emit=lambda event, _epoch: self.events.append(event),
                               **options)

    def connect(self, **welcome_options: Any) -> f.Welcome:
        w = welcome(**welcome_options)
        self.core.set_state(self.core.state.CONNECTING)
        self.core.connection_made(w, self.now)
        return w

    def drop(self) -> None:
        self.core.connection_lost(self.now)
        self.core.set_state(self.core.state.RECONNECTING)

    def send(self, frame: Any) -> bool:
        """The server sends ``frame``; True if the core's writer has something new."""
        return self.core.receive_data(codec.encode(frame), self.now)

    def written(self) -> list[dict[str, Any]]:
        """Every frame the core lets out at ``now``, as the maps on the wire."""
        out = []
        while True:
            data, _ = self.core.data_to_send(self.now)
            if data is None:
                return out
            out.append(msgpack.unpackb(data))

    def wait(self) -> float | None:
        """How long the writer would sleep now (None: until something happens)."""
        data, wait = self.core.data_to_send(self.now)
        assert data is None, "call written() first"
        return wait

    def say(self, text: str, room: str = "#lobby", id: str | None = None) -> Outgoing:
        frame = f.Say(text=text, id=id or f"id-{text}", room=room)
        return self.core.message(frame, "say")

    def msgs(self, room: str | None = None) -> list[tuple[str, int]]:
        return [(e.room, e.seq) for e in self.events
                if isinstance(e, f.Msg) and room in (None, e.room)]

    def ack(self, entry: Outgoing, seq: int) -> None:
        frame = entry.frame
        assert isinstance(frame, f.Say)
        room = frame.room
        assert room is not None
        self.send(f.Ack(room=room, seq=seq, ts=2000 + seq, id=frame.id))
