"""The built-in AI contacts' lifecycle in a running server: their handles made before it
listens, their SDK clients started once it does (or, on a cluster, by whichever node
holds the lease), and stopped first when it stops.

Out of ``server.py``, which only calls these at its start and stop. It names what it
needs of the server in ``Host`` instead of importing it (a layer rule: the server
imports this module).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cfm_server.config import ServerConfig
from cfm_server.store import StoreError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from cfm_server.ai import AIConfig, AIContacts, Persona
    from cfm_server.cluster.ai import ClusterAI
    from cfm_server.cluster.node import ClusterNode
    from cfm_server.domain.signin import Provisioned
    from cfm_server.hub import Hub

log = logging.getLogger("cfm_server.server")

# A persona whose provisioning write failed is provisioned again after this long, then
# twice as long each time, up to the maximum.
PROVISION_RETRY_FIRST_S = 1.0
PROVISION_RETRY_MAX_S = 30.0


class Host(Protocol):
    """What the AI contacts need of the server they run in."""

    config: ServerConfig

    def loopback(self) -> tuple[str, ssl.SSLContext | None]: ...


def ai_config(config: ServerConfig) -> AIConfig:
    """The AI contacts' configuration, turned off when the server runs with ``--no-ai``."""
    from cfm_server.ai import AIConfig

    ai = config.ai if config.ai is not None else AIConfig()
    if not config.ai_enabled and ai.enabled:
        ai = dataclasses.replace(ai, enabled=False)
    return ai


class AIContactsRunner:
    """The server's AI contacts: on one node, provisioned then started here; on a
    cluster, a lease decides which node runs them (cluster/ai.py)."""

    def __init__(self, host: Host, registry: CollectorRegistry) -> None:
        self.host = host
        self.registry = registry
        self.local: AIContacts | None = None
        self.cluster: ClusterAI | None = None  # cluster mode: the AI contacts' lease
        self._tokens: tempfile.TemporaryDirectory[str] | None = None
        # Personas whose provisioning write failed, provisioned again after start.
        self._unprovisioned: list[Persona] = []
        self._provisioning: asyncio.Task[None] | None = None

    def reserve_on_cluster(self, node: ClusterNode, hub: Hub, ai: AIConfig) -> None:
        """Cluster mode: the AI contacts run on the node holding a lease; their handles
        are reserved now, before the node listens."""
        from cfm_server.ai.metrics import AIMetrics
        from cfm_server.cluster.ai import ClusterAI

        self.cluster = ClusterAI(node, hub, ai, ttl=self.host.config.ai_lease_ttl,
                                 url=self.host.loopback, metrics=AIMetrics(self.registry))
        self.cluster.reserve()

    async def provision(self, hub: Hub, ai: AIConfig) -> dict[str, Path]:
        """Create (or re-token) each persona's identity before anyone can connect.

        Done before listening so that no person can claim a persona's handle first. The
        token goes into the file the persona's SDK client reads once its write is
        durable; a persona whose write failed (a full disk) is provisioned again later,
        and started then (``start``), and until then the live state has nothing of it
        the store does not.
        """
        asked = [(p, hub.provision_bot(p.handle, p.display, p.psm, p.status))
                 for p in ai.personas]
        files: dict[str, Path] = {}
        for persona, provisioned in asked:
            if provisioned is None:
                log.warning("AI contact %s not started: a person holds that handle",
                            persona.handle)
            elif await self._stored(persona, provisioned):
                files[persona.handle] = self._write_token(persona, provisioned.token)
            else:
                self._unprovisioned.append(persona)
        return files

    async def start(self, hub: Hub, ai: AIConfig, tokens: dict[str, Path]) -> None:
        """Once the server listens: the provisioned personas' SDK clients in this
        process (and, later, those whose provisioning failed), or on a cluster the
        lease's holder's."""
        if tokens or self._unprovisioned:
            from cfm_server.ai import start_ai_contacts
            from cfm_server.ai.service import hub_callers

            personas = tuple(p for p in ai.personas if p.handle in tokens)
            url, tls = self.host.loopback()
            self.local = await start_ai_contacts(
                ai, url, token_dir=self._token_dir(), registry=self.registry,
                personas=personas, ssl=tls, who=hub_callers(hub, ai),
            )
        if self._unprovisioned:
            self._provisioning = asyncio.create_task(self._provision_later(hub),
                                                     name="cfm-ai-provision")
        if self.cluster is not None:
            await self.cluster.start()  # runs them if this node gets the lease

    async def _provision_later(self, hub: Hub) -> None:
        """Provision the personas whose write failed again, with a back-off, and start
        each once it is durable."""
        wait = PROVISION_RETRY_FIRST_S
        while self._unprovisioned:
            await asyncio.sleep(wait)
            wait = min(wait * 2, PROVISION_RETRY_MAX_S)
            for persona in list(self._unprovisioned):
                provisioned = hub.provision_bot(persona.handle, persona.display, persona.psm,
                                                persona.status)
                if provisioned is not None and not await self._stored(persona, provisioned):
                    continue
                self._unprovisioned.remove(persona)
                if provisioned is None:  # a person took the handle meanwhile?
                    continue
                self._write_token(persona, provisioned.token)
                log.info("AI contact %s provisioned", persona.handle)
                if self.local is not None:
                    await self.local.add(persona)

    @staticmethod
    async def _stored(persona: Persona, provisioned: Provisioned) -> bool:
        try:
            await provisioned.commit
        except StoreError as exc:
            log.warning("AI contact %s not provisioned (%s); trying again later",
                        persona.handle, exc)
            return False
        return True

    def _write_token(self, persona: Persona, token: str) -> Path:
        from cfm_common.tokens import write_token

        path = self._token_dir() / f"{persona.key}.token"
        write_token(path, token)
        return path

    def forget_user(self, name: str) -> int:
        """What this server's running AI contacts remember of ``name`` goes (a user
        removed while it runs: control.py); how many conversations. (A cluster's are
        the lease holder's, kept in Redis: not here.)"""
        return self.local.forget_user(name) if self.local is not None else 0

    async def stop(self) -> None:
        """End what ``start`` started (called first thing when the server stops)."""
        provisioning, self._provisioning = self._provisioning, None
        if provisioning is not None:
            provisioning.cancel()
            await asyncio.gather(provisioning, return_exceptions=True)
        if self.local is not None:
            await self.local.stop()
            self.local = None
        if self.cluster is not None:
            await self.cluster.stop()
            self.cluster = None
        if self._tokens is not None:
            self._tokens.cleanup()
            self._tokens = None

    def _token_dir(self) -> Path:
        config = self.host.config
        if self._tokens is not None:
            return Path(self._tokens.name)
        if config.store == "memory":
            # Nothing outlives a memory server, its personas' tokens included.
            self._tokens = tempfile.TemporaryDirectory(prefix="cfm-ai-")
            return Path(self._tokens.name)
        return config.resolved_data_dir() / "ai"
