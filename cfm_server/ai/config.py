"""``AIConfig``: every setting of the AI contacts, from defaults < TOML < env < flags.

The server's config builds it with :meth:`AIConfig.from_sources` from the ``[ai]`` table
of its TOML file, the ``CFM_AI_*`` environment variables and the ``cfm serve`` flags;
``cfm bot ai`` does the same with its own flags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cfm_common import rules
from cfm_server.ai.personas import DEFAULT_PERSONAS, Persona, PersonaError, merge_personas

BACKENDS = ("offline", "openai", "workers-ai")
ENV_PREFIX = "CFM_AI_"

# Kept here rather than imported from backends so that reading a config never imports httpx.
_DEFAULT_BASE_URLS = {
    "openai": "http://127.0.0.1:11434/v1",
    "workers-ai": "https://api.cloudflare.com/client/v4",
}
_DEFAULT_MODELS = {"openai": "llama3.2", "workers-ai": "@cf/meta/llama-3.2-3b-instruct"}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class AIConfigError(ValueError):
    """A setting of the AI contacts that cannot work; the message names the key."""


@dataclass(frozen=True, slots=True)
class AIConfig:
    # enabled=false: no AI contacts at all (like --no-ai). kill_switch=true: they stay
    # online but answer every message with an in-character "not now", calling nothing.
    enabled: bool = True
    kill_switch: bool = False
    backend: str = "offline"
    base_url: str | None = None  # None: the backend's default
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    account_id: str | None = None  # Workers AI only
    stream: bool = False  # openai only: read the reply as server-sent events
    request_timeout: float = 20.0
    user_daily_quota: int = 50  # successful backend calls per user per UTC day; 0 = no limit
    global_daily_quota: int = 4000
    # Per client address (all its accounts together), and per account younger than
    # new_account_hours: one person with throw-away accounts cannot use up the global
    # quota. They apply when cfm serve runs the AI contacts itself (it knows both).
    address_daily_quota: int = 200
    new_user_daily_quota: int = 10
    new_account_hours: float = 24.0
    breaker_threshold: int = 3
    breaker_cooldown: float = 60.0
    context_turns: int = 8  # user+reply pairs of history sent to the model
    max_tokens: int = 256
    temperature: float = 0.8
    rooms: tuple[str, ...] = (rules.LOBBY,)  # group rooms the personas join
    nudge_back: bool = True
    replies_per_minute: int = 20  # per room; past it one "slow down", then silence; 0 = no cap
    seed: str = ""  # the offline engine's dice
    personas: tuple[Persona, ...] = DEFAULT_PERSONAS

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise AIConfigError(f"ai.backend must be one of {', '.join(BACKENDS)}, "
                                f"not {self.backend!r}")
        if self.backend == "workers-ai" and self.enabled and not (
            self.account_id and self.api_key
        ):
            raise AIConfigError("the workers-ai backend needs ai.account_id "
                                "(CFM_AI_ACCOUNT_ID) and an API key (CFM_AI_API_KEY)")
        for name in ("request_timeout", "breaker_cooldown"):
            if getattr(self, name) <= 0:
                raise AIConfigError(f"ai.{name} must be positive")
        for name in ("user_daily_quota", "global_daily_quota", "address_daily_quota",
                     "new_user_daily_quota", "new_account_hours", "context_turns", "max_tokens",
                     "replies_per_minute"):
            if getattr(self, name) < 0:
                raise AIConfigError(f"ai.{name} must not be negative")
        if self.breaker_threshold < 1:
            raise AIConfigError("ai.breaker_threshold must be at least 1")
        for room in self.rooms:
            if not rules.is_group_room(room):
                raise AIConfigError(f"ai.rooms: {room!r} is not a group room (#name)")
        keys = [p.key for p in self.personas]
        if len(set(keys)) != len(keys):
            raise AIConfigError("two personas share a handle")

    # --- derived ------------------------------------------------------------------

    @property
    def handles(self) -> tuple[str, ...]:
        """The personas' canonical handles; empty when the AI contacts are disabled."""
        return tuple(p.key for p in self.personas) if self.enabled else ()

    @property
    def resolved_base_url(self) -> str:
        return self.base_url or _DEFAULT_BASE_URLS.get(self.backend, "")

    @property
    def resolved_model(self) -> str:
        return self.model or _DEFAULT_MODELS.get(self.backend, "")

    def persona(self, handle: str) -> Persona:
        key = rules.normalize_name(handle)
        for persona in self.personas:
            if persona.key == key:
                return persona
        known = ", ".join(p.handle for p in self.personas)
        raise AIConfigError(f"no persona {handle!r}; the cast is: {known}")

    # --- building -----------------------------------------------------------------

    @classmethod
    def from_sources(cls, toml_table: Mapping[str, Any] | None = None,
                     env: Mapping[str, str] | None = None, **flags: Any) -> AIConfig:
        """Defaults, then the ``[ai]`` TOML table, then ``CFM_AI_*`` env, then flags.

        Flags are the field names (``backend``, ``base_url``, ``model``, ``api_key``,
        ``account_id``, ...) with None meaning "not given", plus ``no_ai=True``.
        """
        values: dict[str, Any] = {}
        table = dict(toml_table or {})
        persona_tables = table.pop("personas", None)
        replace = table.pop("replace_personas", False)
        if not isinstance(replace, bool):
            raise AIConfigError("ai.replace_personas must be true or false")
        for key, value in table.items():
            values[key] = _from_toml(key, value)
        for key, raw in (env or {}).items():
            if key.startswith(ENV_PREFIX):
                name = key[len(ENV_PREFIX):].lower()
                if name in _SCALAR_FIELDS or name == "rooms":
                    values[name] = _from_env(name, raw)
        no_ai = bool(flags.pop("no_ai", False))
        for key, value in flags.items():
            if key not in _FIELD_TYPES or key == "personas":
                raise TypeError(f"unknown AI flag {key!r}")
            if value is not None:
                values[key] = _coerce(key, value, f"flag {key}")
        if no_ai:
            values["enabled"] = False
        if persona_tables is not None or replace:
            if persona_tables is not None and not isinstance(persona_tables, list):
                raise AIConfigError("ai.personas must be an array of tables ([[ai.personas]])")
            try:
                values["personas"] = merge_personas(persona_tables, replace=replace)
            except PersonaError as exc:
                raise AIConfigError(f"ai.personas: {exc}") from exc
        return cls(**values)


_FIELD_TYPES: dict[str, Any] = {f.name: f.type for f in dataclasses.fields(AIConfig)}
_SCALAR_FIELDS = frozenset(_FIELD_TYPES) - {"rooms", "personas"}
_KINDS = {
    "bool": bool, "int": int, "float": float, "str": str, "str | None": str,
}


def _kind(name: str) -> type:
    declared = _FIELD_TYPES[name]
    return _KINDS.get(declared if isinstance(declared, str) else declared.__name__, str)


def _coerce(name: str, value: Any, where: str) -> Any:
    if name == "rooms":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise AIConfigError(f"{where}: rooms must be a list of room names")
        return tuple(value)
    kind = _kind(name)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise AIConfigError(f"{where}: {name} must be a {kind.__name__}, not {value!r}")
    return value


def _from_toml(name: str, value: Any) -> Any:
    if name not in _FIELD_TYPES:
        import difflib

        close = difflib.get_close_matches(name, list(_FIELD_TYPES), n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join('ai.' + c for c in close)}?)" if close else ""
        raise AIConfigError(f"unknown key ai.{name}{hint}")
    return _coerce(name, value, f"ai.{name}")


def _from_env(name: str, raw: str) -> Any:
    where = f"{ENV_PREFIX}{name.upper()}"
    kind = _kind(name) if name != "rooms" else list
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError(raw)
            return lowered in _TRUE
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError as exc:
        raise AIConfigError(f"{where}: cannot read {raw!r} as a {kind.__name__}") from exc
    return _coerce(name, raw, where)
