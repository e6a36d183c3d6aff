"""The msgpack layer: what reaches the frame rules at all.

Every case is bytes in, ``ProtocolError(bad_frame)`` out, in both directions, because
both ends of a connection read untrusted bytes.
"""

from __future__ import annotations

import msgpack
import pytest

from cfm_common import codec
from cfm_common.errors import ProtocolError
from cfm_common.rules import ErrorCode

DECODERS = pytest.mark.parametrize(
    "decode", [codec.decode_client, codec.decode_server], ids=["client", "server"]
)

HELLO = {"t": "hello", "v": 1, "name": "alice"}
PRESENCE = {"t": "presence", "name": "alice", "display": "A", "status": "online", "psm": "",
            "bot": False}


def packed(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def ext(code: int, data: bytes) -> msgpack.ExtType:
    return msgpack.ExtType(code, data)


def valid_for(decode: object) -> dict[str, object]:
    return HELLO if decode is codec.decode_client else PRESENCE


def assert_bad_frame(decode, data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    assert info.value.code is ErrorCode.BAD_FRAME, info.value
    return info.value


@DECODERS
@pytest.mark.parametrize(
    "payload",
    [[1, 2], ["t", "hello"], 7, -1, "hello", None, True, 1.5, b"\x81\xa1t"],
    ids=["list", "list-of-t", "int", "negative-int", "str", "nil", "bool", "float", "bin"],
)
def test_a_payload_that_is_not_a_map_is_a_bad_frame(decode, payload: object) -> None:
    assert_bad_frame(decode, packed(payload))


@DECODERS
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # the one byte msgpack never uses
        b"\xff\xfe\xfd",
        b"GET / HTTP/1.1\r\n\r\n",
        b'{"t": "hello"}',
    ],
    ids=["empty", "never-used", "garbage", "http", "json"],
)
def test_garbage_bytes_are_a_bad_frame(decode, data: bytes) -> None:
    assert_bad_frame(decode, data)


@DECODERS
def test_a_truncated_message_is_a_bad_frame(decode) -> None:
    data = packed(valid_for(decode))
    for cut in range(1, len(data)):
        assert_bad_frame(decode, data[:cut])


@DECODERS
@pytest.mark.parametrize("extra", [b"\x00", b"\xc0", packed({"t": "hello"})])
def test_trailing_bytes_after_the_map_are_a_bad_frame(decode, extra: bytes) -> None:
    assert_bad_frame(decode, packed(valid_for(decode)) + extra)


@DECODERS
def test_invalid_utf8_in_a_value_is_a_bad_frame(decode) -> None:
    good = packed(valid_for(decode))
    # Replace the one-byte fixstr "alice" by the same length of invalid UTF-8.
    bad = good.replace(b"\xa5alice", b"\xa5al\xffce")
    assert bad != good
    assert_bad_frame(decode, bad)


@DECODERS
def test_invalid_utf8_in_a_key_is_a_bad_frame(decode) -> None:
    good = packed(valid_for(decode))
    bad = good.replace(b"\xa4name", b"\xa4n\xc3\x28e")
    assert bad != good
    assert_bad_frame(decode, bad)


@DECODERS
def test_a_lone_surrogate_encoded_as_utf8_is_a_bad_frame(decode) -> None:
    # CESU-style UTF-8 of U+D800: Python's strict decoder refuses it, so must everyone.
    good = packed(valid_for(decode))
    bad = good.replace(b"\xa5alice", b"\xa5a\xed\xa0\x80e")
    assert_bad_frame(decode, bad)


HUGE_HEADERS = {
    "str32": b"\xdb\xff\xff\xff\xff",
    "bin32": b"\xc6\xff\xff\xff\xff",
    "array32": b"\xdd\xff\xff\xff\xff",
    "map32": b"\xdf\xff\xff\xff\xff",
    "str16": b"\xda\xff\xff",
    "array16": b"\xdc\xff\xff",
    "map16": b"\xde\xff\xff",
    "ext32": b"\xc9\xff\xff\xff\xff\x05",
}


@DECODERS
@pytest.mark.parametrize("header", HUGE_HEADERS.values(), ids=HUGE_HEADERS.keys())
def test_a_huge_header_in_a_tiny_message_is_a_bad_frame(decode, header: bytes) -> None:
    # As the whole message, and as the value of a key inside a well-formed map.
    assert_bad_frame(decode, header + b"\x00" * 8)
    assert_bad_frame(decode, b"\x82\xa1t\xa5hello\xa1x" + header + b"\x00" * 8)


def nested(depth: int, container: str) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value] if container == "list" else {"k": value}
    return value


@DECODERS
@pytest.mark.parametrize("container", ["list", "map"])
def test_nesting_up_to_eight_levels_is_accepted(decode, container: str) -> None:
    # The frame map itself is level 1, so an unknown key may hold 7 more levels.
    frame = {**valid_for(decode), "x": nested(7, container)}
    decode(packed(frame))


@DECODERS
@pytest.mark.parametrize("container", ["list", "map"])
@pytest.mark.parametrize("depth", [8, 9, 100, 5000])
def test_nesting_deeper_than_eight_levels_is_a_bad_frame(decode, container: str,
                                                         depth: int) -> None:
    if depth > 500:
        # Built by hand: msgpack's own packer refuses to go that deep.
        opener = b"\x91" if container == "list" else b"\x81\xa1k"
        data = b"\x82\xa1t\xa5hello\xa1x" + opener * depth + b"\x01"
    else:
        data = packed({**valid_for(decode), "x": nested(depth, container)})
    assert_bad_frame(decode, data)


# Raw msgpack bytes of extension values (a negative code cannot be built with ExtType).
EXT_VALUES = {
    "fixext1": packed(ext(5, b"\x00")),
    "ext8-empty": packed(ext(1, b"")),
    "negative-code": b"\xd6\xf9abcd",
    "timestamp32": packed(msgpack.Timestamp(1_700_000_000, 0)),
    "timestamp96": packed(msgpack.Timestamp(-1, 5)),
}
PLACEHOLDER = "\x00ext-goes-here\x00"


@DECODERS
@pytest.mark.parametrize("raw", EXT_VALUES.values(), ids=EXT_VALUES.keys())
@pytest.mark.parametrize("where", ["unknown-key", "known-key", "in-a-list", "in-a-map"])
def test_extension_types_are_a_bad_frame(decode, raw: bytes, where: str) -> None:
    frame = dict(valid_for(decode))
    if where == "unknown-key":
        frame["x"] = PLACEHOLDER
    elif where == "known-key":
        frame["name"] = PLACEHOLDER
    elif where == "in-a-list":
        frame["x"] = [1, [PLACEHOLDER]]
    else:
        frame["x"] = {"a": {"b": PLACEHOLDER}}
    data = packed(frame).replace(packed(PLACEHOLDER), raw)
    assert_bad_frame(decode, data)


@DECODERS
def test_an_extension_type_as_the_whole_message_is_a_bad_frame(decode) -> None:
    assert_bad_frame(decode, packed(msgpack.Timestamp(0, 0)))
    assert_bad_frame(decode, packed(ext(0, b"x" * 20)))


NON_STRING_KEYS = {"int": 1, "negative-int": -1, "bin": b"t", "nil": None, "bool": True,
                   "float": 0.5}


@DECODERS
@pytest.mark.parametrize("key", NON_STRING_KEYS.values(), ids=NON_STRING_KEYS.keys())
@pytest.mark.parametrize(
    "where", ["top", "map-value", "map-in-map", "map-in-list", "list-in-map"]
)
def test_non_string_keys_are_a_bad_frame_at_any_depth(decode, key: object, where: str) -> None:
    frame = dict(valid_for(decode))
    inner = {key: 1}
    if where == "top":
        frame[key] = 1  # type: ignore[index]
    elif where == "map-value":
        frame["x"] = inner
    elif where == "map-in-map":
        frame["x"] = {"y": inner}
    elif where == "map-in-list":
        frame["x"] = [inner]
    else:
        frame["x"] = {"y": [1, inner]}
    # msgpack-python cannot pack a float or bool key with strict settings; pack by hand.
    assert_bad_frame(decode, msgpack.packb(frame, use_bin_type=True, strict_types=False))


def test_non_string_keys_inside_a_known_list_are_a_bad_frame() -> None:
    # Only server frames carry lists of maps (welcome, joined, history).
    frame = {"t": "history", "room": "#lobby", "more": False,
             "msgs": [{"room": "#lobby", "seq": 1, "from": "bob", "text": "hi", "ts": 5,
                       "kind": "text", b"id": "x"}]}
    assert_bad_frame(codec.decode_server, packed(frame))


@DECODERS
def test_bytes_like_inputs_are_accepted_and_other_types_refused(decode) -> None:
    data = packed(valid_for(decode))
    first = decode(data)
    assert decode(bytearray(data)) == first
    assert decode(memoryview(data)) == first
    assert_bad_frame(decode, data.decode("latin-1"))  # type: ignore[arg-type]
