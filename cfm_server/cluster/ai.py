"""The AI contacts on a cluster: run once, by whichever node holds a lease.

A single node runs its AI contacts in-process: SDK clients of its own port. A cluster
must run them once, or every persona would answer every message once per node. So:

- every node, at start, makes sure each persona's identity exists (a bot account, so no
  person claims the handle) and marks it as the server's own bot (no per-kind rate
  limits), as a single node does, but without giving it a new token;
- the node holding the lease ``ai-contacts`` (``Lease.keep``) runs them: when it gets the
  lease it gives each persona a fresh token (only it knows them), reads their memory,
  today's quota counts and the kill switch from Redis, and starts them against its own
  port; when it loses the lease (or stops) it stops them. Another node takes over
  within ``ai_lease_ttl`` of the holder's death (their sessions end with it, so the
  personas show offline until then);
- the quotas are cluster-wide: each successful backend call is counted in a hash per
  UTC day in Redis (``HINCRBY``) and a new holder starts from those counts. The holder
  reserves slots in memory as a single node does (one holder at a time, so nothing
  else counts meanwhile);
- the kill switch is cluster-wide: ``cfm:ai-kill-switch`` (``set_kill_switch``, or
  ``cfm admin ai-kill-switch on --redis URL``), followed by every node through a channel;
  it is on if Redis or the node's own ``[ai] kill_switch`` says so;
- a persona's memory (a single node's ``<data dir>/ai/<persona>.memory.json``) is the
  string ``cfm:ai-memory:<persona>``, written only while the lease is held (a holder
  that lost it does not overwrite its successor's).

Why a lease and not a separate ``cfm bot ai`` process: the personas need the server's
own view of their callers (account age, address) for the quotas, the bot identities
must exist before anyone can claim them, and operators then run one kind of process.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfm_common import rules
from cfm_server.ai.guards import DailyQuotas, Reservation, utc_day
from cfm_server.ai.memory import PersonaMemory
from cfm_server.cluster import keys
from cfm_server.cluster.batcher import Batcher
from cfm_server.cluster.errors import ClusterError
from cfm_server.cluster.lease import Lease
from cfm_server.cluster.outage import level
from cfm_server.store import IdentityTaken, StoreError

if TYPE_CHECKING:
    from cfm_server.ai import AIConfig, AIContacts, Persona
    from cfm_server.ai.engine import OfflineEngine
    from cfm_server.ai.metrics import AIMetrics
    from cfm_server.cluster.node import ClusterNode
    from cfm_server.hub import Hub

log = logging.getLogger(__name__)

LEASE = "ai-contacts"
QUOTA_DAYS_KEPT = 2 * 86_400  # a day's counts expire this long after its last count
MEMORY_WRITE_TIMEOUT = 10.0  # seconds a memory write waits for Redis
# Beyond the lease's ttl, how long a new holder may take to sign the personas in: every
# node holds a 'gone' of theirs back this long, so their node's death is no flap
# (cluster/comeback.py).
TAKEOVER_START = 5.0


class SharedQuotas(DailyQuotas):
    """``DailyQuotas`` whose successful calls are also counted in Redis (``record``), and
    which starts from Redis's counts of the day (``seed``)."""

    def __init__(self, *args: Any, record: Callable[[date, list[str]], None],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._record = record

    def seed(self, day: date, counts: dict[bytes, bytes]) -> None:
        """Today's counts, as Redis holds them (the previous holders' calls)."""
        if self._roll_over() != day:
            return
        for field, value in counts.items():
            kind, _, who = field.decode().partition(":")
            n = int(value)
            if kind == "t":
                self._used_total = max(self._used_total, n)
            elif kind == "u" and who:
                self._used[who] = max(self._used[who], n)
            elif kind == "a" and who:
                self._used_by_address[who] = max(self._used_by_address[who], n)

    def settle(self, reservation: Reservation, *, success: bool) -> None:
        today = self._roll_over() == reservation.day
        super().settle(reservation, success=success)
        if success and today:
            fields = ["t", f"u:{reservation.user}"]
            if reservation.address is not None:
                fields.append(f"a:{reservation.address}")
            self._record(reservation.day, fields)


class RedisMemory(PersonaMemory):
    """A persona's memory in ``cfm:ai-memory:<persona>``: read when the node takes the
    lease, written (``write``, on a thread) only while it holds it."""

    def __init__(self, key: str, engine: OfflineEngine, text: str | None, *,
                 batcher: Batcher, lease: Lease, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(Path(key), engine)  # the path only names it in log lines
        self._text = text
        self._batcher = batcher
        self._lease = lease
        self._loop = loop

    def load(self) -> int:
        return self.load_text(self._text) if self._text else 0

    def write(self, text: str) -> None:
        if not self._lease.held:
            raise OSError("the AI contacts' lease is not held here any more")

        async def put() -> None:
            await self._batcher.call("SET", str(self.path), text.encode())

        try:
            asyncio.run_coroutine_threadsafe(put(), self._loop).result(MEMORY_WRITE_TIMEOUT)
        except (ClusterError, TimeoutError) as exc:
            raise OSError(f"Redis: {exc}") from None
        self._saved = self._snapshot_at


async def set_kill_switch(batcher: Batcher, on: bool) -> None:
    """Turn the AI contacts' kill switch on or off for the whole cluster."""
    flag = b"1" if on else b"0"
    await asyncio.gather(batcher.call("SET", keys.AI_KILL_SWITCH, flag),
                         batcher.call("PUBLISH", keys.AI_KILL_SWITCH_CHANNEL, flag))


async def kill_switch_in_redis(url: str, on: bool) -> None:
    """``set_kill_switch`` for a command (``cfm admin ai-kill-switch``): its own
    connection. Redis's errors (out of reach, a refused password) go up as they are."""
    from cfm_server.cluster.rediscluster import one_shot

    flag = b"1" if on else b"0"
    async with one_shot(url) as client:
        await client.set(keys.AI_KILL_SWITCH, flag)
        await client.publish(keys.AI_KILL_SWITCH_CHANNEL, flag)


class ClusterAI:
    """The AI contacts of one node of a cluster: ``reserve`` at start (every node),
    ``start`` once listening (the lease's keeper), ``stop`` at shutdown."""

    def __init__(self, node: ClusterNode, hub: Hub, config: AIConfig, *, ttl: float,
                 url: Callable[[], tuple[str, Any]], metrics: AIMetrics) -> None:
        self._node = node
        self._hub = hub
        self.config = config
        self._url = url  # how this node reaches its own port (and its TLS context)
        self._metrics = metrics
        self.lease = Lease(node.broker.batcher, LEASE, holder=node.node_id, ttl=ttl)
        self.running: AIContacts | None = None
        self.kill_switch = False  # Redis's
        self._keeper: asyncio.Task[None] | None = None
        self._tokens: tempfile.TemporaryDirectory[str] | None = None
        self._starting: asyncio.Task[None] | None = None

    @property
    def _batcher(self) -> Batcher:
        return self._node.broker.batcher

    def reserve(self) -> None:
        """Every persona's identity exists and is the server's bot, with no new token."""
        world = self._hub.world
        for persona in self.config.personas:
            user = world.users.get(persona.handle)
            if user is None:
                # Its token: the holder's to give. Live here once Redis has it (a node
                # that made it first wins); one whose write failed is made by the
                # holder (``_start_contacts``), and the handle is the server's bot
                # meanwhile (nobody claims it).
                provisioned = self._hub.provision_bot(persona.handle, persona.display,
                                                      persona.psm, persona.status)
                if provisioned is not None:
                    provisioned.commit.add_done_callback(_log_reserve_failure)
            elif not user.record.bot:
                log.warning("AI contact %s not started: a person holds that handle",
                            persona.handle)
            else:
                world.admission.add_server_bot(persona.handle,
                                               {persona.display, user.record.display})
        # Theirs: the bots, and those being made now (live once Redis has them).
        ours = [rules.normalize_name(p.handle) for p in self.config.personas
                if (u := world.users.get(p.handle)) is None or u.record.bot]
        self._node.present.comebacks.expect(ours, within=self.lease.ttl + TAKEOVER_START)

    async def start(self) -> None:
        await self._node.broker.listen(keys.AI_KILL_SWITCH_CHANNEL, self._on_kill_switch)
        self._keeper = asyncio.create_task(self.lease.keep(self._acquired, self._lost),
                                           name="cfm-ai-lease")

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()  # stops the contacts (saving memory), releases the lease
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None
        await self._lost()

    def _on_kill_switch(self, data: bytes) -> None:
        self.kill_switch = data.strip() == b"1"
        log.warning("AI kill switch %s for the cluster", "on" if self.kill_switch else "off")
        if self.running is not None:
            self.running.set_kill_switch(self.kill_switch or self.config.kill_switch)

    async def _acquired(self) -> None:
        """This node holds the lease: start the personas (in a task of its own, so the
        keeper goes on renewing the lease meanwhile)."""
        self._starting = asyncio.create_task(self._start_while_held(), name="cfm-ai-start")

    async def _start_while_held(self) -> None:
        while self.lease.held:
            try:
                await self._start_contacts()
                return
            except ClusterError as exc:
                log.log(level(exc), "the AI contacts cannot start now (%s); trying again",
                        exc)
                await self._stop_contacts()
            except StoreError as exc:  # a persona's identity or token was not stored
                log.log(level(exc.__cause__, logging.WARNING),
                        "the AI contacts cannot start now (%s); trying again", exc)
                await self._stop_contacts()
                retry_ms = getattr(exc, "retry_ms", None)
                await asyncio.sleep(retry_ms / 1000 if retry_ms else
                                    max(self.lease.ttl / 3, 0.1))
            except Exception:
                log.exception("the AI contacts did not start; trying again")
                await self._stop_contacts()
                await asyncio.sleep(max(self.lease.ttl / 3, 0.1))

    async def _start_contacts(self) -> None:
        from cfm_common.tokens import write_token
        from cfm_server.ai import start_ai_contacts
        from cfm_server.ai.service import hub_callers, make_guards

        batcher, config = self._batcher, self.config
        day = utc_day(time.time())
        # A fresh token for each (only this node knows them), and the identity of one
        # whose reserve failed; live here, and handed out, only once Redis has them all:
        # a failed write raises StoreError (tried again), nothing of it left live.
        provisioned = [(p, made) for p in config.personas
                       if (made := self._hub.provision_bot(p.handle, p.display, p.psm,
                                                           p.status)) is not None]
        await asyncio.gather(*(made.commit for _, made in provisioned))
        personas = [p for p, _ in provisioned]
        memories, counts, kill = await asyncio.gather(
            asyncio.gather(*(batcher.call("GET", keys.ai_memory(p.key)) for p in personas)),
            batcher.call("HGETALL", keys.ai_quota(day.isoformat())),
            batcher.call("GET", keys.AI_KILL_SWITCH))
        self.kill_switch = kill == b"1"
        self._tokens = tempfile.TemporaryDirectory(prefix="cfm-ai-")
        token_dir = Path(self._tokens.name)
        for persona, made in provisioned:
            write_token(token_dir / f"{persona.key}.token", made.token)
        guards = make_guards(config, metrics=self._metrics, who=hub_callers(self._hub, config))
        quotas = SharedQuotas(config.user_daily_quota, config.global_daily_quota,
                              per_address=config.address_daily_quota,
                              per_new_user=config.new_user_daily_quota, record=self._count)
        flat: list[bytes] = list(counts or [])  # HGETALL's reply: field, value, …
        quotas.seed(day, dict(zip(flat[::2], flat[1::2], strict=True)))
        guards.quotas = quotas
        guards.kill_switch = config.kill_switch or self.kill_switch
        texts = {p.key: (m.decode("utf-8", "replace") if m else None)
                 for p, m in zip(personas, memories, strict=True)}
        loop = asyncio.get_running_loop()

        def memory(persona: Persona, engine: OfflineEngine) -> PersonaMemory:
            return RedisMemory(keys.ai_memory(persona.key), engine, texts.get(persona.key),
                               batcher=batcher, lease=self.lease, loop=loop)

        url, tls = self._url()
        self.running = await start_ai_contacts(
            config, url, token_dir=token_dir, personas=tuple(personas), ssl=tls,
            guards=guards, memories=memory)
        log.info("AI contacts run on this node (%s holds the lease)", self.lease.token)

    async def _lost(self) -> None:
        starting, self._starting = self._starting, None
        if starting is not None:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        await self._stop_contacts()

    async def _stop_contacts(self) -> None:
        running, self.running = self.running, None
        if running is not None:
            await running.stop()  # saves their memory (while the lease is still held)
        if self._tokens is not None:
            self._tokens.cleanup()
            self._tokens = None

    def _count(self, day: date, fields: list[str]) -> None:
        """One successful backend call, counted in Redis (at most once: a lost count
        lets a new holder allow one call too many, never refuses one too many)."""
        key = keys.ai_quota(day.isoformat())
        calls = [self._batcher.call("HINCRBY", key, f, 1) for f in fields]
        calls.append(self._batcher.call("EXPIRE", key, QUOTA_DAYS_KEPT))
        for call in calls:
            call.add_done_callback(_log_failure)


def _log_reserve_failure(commit: asyncio.Future[None]) -> None:
    if commit.cancelled():
        return
    exc = commit.exception()
    if isinstance(exc, IdentityTaken):
        return  # another node made it first: its record comes through the log
    if exc is not None:
        log.log(level(exc.__cause__, logging.WARNING), "an AI contact's identity was not "
                "stored (%s); the node running them makes it", exc)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        exc = future.exception()
        log.log(level(exc), "an AI quota count was not stored in Redis: %s", exc)
