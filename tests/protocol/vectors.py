"""Access to docs/vectors.json and to its generator, scripts/make_vectors.py.

The generator is a script, not a package module, so it is loaded from its path.
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VECTORS_FILE = ROOT / "docs" / "vectors.json"
GENERATOR_FILE = ROOT / "scripts" / "make_vectors.py"


@cache
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_vectors", GENERATOR_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def load_cases() -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(VECTORS_FILE.read_text(encoding="utf-8")))
