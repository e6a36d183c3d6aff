"""The built-in AI contacts' lifecycle in a running server: their handles made before it
listens, their SDK clients started once it does (or, on a cluster, by whichever node
holds the lease), and stopped first when it stops.

Out of ``server.py``, which only calls these at its start and stop. It names what it
needs of the server in ``Host`` instead of importing it (a layer rule: the server
imports this module).
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cfm_server.config import ServerConfig

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from cfm_server.ai import AIConfig, AIContacts
    from cfm_server.cluster.ai import ClusterAI
    from cfm_server.cluster.node import ClusterNode
    from cfm_server.hub import Hub

log = logging.getLogger("cfm_server.server")


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

    def reserve_on_cluster(self, node: ClusterNode, hub: Hub, ai: AIConfig) -> None:
        """Cluster mode: the AI contacts run on the node holding a lease; their handles
        are reserved now, before the node listens."""
        from cfm_server.ai.metrics import AIMetrics
        from cfm_server.cluster.ai import ClusterAI

        self.cluster = ClusterAI(node, hub, ai, ttl=self.host.config.ai_lease_ttl,
                                 url=self.host.loopback, metrics=AIMetrics(self.registry))
        self.cluster.reserve()

    def provision(self, hub: Hub, ai: AIConfig) -> dict[str, Path]:
        """Create (or re-token) each persona's identity before anyone can connect.

        Done before listening so that no person can claim a persona's handle first. The
        token goes into the file the persona's SDK client reads.
        """
        from cfm_common.tokens import write_token

        token_dir = self._token_dir()
        files: dict[str, Path] = {}
        for persona in ai.personas:
            token = hub.provision_bot(persona.handle, persona.display, persona.psm,
                                      persona.status)
            if token is None:
                log.warning("AI contact %s not started: a person holds that handle",
                            persona.handle)
                continue
            path = token_dir / f"{persona.key}.token"
            write_token(path, token)
            files[persona.handle] = path
        return files

    async def start(self, hub: Hub, ai: AIConfig, tokens: dict[str, Path]) -> None:
        """Once the server listens: the provisioned personas' SDK clients in this
        process, or on a cluster the lease's holder's."""
        if tokens:
            from cfm_server.ai import start_ai_contacts
            from cfm_server.ai.service import hub_callers

            personas = tuple(p for p in ai.personas if p.handle in tokens)
            token_dir = next(iter(tokens.values())).parent
            url, tls = self.host.loopback()
            self.local = await start_ai_contacts(
                ai, url, token_dir=token_dir, registry=self.registry,
                personas=personas, ssl=tls, who=hub_callers(hub, ai),
            )
        if self.cluster is not None:
            await self.cluster.start()  # runs them if this node gets the lease

    async def stop(self) -> None:
        """End what ``start`` started (called first thing when the server stops)."""
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
        if config.store == "memory":
            # Nothing outlives a memory server, its personas' tokens included.
            self._tokens = tempfile.TemporaryDirectory(prefix="cfm-ai-")
            return Path(self._tokens.name)
        return config.resolved_data_dir() / "ai"
