"""The client decoder's structure limits: what one frame may make the server build.

Unpacking costs per element, not per byte: 20,000 empty maps are 20 KB on the wire. A
client frame (a map of scalars in every version of the protocol) may carry at most
``CLIENT_SHAPE`` maps, arrays and elements in all, checked while msgpack unpacks, so the
worst frame within the limits costs a bounded amount of work (see docs/security.md).
"""

from __future__ import annotations

import msgpack
import pytest

from cfm_common import codec
from cfm_common.errors import ProtocolError
from cfm_common.rules import ErrorCode

READ = {"t": "read", "room": "#lobby", "seq": 1}
SHAPE = codec.CLIENT_SHAPE


def refused(payload: object) -> str:
    with pytest.raises(ProtocolError) as info:
        codec.decode_client(msgpack.packb(payload))
    assert info.value.code is ErrorCode.BAD_FRAME
    return info.value.msg


def test_an_array_of_thousands_of_empty_maps_is_refused() -> None:
    assert "max_array_len" in refused({**READ, "junk": [{}] * 20_000})


def test_more_containers_than_the_limit_are_refused_even_in_short_arrays() -> None:
    junk = {f"k{i}": [[] for _ in range(8)] for i in range(SHAPE.containers // 8 + 1)}
    assert "maps and arrays" in refused({**READ, **junk})


def test_more_elements_than_the_limit_are_refused() -> None:
    per_key = SHAPE.array_len
    junk = {f"k{i}": [1] * per_key for i in range(SHAPE.elements // per_key + 1)}
    assert "elements" in refused({**READ, **junk})


def test_a_frame_within_every_limit_still_decodes() -> None:
    # Unknown keys are ignored, within the limits.
    per_key = SHAPE.array_len - 1
    keys = SHAPE.elements // (per_key + 1) - 1
    junk = {f"k{i}": [1] * per_key for i in range(keys)}
    frame = codec.decode_client(msgpack.packb({**READ, **junk}))
    assert frame.T == "read"


def test_server_frames_keep_their_long_lists() -> None:
    member = {"name": "al", "display": "A", "status": "online", "psm": "", "bot": False}
    joined = {"t": "joined", "room": "#big", "seq": 0, "epoch": "e", "members": [member] * 5000}
    assert len(codec.decode_server(msgpack.packb(joined)).members) == 5000
