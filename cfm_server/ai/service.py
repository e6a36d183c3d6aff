"""Start every configured persona against a server, in this process, and stop them.

    handle = await start_ai_contacts(ai_config, server.url, token_dir=data_dir / "ai")
    ...
    await handle.stop()

All personas share one backend (one HTTP connection pool), one set of guards (so the
quotas are per user, per address and global across the whole cast) and one metrics
registry. ``cfm serve`` passes ``who=hub_callers(hub, config)`` so that the guards know
each user's address and account age.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from ssl import SSLContext
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry

from cfm_common.client import ClientError
from cfm_common.rules import FINAL_HELLO_REFUSALS
from cfm_server.ai.backends import ChatBackend, OpenAIChatBackend, WorkersAIBackend
from cfm_server.ai.config import AIConfig
from cfm_server.ai.contact import PersonaContact
from cfm_server.ai.engine import OfflineEngine
from cfm_server.ai.guards import Caller, CallerLookup, Guards
from cfm_server.ai.memory import PersonaMemory, memory_file
from cfm_server.ai.metrics import AIMetrics
from cfm_server.ai.mind import PersonaMind
from cfm_server.ai.personas import Persona

if TYPE_CHECKING:
    from cfm_server.state import User


class Hub(Protocol):
    """What the AI contacts read of the hub of the server they run in
    (``cfm_server.hub.Hub``; a Protocol: the hub's package imports the AI settings)."""

    users: dict[str, User]

logger = logging.getLogger(__name__)

# A persona's memory kept where the server says (``start_ai_contacts(memories=...)``).
MemoryFactory = Callable[[Persona, OfflineEngine], PersonaMemory | None]


def hub_callers(hub: Hub, config: AIConfig, *,
                clock: Callable[[], float] = time.time) -> CallerLookup:
    """What the guards need to know of a user, from the hub of the server the AI
    contacts run in: the address of one of its sessions (loopback counts as unknown: the
    local user, or a proxy that is not in ``trusted_proxies``) and whether its account
    is younger than ``new_account_hours``."""
    from cfm_server.netaddr import address_key, is_loopback

    def who(name: str) -> Caller:
        user = hub.users.get(name)
        if user is None:
            return Caller()
        addresses = sorted(address_key(s.ip) for s in user.sessions
                           if s.ip and not is_loopback(s.ip))
        age_hours = (clock() * 1000 - user.record.created_ms) / 3_600_000
        return Caller(addresses[0] if addresses else None,
                      age_hours < config.new_account_hours)

    return who


def make_backend(config: AIConfig) -> ChatBackend | None:
    """The configured backend, or None for the offline engine."""
    if config.backend == "openai":
        return OpenAIChatBackend(
            config.resolved_base_url, config.resolved_model, api_key=config.api_key,
            stream=config.stream, timeout=config.request_timeout,
            max_tokens=config.max_tokens, temperature=config.temperature,
        )
    if config.backend == "workers-ai":
        assert config.account_id and config.api_key  # AIConfig checks this
        return WorkersAIBackend(
            config.account_id, config.api_key, model=config.resolved_model,
            base_url=config.resolved_base_url, timeout=config.request_timeout,
            max_tokens=config.max_tokens, temperature=config.temperature,
        )
    return None


def make_guards(config: AIConfig, *, metrics: AIMetrics,
                clock: Callable[[], float] = time.time,
                who: CallerLookup | None = None) -> Guards:
    return Guards(
        user_daily_quota=config.user_daily_quota, global_daily_quota=config.global_daily_quota,
        address_daily_quota=config.address_daily_quota,
        new_user_daily_quota=config.new_user_daily_quota, who=who,
        request_timeout=config.request_timeout, breaker_threshold=config.breaker_threshold,
        breaker_cooldown=config.breaker_cooldown, kill_switch=config.kill_switch,
        clock=clock, metrics=metrics,
    )


class AIContacts:
    """The running cast: its contacts, shared guards and backend; ``stop()`` ends it."""

    def __init__(self, config: AIConfig, contacts: list[PersonaContact], guards: Guards,
                 backend: ChatBackend | None) -> None:
        self.config = config
        self.contacts = contacts
        self.guards = guards
        self.backend = backend
        self._retrying: set[asyncio.Task[None]] = set()
        # How start_ai_contacts makes a persona's contact (for ``add``).
        self.make: Callable[[Persona], PersonaContact] | None = None

    async def add(self, persona: Persona) -> None:
        """Start one more persona of the cast (its identity was provisioned late); one
        whose start fails for a reason that may pass is tried again (``retry_later``)."""
        make = self.make
        if make is None:  # (the AI contacts are off)
            return
        contact = make(persona)
        try:
            await contact.start()
        except ClientError as exc:
            await contact.stop()
            if _may_pass(exc):
                self.retry_later(lambda: make(persona), exc)
            else:
                logger.error("AI contact %s did not start: %s", persona.handle, exc)
            return
        self.contacts.append(contact)
        logger.info("AI contact %s online", persona.handle)

    def retry_later(self, make: Callable[[], PersonaContact], first: BaseException) -> None:
        """Start a persona again until it signs in: its first start failed for a reason
        that may pass (the server busy, its address over ``max_conns_per_ip`` while a
        dead node's connections still count, the lease's new holder not listening yet).
        Left out for good, it stayed offline for everyone until the next restart."""
        task = asyncio.create_task(self._retry(make, first), name="cfm-ai-retry")
        self._retrying.add(task)
        task.add_done_callback(self._retrying.discard)

    async def _retry(self, make: Callable[[], PersonaContact], error: BaseException) -> None:
        wait = RETRY_FIRST_S
        while True:
            await asyncio.sleep(wait)
            contact = make()
            try:
                await contact.start()
            except ClientError as exc:
                await contact.stop()
                if not _may_pass(exc):
                    logger.error("AI contact %s did not start: %s", contact.handle, exc)
                    return
                error, wait = exc, min(wait * 2, RETRY_MAX_S)
                logger.debug("AI contact %s still cannot start (%s)", contact.handle, error)
                continue
            self.contacts.append(contact)
            logger.info("AI contact %s online (its start had failed: %s)", contact.handle,
                        error)
            return

    @property
    def handles(self) -> tuple[str, ...]:
        """The handles of the personas that are online."""
        return tuple(c.handle for c in self.contacts)

    @property
    def metrics(self) -> AIMetrics:
        return self.guards.metrics

    def forget_user(self, name: str) -> int:
        """What every persona remembers of ``name`` goes (``PersonaContact.forget_user``)."""
        return sum(contact.forget_user(name) for contact in self.contacts)

    def set_kill_switch(self, on: bool) -> None:
        """Flip the kill switch at run time: on, every persona answers 'not now'."""
        self.guards.kill_switch = on
        logger.warning("AI kill switch %s", "on" if on else "off")

    async def stop(self) -> None:
        for task in list(self._retrying):
            task.cancel()
        await asyncio.gather(*self._retrying, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in self.contacts), return_exceptions=True)
        self.contacts = []
        if self.backend is not None:
            await self.backend.aclose()


def persona_contact(persona: Persona, config: AIConfig, url: str, *, guards: Guards,
                    backend: ChatBackend | None, token_dir: Path | None,
                    clock: Callable[[], float] = time.time,
                    ssl: SSLContext | None = None) -> PersonaContact:
    engine = OfflineEngine(persona, clock=clock, seed=config.seed)
    mind = PersonaMind(persona, guards=guards, engine=engine, backend=backend,
                       context_turns=config.context_turns)
    token_file: Path | None = None
    seen_file: Path | None = None
    memory: Path | None = None
    if token_dir is not None:
        token_file = token_dir / f"{persona.key}.token"
        seen_file = token_dir / f"{persona.key}.seen"
        memory = memory_file(token_dir, persona.key)
    return PersonaContact(mind, url, token_file=token_file, seen_file=seen_file,
                          memory_file=memory,
                          rooms=config.rooms, nudge_back=config.nudge_back,
                          known_bots=config.handles,
                          replies_per_minute=config.replies_per_minute, ssl=ssl)


async def start_ai_contacts(config: AIConfig, server_url: str, *,
                            token_dir: Path | str | None = None,
                            registry: CollectorRegistry | None = None,
                            clock: Callable[[], float] = time.time,
                            personas: tuple[Persona, ...] | None = None,
                            ssl: SSLContext | None = None,
                            who: CallerLookup | None = None,
                            guards: Guards | None = None,
                            memories: MemoryFactory | None = None) -> AIContacts:
    """Sign every persona in to ``server_url`` and return the running cast.

    ``token_dir`` keeps each persona's token (``<handle>.token``), read position and
    memory of people (``<handle>.memory.json``); None uses the SDK's per-server default
    token files and remembers nothing across restarts. A persona the server refuses (its
    handle taken by someone else, a lost token) is logged and left out; the others still
    start.
    ``guards`` (made from ``config`` if None) and ``memories`` (a persona's memory kept
    elsewhere than beside its token: a cluster keeps it in Redis) are for the server.
    With ``config.enabled`` false nothing starts. ``who`` tells the guards each user's
    address and account age (see :func:`hub_callers`); without it only the per-user and
    global quotas apply.
    """
    if guards is None:
        guards = make_guards(config, metrics=AIMetrics(registry), clock=clock, who=who)
    if not config.enabled:
        return AIContacts(config, [], guards, None)
    directory = Path(token_dir) if token_dir is not None else None
    backend = make_backend(config)
    def make(persona: Persona) -> PersonaContact:
        contact = persona_contact(persona, config, server_url, guards=guards, backend=backend,
                                  token_dir=directory, clock=clock, ssl=ssl)
        if memories is not None:
            contact.memory = memories(contact.persona, contact.mind.engine)
        return contact

    contacts = [make(p) for p in (personas if personas is not None else config.personas)]
    try:
        results = await asyncio.gather(*(c.start() for c in contacts), return_exceptions=True)
    except asyncio.CancelledError:
        # The server stops while they sign in (a SIGTERM during its start): none is left
        # signed in, reconnecting to a server that is going away.
        await asyncio.gather(*(c.stop() for c in contacts), return_exceptions=True)
        if backend is not None:  # (its connection pool)
            await backend.aclose()
        raise
    cast = AIContacts(config, [], guards, backend)
    cast.make = make
    for contact, result in zip(contacts, results, strict=True):
        if isinstance(result, BaseException):
            await contact.stop()
            if isinstance(result, ClientError) and _may_pass(result):
                logger.warning("AI contact %s did not start: %s; trying again",
                               contact.handle, result)
                cast.retry_later(lambda p=contact.persona: make(p), result)
                continue
            level = logging.ERROR if isinstance(result, ClientError) else logging.CRITICAL
            logger.log(level, "AI contact %s did not start: %s", contact.handle, result)
        else:
            cast.contacts.append(contact)
    logger.info("AI contacts online (%s backend): %s", config.backend,
                ", ".join(c.handle for c in cast.contacts) or "none")
    return cast


# A persona whose start failed for a reason that may pass is started again after this
# long, then twice as long each time, up to RETRY_MAX_S.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


def _may_pass(exc: ClientError) -> bool:
    """Whether a persona's failed start is worth trying again (a full server, a busy
    address, a node not yet listening), not a refusal of who it is."""
    return not exc.final and exc.code not in FINAL_HELLO_REFUSALS
