"""Random interleavings of say / drop / reconnect / resume across three SDK clients.

A hypothesis ``RuleBasedStateMachine`` drives three users against one real server on
127.0.0.1: they say things in ``#lobby`` and in DMs, get their connections cut (the SDK
reconnects by itself), and close and reopen their client (a new ``Client`` resuming
from its token and seen file). After every step the invariant waits for the views to
settle and checks that each user's view of each room — across all of its clients'
lifetimes — is exactly the server's history: nothing missing, nothing twice.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from cfm_common._backoff import Backoff
from cfm_common.client import Client
from cfm_common.frames import Msg
from tests.conftest import make_config
from tests.sdk.conftest import Recorder

LOBBY = "#lobby"
NAMES = ("alice", "bob", "carol")
STEP_TIMEOUT = 15.0

users = st.integers(0, len(NAMES) - 1)


async def gather(*coros: Any) -> list[Any]:
    return await asyncio.gather(*coros)


class ChatMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        from cfm_server.server import Server

        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="cfm-stateful-"))
        self.server = Server(make_config(self.tmp, data_dir=self.tmp / "data",
                                         rate_limits=False))
        self.clients: dict[str, Client] = {}
        self.recorders: dict[str, Recorder] = {}
        self.views: dict[str, list[Msg]] = {name: [] for name in NAMES}  # older lifetimes
        self.tokens: dict[str, str | None] = {}
        self.lifetimes = 0
        self.said = 0
        self.run(self._start())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, STEP_TIMEOUT))

    async def _start(self) -> None:
        await self.server.start()
        for name in NAMES:
            await self._open(name)
            await self.clients[name].join(LOBBY)

    async def _open(self, name: str) -> None:
        client = Client(self.server.url, name, token=self.tokens.get(name), token_file=False,
                        seen_file=self.tmp / f"{name}.seen",
                        backoff=Backoff(0.01, 0.04, rng=random.Random(self.lifetimes)))
        self.lifetimes += 1
        await client.connect()
        self.tokens[name] = client.token
        self.clients[name] = client
        self.recorders[name] = Recorder(client)

    # --- rules --------------------------------------------------------------------------

    @rule(i=users, n=st.integers(1, 4))
    def say_in_lobby(self, i: int, n: int) -> None:
        client = self.clients[NAMES[i]]
        self.run(gather(*(client.say(f"{NAMES[i]} {self.said + k}", room=LOBBY)
                          for k in range(n))))
        self.said += n

    @rule(i=users, j=users)
    def say_in_dm(self, i: int, j: int) -> None:
        if i == j:
            return
        self.run(self.clients[NAMES[i]].say(f"to {NAMES[j]} {self.said}", to=NAMES[j]))
        self.said += 1

    @rule(i=users, n=st.integers(0, 4), delay=st.sampled_from([0.0, 0.0005, 0.002, 0.005]))
    def drop_mid_burst(self, i: int, n: int, delay: float) -> None:
        """Send ``n`` says without waiting, then cut the connection under them ``delay``
        seconds later: before they leave, while they commit, or between ack and read."""
        name = NAMES[i]
        client = self.clients[name]

        async def go() -> None:
            says = [asyncio.ensure_future(client.say(f"{name} burst {self.said + k}",
                                                     room=LOBBY)) for k in range(n)]
            await asyncio.sleep(delay)
            for session in list(self.server.hub.users[name].sessions):
                session.ws.transport.abort()  # a network failure: no close frame
            await asyncio.gather(*says)  # the SDK reconnects and resends them

        self.run(go())
        self.said += n

    @rule(i=users)
    def close_and_resume(self, i: int) -> None:
        """The application exits and starts again: a new Client from the saved state."""
        name = NAMES[i]

        async def go() -> None:
            client, recorder = self.clients[name], self.recorders[name]
            await client.close()
            await recorder.wait(lambda r: r.ended)
            self.views[name].extend(recorder.msgs())
            await self._open(name)

        self.run(go())

    # --- the promise --------------------------------------------------------------------

    def view(self, name: str, room: str) -> list[tuple[int, str, str]]:
        msgs = [*self.views[name], *self.recorders[name].msgs()]
        return [(m.seq, m.sender, m.text) for m in msgs if m.room == room]

    @invariant()
    def every_view_is_the_servers_history(self) -> None:
        hub, store = self.server.hub, self.server.store

        async def settle() -> None:
            for name in NAMES:
                for room in sorted(hub.users[name].rooms):
                    latest = hub.rooms[room].seq
                    await self.recorders[name].wait(
                        lambda _r, name=name, room=room, latest=latest:
                        latest == 0 or any(s == latest for s, _, _ in self.view(name, room)))

        self.run(settle())
        for name in NAMES:
            for room in hub.users[name].rooms:
                history = [(m.seq, m.sender, m.text)
                           for m in store.history_after(room, 0, 100_000)]
                assert self.view(name, room) == history, (name, room)

    def teardown(self) -> None:
        async def stop() -> None:
            for client in self.clients.values():
                await client.close()
            await self.server.stop(close_code=1001)

        try:
            self.run(stop())
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


ChatMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestChatMachine = ChatMachine.TestCase
