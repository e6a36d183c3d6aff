"""A huge header in a large input is refused before anything big is allocated.

Measured with tracemalloc's peak (Python allocations, msgpack's included), never with
a clock: the machine may be busy, but the allocation pattern does not change with load.
"""

from __future__ import annotations

import tracemalloc

import pytest

from cfm_common import codec
from cfm_common.errors import ProtocolError
from cfm_common.rules import ErrorCode

ONE_MB = 1 << 20
# Far below what honouring any of these headers would cost (4 GiB, or 2**32 objects).
PEAK_BUDGET = 256 * 1024

HEADERS = {
    "array32": b"\xdd\xff\xff\xff\xff",
    "map32": b"\xdf\xff\xff\xff\xff",
    "str32": b"\xdb\xff\xff\xff\xff",
    "bin32": b"\xc6\xff\xff\xff\xff",
    "ext32": b"\xc9\xff\xff\xff\xff\x01",
}
# The header at the top, or as the value of a key of a well-formed frame map.
PREFIXES = {"top": b"", "in-a-frame": b"\x82\xa1t\xa5hello\xa1x"}


def peak_bytes_of_decoding(data: bytes, decode) -> tuple[int, ProtocolError | None]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        error = None
        try:
            decode(data)
        except ProtocolError as exc:
            error = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, error


@pytest.mark.parametrize("decode", [codec.decode_client, codec.decode_server],
                         ids=["client", "server"])
@pytest.mark.parametrize("prefix", PREFIXES.values(), ids=PREFIXES.keys())
@pytest.mark.parametrize("header", HEADERS.values(), ids=HEADERS.keys())
@pytest.mark.parametrize("filler", [b"\x00", b"\xc0", b"a"], ids=["zeros", "nils", "text"])
def test_a_huge_header_in_one_megabyte_is_refused_within_a_small_budget(
    decode, prefix: bytes, header: bytes, filler: bytes
) -> None:
    data = prefix + header + filler * ONE_MB
    peak, error = peak_bytes_of_decoding(data, decode)
    assert error is not None and error.code is ErrorCode.BAD_FRAME
    assert peak < PEAK_BUDGET, f"peak {peak} bytes"


def test_the_budget_would_catch_a_real_allocation() -> None:
    # The measuring stick itself: decoding one honest 1 MB string costs about 1 MB.
    text = "a" * ONE_MB
    data = b"\x83\xa1t\xa3say\xa2id\xa2m1\xa4text\xdb" + len(text).to_bytes(4, "big")
    peak, error = peak_bytes_of_decoding(data + text.encode(), codec.decode_client)
    assert error is not None and error.code is ErrorCode.BAD_FRAME  # no room or to
    assert peak > ONE_MB
