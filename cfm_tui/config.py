"""``cfm chat``'s remembered settings: a small JSON file in the platform's config dir.

A missing file is a fresh start; a broken one (bad JSON, wrong types) is reported as a
warning and replaced on the next save, never a crash.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import platformdirs

log = logging.getLogger(__name__)

APP_NAME = "cfm"


def config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "chat.json"


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


@dataclass
class ChatConfig:
    name: str | None = None
    display: str | None = None
    status: str | None = None
    # The last server given with --server or on the sign-in screen; None: embedded.
    # Several (the nodes of one cluster) are kept as one comma-separated string, in order.
    server: str | None = None
    idle_minutes: float = 10.0
    desktop_notifications: bool = False
    bell: bool = True
    theme: str = "msn"  # any Textual theme name, e.g. textual-dark
    # The conversations open at the last quit (rooms, in tab order), reopened at the next
    # sign-in with the same handle on the same server.
    open_tabs: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None = None) -> tuple[ChatConfig, str | None]:
        """The saved config and a warning (None if all went well)."""
        path = path or config_path()
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(), None
        except OSError as exc:
            return cls(), f"could not read {path}: {exc.strerror or exc}; using defaults"
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return cls._from_dict(data), None
        except ValueError as exc:
            return cls(), f"ignoring the broken config file {path} ({exc})"

    @classmethod
    def _from_dict(cls, data: dict[str, object]) -> ChatConfig:
        config = cls()
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            default = getattr(config, f.name)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, list):
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            elif isinstance(default, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                value = float(value) if ok else value  # type: ignore[arg-type]
            else:
                ok = isinstance(value, str) or (value is None and f.name != "theme")
            if not ok:
                raise ValueError(f"{f.name!r} has the wrong type")
            setattr(config, f.name, value)
        return config

    def save(self, path: Path | None = None) -> str | None:
        """Write the config atomically; a warning if that failed."""
        path = path or config_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("could not save %s: %s", path, exc)
            return f"could not save {path}: {exc}"
        return None
