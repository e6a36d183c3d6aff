"""The SDK stays readable in one sitting (docs/bots.md, "How the SDK is built"): no
cfm_common module over 500 lines, and the asyncio shell client.py under 400 (rules go
to the core's modules, calls to mixins such as _changes.py)."""

from __future__ import annotations

from pathlib import Path

import cfm_common

PACKAGE = Path(cfm_common.__file__).parent


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_cfm_common_module_is_over_500_lines() -> None:
    sizes = {p.name: lines(p) for p in PACKAGE.glob("*.py")}
    assert len(sizes) > 20
    assert {name: n for name, n in sizes.items() if n > 500} == {}


def test_the_client_shell_is_under_400_lines() -> None:
    assert lines(PACKAGE / "client.py") < 400
