"""The client core does no I/O: nothing it imports, directly or through other cfm_common
modules, opens sockets, sleeps, reads the clock or touches files. Read from the source
(imports inside functions and under TYPE_CHECKING count too), so that an import in the
wrong place fails here rather than in review."""

from __future__ import annotations

import ast
from pathlib import Path

import cfm_common

PACKAGE = Path(cfm_common.__file__).parent
CORE = ["_core", "_states", "_outbox", "_retry", "_gapfill", "_resume", "_sendqueue",
        "_pacing", "_reconnect", "_backoff"]
# What an I/O shell uses: event loops, sockets, TLS, clocks, threads, files.
IO = {"asyncio", "socket", "ssl", "selectors", "websockets", "time", "threading", "os",
      "pathlib", "tempfile", "shutil", "io", "platformdirs"}


def imports_of(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "cfm_common":  # from cfm_common import codec, rules
                names.update(f"cfm_common.{alias.name}" for alias in node.names)
    return names


def reachable(start: list[str]) -> dict[str, set[str]]:
    """Each cfm_common module the core reaches, and what it imports."""
    seen: dict[str, set[str]] = {}
    todo = list(start)
    while todo:
        module = todo.pop()
        if module in seen or not (PACKAGE / f"{module}.py").exists():
            continue
        seen[module] = imports_of(module)
        todo.extend(name.split(".", 1)[1] for name in seen[module]
                    if name.startswith("cfm_common."))
    return seen


def test_the_client_core_reaches_no_io_module() -> None:
    found = {module: sorted(name for name in names if name.split(".")[0] in IO)
             for module, names in reachable(CORE).items()}
    assert {module: names for module, names in found.items() if names} == {}
    assert "client" not in found and "_link" not in found and "tokens" not in found


def test_the_check_sees_an_io_import() -> None:
    assert "asyncio" in {n.split(".")[0] for n in imports_of("client")}
    assert "websockets.asyncio.client" in imports_of("_connect")
