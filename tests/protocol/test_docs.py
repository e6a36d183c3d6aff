"""docs/protocol.md stays true: its examples decode, its tables name every code.

Examples are fenced as ```json client or ```json server; each must be a valid frame of
that direction in canonical key order, and every frame type must have one.
"""

from __future__ import annotations

import json
import re

import msgpack
import pytest

from cfm_common import codec
from cfm_common.frames import CLIENT_FRAMES, SERVER_FRAMES
from cfm_common.rules import CloseCode, ErrorCode
from tests.protocol.vectors import ROOT

DOC = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
EXAMPLE_RE = re.compile(r"^```json (client|server)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
EXAMPLES = EXAMPLE_RE.findall(DOC)
DECODE = {"client": codec.decode_client, "server": codec.decode_server}


def test_the_document_has_examples() -> None:
    assert len(EXAMPLES) >= len(CLIENT_FRAMES) + len(SERVER_FRAMES)


@pytest.mark.parametrize(("direction", "body"), EXAMPLES,
                         ids=[f"{d}-{i}" for i, (d, _) in enumerate(EXAMPLES)])
def test_every_example_is_a_valid_canonical_frame(direction: str, body: str) -> None:
    payload = json.loads(body)
    data = msgpack.packb(payload, use_bin_type=True)
    frame = DECODE[direction](data)
    assert codec.encode(frame) == data, "keys out of the documented order"


@pytest.mark.parametrize(("direction", "registry"),
                         [("client", CLIENT_FRAMES), ("server", SERVER_FRAMES)])
def test_every_frame_type_has_an_example(direction: str, registry: dict[str, type]) -> None:
    shown = {json.loads(body)["t"] for d, body in EXAMPLES if d == direction}
    assert shown == set(registry)


def _table_rows(heading: str) -> list[str]:
    section = DOC.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ")]


def test_the_error_table_lists_every_error_code() -> None:
    rows = _table_rows("Errors and close codes")
    listed = {m.group(1) for row in rows if (m := re.match(r"\| `([a-z_]+)` \|", row))}
    assert listed == {code.value for code in ErrorCode}


def test_the_close_table_lists_every_close_code() -> None:
    rows = _table_rows("Errors and close codes")
    listed = {int(m.group(1)) for row in rows if (m := re.match(r"\| (\d{4}) \|", row))}
    assert listed == {int(code) for code in CloseCode}


def _slug(heading: str) -> str:
    # GitHub's anchors: lower case, punctuation dropped, each space a hyphen.
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_every_internal_link_has_its_heading() -> None:
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", DOC, re.MULTILINE)}
    links = set(re.findall(r"\]\(#([^)]+)\)", DOC))
    assert links, "no internal links found"
    assert links <= anchors, links - anchors
