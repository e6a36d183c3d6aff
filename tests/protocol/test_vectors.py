"""docs/vectors.json: the decoder meets every expectation, and the file is up to date."""

from __future__ import annotations

from typing import Any

import pytest

from cfm_common import codec
from cfm_common.errors import ProtocolError
from cfm_common.frames import CLIENT_FRAMES, SERVER_FRAMES
from cfm_common.rules import ErrorCode
from tests.protocol.vectors import VECTORS_FILE, generator, load_cases

CASES = load_cases()
DECODE = {"client": codec.decode_client, "server": codec.decode_server}


def by_name(case: dict[str, Any]) -> str:
    return case["name"]


@pytest.mark.parametrize("case", [c for c in CASES if c["expect"] == "valid"], ids=by_name)
def test_a_valid_case_decodes_to_its_map_and_re_encodes_byte_for_byte(case) -> None:
    data = bytes.fromhex(case["hex"])
    frame = DECODE[case["direction"]](data)
    assert codec.to_map(frame) == case["map"]
    assert codec.unpack_map(data) == case["map"]
    assert codec.encode(frame) == data
    assert case["map"]["t"] == frame.T


@pytest.mark.parametrize("case", [c for c in CASES if c["expect"] != "valid"], ids=by_name)
def test_an_invalid_case_is_refused_with_its_code_and_ref(case) -> None:
    with pytest.raises(ProtocolError) as info:
        DECODE[case["direction"]](bytes.fromhex(case["hex"]))
    assert info.value.code.value == case["expect"]
    assert info.value.ref == case["ref"]


def test_the_file_is_what_the_generator_writes() -> None:
    make_vectors = generator()
    expected = make_vectors.render(make_vectors.build())
    assert VECTORS_FILE.read_text(encoding="utf-8") == expected, (
        "docs/vectors.json is stale: run scripts/make_vectors.py"
    )
    assert make_vectors.main(["make_vectors.py", "--check"]) == 0


def test_every_case_has_the_documented_shape() -> None:
    codes = {c.value for c in ErrorCode}
    for case in CASES:
        assert case["direction"] in ("client", "server"), case["name"]
        assert case["expect"] == "valid" or case["expect"] in codes, case["name"]
        bytes.fromhex(case["hex"])
        if case["expect"] == "valid":
            assert set(case) == {"name", "direction", "hex", "expect", "map"}, case["name"]
        else:
            assert set(case) == {"name", "direction", "hex", "expect", "ref"}, case["name"]
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names))
    assert all(name.startswith(("client/", "server/")) for name in names)


# say and typing need exactly one of their optional keys room and to.
NEEDS_ONE_OPTIONAL = {("client", "say"), ("client", "typing")}
# ... and history takes before or after, moderators add or remove; a hidden msg (a
# placeholder) has no id, and a change entry no reactions: no one case can hold every key
# of these.
EXCLUSIVE_KEYS = NEEDS_ONE_OPTIONAL | {("client", "history"), ("server", "msg"),
                                      ("client", "moderators")}


@pytest.mark.parametrize(("direction", "registry"),
                         [("client", CLIENT_FRAMES), ("server", SERVER_FRAMES)])
def test_every_frame_type_has_a_minimal_and_a_full_valid_case(direction, registry) -> None:
    valid = [c for c in CASES if c["direction"] == direction and c["expect"] == "valid"]
    for t, cls in registry.items():
        fields = codec._fields(cls)
        maps = [c["map"] for c in valid if c["map"]["t"] == t]
        assert maps, f"no valid {direction} case for {t}"
        every_key = {"t"} | {field.key for field in fields}
        if (direction, t) in EXCLUSIVE_KEYS:
            assert set().union(*maps) == every_key, f"{direction} {t}: a key is never shown"
        else:
            assert any(set(m) == every_key for m in maps), f"{direction} {t}: no full case"
        minimal = 1 + sum(not field.optional for field in fields)
        minimal += (direction, t) in NEEDS_ONE_OPTIONAL
        assert min(len(m) for m in maps) == minimal, f"{direction} {t}: no minimal case"


@pytest.mark.parametrize(
    "prefix",
    ["payload/", "bytes/garbage", "bytes/truncated", "bytes/trailing", "utf8/", "huge/",
     "nesting/", "ext/", "keys/", "t/missing", "t/unknown", "missing/", "type/", "too_long/",
     "control/", "status/", "int/", "name/", "room/", "hello/version", "ref/", "target/",
     "history/limit", "history/before-and-after", "leave/dm-room", "id/", "epoch/"],
)
def test_every_invalid_class_is_covered(prefix: str) -> None:
    assert any(c["name"].startswith(("client/" + prefix, "server/" + prefix))
               and c["expect"] != "valid" for c in CASES)


def test_every_error_code_the_decoder_can_raise_appears() -> None:
    seen = {c["expect"] for c in CASES}
    assert {"bad_frame", "name_invalid", "too_long", "unknown_type",
            "unsupported_version"} <= seen
