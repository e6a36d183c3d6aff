"""Cluster mode over a Redis Cluster (several masters sharing the 16384 hash slots).

Asked for by the URL: ``redis+cluster://HOST:PORT/0`` (or ``rediss+cluster://``) names
one node of the Redis Cluster, the seed; the slot map is read from it (``CLUSTER
SLOTS``). An explicit scheme rather than detecting ``cluster_enabled:1``: the wiring is
decided before anything is connected, and a plain ``redis://`` URL on a cluster node
fails with a message naming the scheme (the first MOVED reply) instead of half working.

What changes against one Redis:

- :class:`ClusterBatcher`: each loop turn's calls still go out together, but as one
  pipeline per master, all at once; appends are merged (``eval_each``) only within one
  slot. A call goes to the owner of its key's slot; a node keeps the order of the calls
  it is sent, and every key of a room (or of ``{state}``, ``{presence}``) is on one
  slot, so the order that matters (a room's appends) is kept. MOVED updates the map
  (and re-reads it) and sends the call again to the new owner, ASK sends it once to the
  node named, behind ``ASKING``; both are replies of commands that did not run. A
  script is loaded on every master.
- pub/sub stays classic (PUBLISH / SUBSCRIBE), but a channel is subscribed on the master
  owning its slot (:class:`ShardedSubscriber`): that is where it is published, so it
  arrives as fast as on one Redis. A Redis Cluster still forwards every PUBLISH to every
  node over its bus (traffic per message and node); sharded pub/sub (SPUBLISH /
  SSUBSCRIBE, the channels are named on their room's slot already) would end that.
- one-shot clients of the admin commands: :func:`one_shot_client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis import exceptions as rx
from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from cfm_server.cluster.batcher import CONNECTION_ERRORS, Batcher
from cfm_server.cluster.errors import ClusterError
from cfm_server.cluster.outage import Outage
from cfm_server.cluster.scripts import Script
from cfm_server.cluster.subscriber import Subscriber

log = logging.getLogger(__name__)

CLUSTER_SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}
# Commands of no key: any master answers them.
_KEYLESS = {b"PING", b"INFO", b"SCRIPT", b"CLUSTER", b"TIME"}
_MAX_REDIRECTS = 5  # a slot moving again and again: give up (the call fails, retryable)

Address = tuple[str, int]


def split_url(url: str) -> tuple[str, bool]:
    """``(plain URL of the seed, True)`` for a Redis Cluster URL, ``(url, False)`` else."""
    for scheme, plain in CLUSTER_SCHEMES.items():
        if url.startswith(scheme):
            return plain + url[len(scheme):], True
    return url, False


def one_shot_client(url: str, **kwargs: Any) -> Any:
    """A client for an admin command's few requests (``Redis`` or ``RedisCluster``; both
    have ``get``/``set``/``sadd``/``publish``/``aclose``)."""
    seed, cluster = split_url(url)
    if cluster:
        return RedisCluster.from_url(seed, **kwargs)
    return Redis.from_url(seed, **kwargs)


@contextlib.asynccontextmanager
async def one_shot(url: str, *, timeout: float = 10) -> AsyncIterator[Any]:
    """``one_shot_client`` for an admin command, closed after. Redis's errors go up as
    they are: the CLI (``admin_cluster_cli.run_on_redis``) makes each one line that
    says what to fix."""
    client = one_shot_client(url, decode_responses=False, socket_timeout=timeout,
                             socket_connect_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


def _name(value: Any) -> bytes:
    return value.upper() if isinstance(value, bytes) else str(value).upper().encode()


def _encode(key: Any) -> bytes:
    if isinstance(key, bytes):
        return key
    return str(key).encode()


def slot_of(args: tuple[Any, ...]) -> int | None:
    """The slot a command must run on; None for a command of no key. ClusterError for a
    script given keys of two slots (it could not run on a Redis Cluster)."""
    name = _name(args[0])
    if name in (b"EVALSHA", b"EVAL"):
        keys = args[3:3 + int(args[2])]
    elif name in _KEYLESS:
        keys = ()
    else:  # the first key decides; a multi-key command of two slots gets CROSSSLOT
        keys = args[1:2]
    slots = {key_slot(_encode(k)) for k in keys}
    if len(slots) > 1:
        raise ClusterError(f"{args[0]!r} is given keys of {len(slots)} slots: {keys!r}")
    return slots.pop() if slots else None


class ClusterBatcher(Batcher):
    in_flight = 1  # one pipeline per master at a time: a turn's are sent together

    def __init__(self, seed: Redis, *, timeout: float = 5.0,
                 backoff: tuple[float, float] = (0.05, 2.0), outage: Outage | None = None
                 ) -> None:
        super().__init__(seed, timeout=timeout, backoff=backoff, outage=outage)
        self._seed = seed
        self._clients: dict[Address, Redis] = {}
        self._owners: list[Address] = []  # by slot; empty: read the map before sending
        self.redirects = 0  # MOVED and ASK replies followed (for tests and metrics)

    async def close(self) -> None:
        await super().close()
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        self._clients.clear()

    # --- the slot map ------------------------------------------------------------------

    def _node(self, address: Address) -> Redis:
        client = self._clients.get(address)
        if client is None:
            # The seed's settings (password, TLS, timeouts), another host and port.
            pool = self._seed.connection_pool
            kwargs = {**pool.connection_kwargs, "host": address[0], "port": address[1]}
            client = self._clients[address] = Redis(connection_pool=ConnectionPool(
                connection_class=pool.connection_class, **kwargs))
        return client

    async def refresh(self) -> None:
        """Read the slot map from the seed, or else from any master known."""
        sources = [self._seed, *self._clients.values()]
        error: BaseException | None = None
        for source in sources:
            try:
                reply = await self._bounded(source.execute_command("CLUSTER SLOTS"))
            except (*CONNECTION_ERRORS, rx.ResponseError) as exc:
                error = exc
                continue
            self._owners = self._parse_slots(reply, source)
            return
        assert error is not None
        raise error

    def _parse_slots(self, reply: Any, source: Redis) -> list[Address]:
        owners: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        seed_host = source.connection_pool.connection_kwargs.get("host", "127.0.0.1")
        for row in reply:
            start, end, master = int(row[0]), int(row[1]), row[2]
            host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
            address = (host or seed_host, int(master[1]))  # "" : the node we asked
            owners[start:end + 1] = [address] * (end - start + 1)
        missing = owners.count(None)
        if missing:
            # Not up yet or a master lost: "unreachable" for now, the probe tries again.
            raise rx.ConnectionError(f"the Redis Cluster has no master for {missing} slots")
        return [a for a in owners if a is not None]

    def _owner(self, slot: int | None) -> Address:
        return self._owners[0 if slot is None else slot]

    def _merge_key(self, call: Any) -> Any:
        """Only calls of one slot share a script (every key of a room is on one slot)."""
        return key_slot(_encode(call.keys[0]))

    # --- overrides of one Redis --------------------------------------------------------

    def _loads(self, conn: Any, commands: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        # Not ahead of the calls here: a script is loaded on every master at its first
        # NOSCRIPT (_reload), as before. Loading ahead made a race show in
        # test_dm_and_room_messages_cross_nodes_once_in_order_and_acked (6 runs in 10):
        # taken for an epoch race, it was the resync of a new master's pub/sub
        # connection skipping a new DM's first messages (Broker._resync, fixed
        # 2026-12-05; with loading ahead the test then passed 60 runs in 60).
        return []

    async def _reload(self, scripts: list[Script]) -> None:
        if not self._owners:
            await self.refresh()
        for script in scripts:
            await asyncio.gather(*(self._bounded(self._node(a).script_load(script.source))
                                   for a in set(self._owners)))

    async def _ping(self) -> None:
        await self.refresh()  # the map may have changed while the cluster was away
        await asyncio.gather(*(self._bounded(self._node(a).ping())
                               for a in set(self._owners)))

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if not self._owners:
            await self.refresh()
        replies: list[Any] = [None] * len(commands)
        slots: list[int | None] = []
        for i, command in enumerate(commands):
            try:
                slots.append(slot_of(command))
            except ClusterError as exc:
                slots.append(None)
                replies[i] = exc  # answered here: never sent
        pending = [i for i, r in enumerate(replies) if r is None]
        asking: dict[int, Address] = {}
        for _ in range(_MAX_REDIRECTS):
            groups: dict[Address, list[int]] = {}
            for i in pending:  # in the calls' order: each node keeps it
                groups.setdefault(asking.get(i) or self._owner(slots[i]), []).append(i)
            sent = list(groups.items())
            results = await asyncio.gather(
                *(self._pipeline_on(self._node(a), self._commands(idx, commands, asking))
                  for a, idx in sent),
                return_exceptions=True)
            retry: list[int] = []
            retry_asking: dict[int, Address] = {}
            moved = False
            lost: BaseException | None = None
            for (_address, idx), result in zip(sent, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, CONNECTION_ERRORS):
                        for i in idx:  # never leave a call without an answer
                            replies[i] = ClusterError(f"{type(result).__name__}: {result}")
                        continue
                    lost = result
                    for i in idx:  # maybe run, maybe not: like a lost reply
                        replies[i] = result
                    continue
                answers = iter(result)
                for i in idx:
                    if i in asking:
                        next(answers)  # the +OK of ASKING
                    reply = next(answers)
                    if isinstance(reply, rx.AskError):  # MovedError too: it did not run
                        self.redirects += 1
                        target = (str(reply.host), int(reply.port))
                        if isinstance(reply, rx.MovedError):
                            self._owners[reply.slot_id] = target
                            moved = True
                        else:
                            retry_asking[i] = target
                        retry.append(i)
                    else:
                        replies[i] = reply
            if lost is not None:
                self._owners = []  # read the map again once the cluster is back
                for i in retry:
                    replies[i] = lost
                if all(r is lost for r in replies):
                    raise lost  # nothing answered: the batcher's "Redis is unreachable"
                self._went_down(lost)  # a master is away: probe until all answer
                return replies
            if not retry:
                return replies
            pending, asking = sorted(retry), retry_asking
            if moved:
                with contextlib.suppress(*CONNECTION_ERRORS, rx.ResponseError):
                    await self.refresh()
        for i in pending:
            replies[i] = rx.TryAgainError("the slot kept moving (too many redirections)")
        return replies

    @staticmethod
    def _commands(idx: list[int], commands: list[tuple[Any, ...]],
                  asking: dict[int, Address]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for i in idx:
            if i in asking:  # the target takes the command once, mid-migration
                out.append(("ASKING",))
            out.append(commands[i])
        return out


class ShardedSubscriber:
    """:class:`Subscriber`'s interface over one pub/sub connection per master: a channel
    is subscribed on the master that owns its slot, which is where the scripts and the
    batcher publish it (a room's channel shares the room's hash tag). A Redis Cluster
    also forwards every PUBLISH to every node over its bus, but that hop was measured at
    up to ~40 ms on loopback (Redis 7.0), enough for a client to act on a change made on
    another node before its own node heard of it; a subscription on the owner gets it as
    a single Redis would deliver it. Still classic SUBSCRIBE: after a slot moves, the
    old owner keeps forwarding the channel's messages (the bus hop), so nothing is lost.
    """

    def __init__(self, batcher: ClusterBatcher, seed: Redis,
                 on_message: Callable[[bytes, bytes], None],
                 on_connected: Callable[[], Awaitable[None]], **options: Any) -> None:
        self._batcher = batcher
        def make(client: Redis) -> Subscriber:  # named by its master in the outage's lines
            where = client.connection_pool.connection_kwargs
            return Subscriber(client, on_message, on_connected, **options,
                              part=f"pub/sub {where.get('host')}:{where.get('port')}")

        self._make = make
        kwargs = seed.connection_pool.connection_kwargs
        self._seed_address: Address = (str(kwargs.get("host", "127.0.0.1")),
                                       int(kwargs.get("port", 6379)))
        self._subs: dict[Address, Subscriber] = {self._seed_address: self._make(seed)}
        self._where: dict[str, Address] = {}  # channel → the master it is subscribed on
        self._started = False

    def start(self) -> None:
        self._started = True
        for sub in self._subs.values():
            sub.start()

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self._subs.values()))

    @property
    def connected(self) -> bool:
        return all(s.connected for s in self._subs.values())

    @property
    def connects(self) -> int:
        return sum(s.connects for s in self._subs.values())

    async def _owner(self, channel: str) -> Address:
        if not self._batcher._owners:
            with contextlib.suppress(*CONNECTION_ERRORS, rx.ResponseError):
                await self._batcher.refresh()
        if not self._batcher._owners:  # the cluster is away: the seed forwards it all
            return self._seed_address
        return self._batcher._owners[key_slot(channel.encode())]

    async def subscribe(self, channel: str, timeout: float) -> None:
        address = self._where.get(channel) or await self._owner(channel)
        self._where[channel] = address
        sub = self._subs.get(address)
        if sub is None:
            sub = self._subs[address] = self._make(self._batcher._node(address))
            if self._started:
                sub.start()
        await sub.subscribe(channel, timeout)

    async def unsubscribe(self, channel: str) -> None:
        address = self._where.pop(channel, None)
        if address is not None:
            await self._subs[address].unsubscribe(channel)
