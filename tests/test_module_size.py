"""Modules stay small enough to read in one sitting (DESIGN.md, "Style"): none of the
project's own modules grows past MAX_LINES; one that does is split by what it does."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cfm_common", "cfm_server", "cfm_tui", "cfm_cli", "cfm_bench")
MAX_LINES = 600


def test_no_module_is_over_the_limit() -> None:
    sizes = {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    assert len(sizes) > 100  # the packages were found
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"split these modules (over {MAX_LINES} lines): {too_long}"
