"""A tiny JSON state file for the example bots: read at start, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class JsonState:
    """A dict kept in ``path`` (or only in memory when ``path`` is None)."""

    def __init__(self, path: str | Path | None, default: dict[str, Any]) -> None:
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = default
        if self.path is not None and self.path.exists():
            self.data = json.loads(self.path.read_text())

    def save(self) -> None:
        if self.path is None:
            return
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(self.data))
        os.replace(scratch, self.path)  # a crash leaves the old file or the new, never half
