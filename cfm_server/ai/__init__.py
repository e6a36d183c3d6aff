"""AI contacts: 2005-era personas that are always online.

    from cfm_server.ai import AIConfig, start_ai_contacts
    ai_config = AIConfig.from_sources(toml.get("ai"), os.environ, backend=..., no_ai=...)
    handle = await start_ai_contacts(ai_config, server_url, token_dir=data_dir / "ai",
                                     registry=metrics_registry)
    ai_config.handles   # the personas' handles (for new users' contact lists)
    await handle.stop()

Modules: ``personas`` (the cast), ``voices`` and ``skills`` (what they say offline),
``engine`` (the offline engine), ``memory`` (what it learned, kept across restarts),
``backends`` (OpenAI-compatible, Workers AI), ``guards`` (quotas, breaker, timeout,
kill switch), ``mind`` (one persona's answers), ``contact`` (the persona as a Bot),
``service`` (the whole cast), ``cli`` (``cfm bot``).

Importing this package stays cheap (no websockets, no httpx) so that ``cfm --help``
and the server's config loading stay fast; the running parts load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cfm_server.ai.config import AIConfig, AIConfigError
from cfm_server.ai.personas import DEFAULT_PERSONAS, Persona

if TYPE_CHECKING:
    from cfm_server.ai.service import AIContacts

__all__ = [
    "DEFAULT_PERSONAS",
    "AIConfig",
    "AIConfigError",
    "AIContacts",
    "Persona",
    "start_ai_contacts",
]


async def start_ai_contacts(config: AIConfig, server_url: str, **options: Any) -> AIContacts:
    """See :func:`cfm_server.ai.service.start_ai_contacts`."""
    from cfm_server.ai.service import start_ai_contacts as start

    return await start(config, server_url, **options)


def __getattr__(name: str) -> Any:
    if name == "AIContacts":
        from cfm_server.ai.service import AIContacts

        return AIContacts
    raise AttributeError(name)
