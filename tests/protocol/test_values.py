"""The value rules of every key: types, required keys, lengths, handles, rooms, statuses.

The type and presence rules are checked for every field of every frame, walking the
frame definitions, so a frame added later is covered without a new test.
"""

from __future__ import annotations

from typing import Any

import pytest

from cfm_common import codec, rules
from cfm_common import frames as f
from cfm_common.errors import ProtocolError
from cfm_common.rules import ErrorCode
from tests.protocol.vectors import generator

EMOJI = "\U0001f600"
DECODE = {"client": codec.decode_client, "server": codec.decode_server}


def _fullest(samples: list[tuple[str, Any]]) -> dict[str, Any]:
    """Per frame type, the sample with the most keys (every optional key where it can)."""
    out: dict[str, Any] = {}
    for _, frame in samples:
        best = out.get(frame.T)
        if best is None or len(codec.to_map(frame)) > len(codec.to_map(best)):
            out[frame.T] = frame
    return out


FULL = {"client": _fullest(generator().client_samples()),
        "server": _fullest(generator().server_samples())}
FIELDS = [
    (direction, t, field)
    for direction, frames in FULL.items()
    for t, frame in frames.items()
    for field in codec._fields(type(frame))
    if getattr(frame, field.attr) is not None
]

WRONG = {
    str: [42, -1, True, 1.5, b"bytes", ["x"], {"x": 1}],
    int: ["42", True, False, 1.5, b"\x01", [1], {"n": 1}],
    bool: [1, 0, "true", 1.0, [True], {"b": True}],
    list: ["x", 1, True, {"0": 1}, b"\x90"],
    dict: ["x", 1, True, [["k", "v"]], b"\x80"],
}


def field_id(case: tuple[str, str, codec._Field]) -> str:
    return f"{case[0]}/{case[1]}.{case[2].key}"


def expected_ref(wire: dict[str, Any]) -> str:
    ident = wire.get("id")
    if isinstance(ident, str) and 1 <= len(ident) <= rules.MAX_ID:
        return ident
    return wire["t"]


def refuse(direction: str, wire: dict[str, Any], code: ErrorCode = ErrorCode.BAD_FRAME,
           **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        DECODE[direction](codec.encode_map(wire), **kwargs)
    assert info.value.code is code, info.value
    return info.value


@pytest.mark.parametrize("case", FIELDS, ids=field_id)
def test_a_value_of_the_wrong_msgpack_type_is_a_bad_frame(case) -> None:
    direction, t, field = case
    for wrong in WRONG[field.kind]:
        wire = codec.to_map(FULL[direction][t])
        wire[field.key] = wrong
        error = refuse(direction, wire)
        assert error.ref == expected_ref(wire), (wrong, error)


@pytest.mark.parametrize("case", [c for c in FIELDS if not c[2].optional], ids=field_id)
def test_a_missing_required_key_is_a_bad_frame(case) -> None:
    direction, t, field = case
    wire = codec.to_map(FULL[direction][t])
    del wire[field.key]
    assert field.key in refuse(direction, wire).msg
    wire[field.key] = None  # nil is the same as absent
    refuse(direction, wire)


def test_every_frame_type_is_covered_by_the_field_walk() -> None:
    assert set(FULL["client"]) == set(f.CLIENT_FRAMES)
    assert set(FULL["server"]) == set(f.SERVER_FRAMES)


# --- lengths: code points, not bytes -------------------------------------------------

SAY = {"t": "say", "text": "", "id": "m1", "room": "#lobby"}


@pytest.mark.parametrize("last", ["a", EMOJI, "\u00e9", "\u4e2d"])
def test_text_length_counts_code_points(last: str) -> None:
    limit = rules.DEFAULT_MAX_TEXT
    at_max = {**SAY, "text": "a" * (limit - 1) + last}
    assert codec.decode_client(codec.encode_map(at_max)).text == at_max["text"]
    error = refuse("client", {**SAY, "text": "a" * limit + last}, ErrorCode.TOO_LONG)
    assert error.ref == "m1"


def test_the_text_limit_is_the_servers_to_set() -> None:
    data = codec.encode_map({**SAY, "text": EMOJI * 10})
    assert codec.decode_client(data, max_text=10).text == EMOJI * 10
    with pytest.raises(ProtocolError) as info:
        codec.decode_client(data, max_text=9)
    assert info.value.code is ErrorCode.TOO_LONG


def test_server_msg_text_has_no_length_limit_in_the_codec() -> None:
    # A client cannot know another server's max_text; it takes what the server sends.
    msg = f.Msg(room="#lobby", seq=1, sender="bob", text="a" * 100_000, ts=1, kind="text")
    assert codec.decode_server(codec.encode(msg)) == msg


@pytest.mark.parametrize(("key", "limit"), [("display", rules.MAX_DISPLAY),
                                            ("psm", rules.MAX_PSM)])
@pytest.mark.parametrize("direction", ["client", "server"])
def test_display_and_psm_lengths_count_code_points(key: str, limit: int,
                                                   direction: str) -> None:
    base = codec.to_map(FULL[direction]["presence"])
    at_max = {**base, key: "a" * (limit - 1) + EMOJI}
    assert getattr(DECODE[direction](codec.encode_map(at_max)), key) == at_max[key]
    refuse(direction, {**base, key: "a" * limit + EMOJI}, ErrorCode.TOO_LONG)
    refuse(direction, {**base, key: EMOJI * (limit + 1)}, ErrorCode.TOO_LONG)


# --- handles ---------------------------------------------------------------------------

GOOD_NAMES = ["ab", "AB", "a1", "9lives", "mr.bean", "x-y_z", "a" * 24, "A.-_", "a_"]
BAD_NAMES = {
    "empty": "", "one-char": "a", "25-chars": "a" * 25, "leading-underscore": "_ab",
    "leading-dot": ".ab", "leading-dash": "-ab", "space": "a b", "leading-space": " ab",
    "trailing-newline": "ab\n", "tab": "a\tb", "colon": "a:b", "slash": "a/b", "plus": "a+b",
    "at": "a@b", "hash": "#ab", "cyrillic-a": "\u0430b", "greek-omicron": "b\u03bf",
    "fullwidth-a": "\uff41b", "accented": "caf\u00e9", "dotless-i": "\u0131x",
    "kelvin-sign": "\u212ab", "arabic-digit": "a\u0661", "zero-width-space": "a\u200bb",
    "zero-width-joiner": "a\u200db", "zero-width-non-joiner": "a\u200cb", "bom": "\ufeffab",
    "soft-hyphen": "a\u00adb", "rlo": "a\u202eb", "lri": "\u2066ab", "rlm": "ab\u200f",
    "emoji": "a" + EMOJI, "nul": "a\x00b",
}
# Where a handle can travel, client and server side, with the frame's ref.
NAME_SLOTS = [
    ("client", {"t": "hello", "v": 1}, "name", "hello"),
    ("client", {"t": "say", "text": "hi", "id": "m1"}, "to", "m1"),
    ("client", {"t": "typing"}, "to", "typing"),
    ("client", {"t": "nudge", "id": "n1"}, "to", "n1"),
    ("client", {"t": "contact", "op": "add"}, "name", "contact"),
    ("server", {"t": "typing", "room": "#lobby"}, "from", "typing"),
    ("server", {"t": "member", "room": "#lobby", "op": "join"}, "name", "member"),
    ("server", {"t": "read", "room": "#lobby", "seq": 1}, "name", "read"),
]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_valid_handles_are_accepted_everywhere(name: str) -> None:
    assert rules.is_valid_name(name)
    for direction, base, key, _ in NAME_SLOTS:
        DECODE[direction](codec.encode_map({**base, key: name}))


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_invalid_handles_are_name_invalid_everywhere(name: str) -> None:
    assert not rules.is_valid_name(name)
    for direction, base, key, ref in NAME_SLOTS:
        error = refuse(direction, {**base, key: name}, ErrorCode.NAME_INVALID)
        assert error.ref == ref


def test_handles_compare_case_insensitively() -> None:
    assert rules.normalize_name("AliCe") == "alice"
    assert rules.dm_room("Bob", "alice") == rules.dm_room("ALICE", "bob") == "dm:alice:bob"


# --- rooms ---------------------------------------------------------------------------

GOOD_ROOMS = ["#lobby", "#a", "#" + "z" * 32, "#rust-fans_2", "#0", "#-", "#_",
              "dm:alice:bob", "dm:a.b:a.c", "dm:9x:a-b", "dm:" + "a" * 24 + ":" + "b" * 24]
BAD_ROOMS = {
    "empty": "", "no-hash": "lobby", "hash-only": "#", "33-chars": "#" + "z" * 33,
    "upper-case": "#Lobby", "space": "#a b", "dot": "#a.b", "colon": "#a:b",
    "unicode": "#caf\u00e9", "trailing-newline": "#lobby\n", "double-hash": "##a",
    "dm-unsorted": "dm:bob:alice", "dm-upper-case": "dm:alice:Bob", "dm-same": "dm:bob:bob",
    "dm-one": "dm:alice", "dm-three": "dm:a1:b2:c3", "dm-empty-name": "dm::bob",
    "dm-bad-handle": "dm:alice:_bob", "dm-prefix-upper": "DM:alice:bob", "dm-only": "dm:",
    "dm-with-hash": "dm:#a:#b",
}
ROOM_SLOTS = [
    ("client", {"t": "join"}, "join"),
    ("client", {"t": "say", "text": "hi", "id": "m1"}, "m1"),
    ("client", {"t": "typing"}, "typing"),
    ("client", {"t": "history"}, "history"),
    ("client", {"t": "read", "seq": 1}, "read"),
    ("server", {"t": "left"}, "left"),
    ("server", {"t": "typing", "from": "bob"}, "typing"),
    ("server", {"t": "msg", "seq": 1, "from": "bob", "text": "", "ts": 1, "kind": "text",
                "id": "b1"}, "b1"),
]


@pytest.mark.parametrize("room", GOOD_ROOMS)
def test_valid_rooms_are_accepted_everywhere(room: str) -> None:
    assert rules.is_valid_room(room)
    for direction, base, _ in ROOM_SLOTS:
        DECODE[direction](codec.encode_map({**base, "room": room}))


@pytest.mark.parametrize("room", BAD_ROOMS.values(), ids=BAD_ROOMS.keys())
def test_invalid_rooms_are_a_bad_frame_everywhere(room: str) -> None:
    assert not rules.is_valid_room(room)
    for direction, base, ref in ROOM_SLOTS:
        assert refuse(direction, {**base, "room": room}).ref == ref


def test_a_bad_room_name_is_told_with_the_rule_it_breaks() -> None:
    """"#Lobby", a name too long, a DM's handles out of order: the refusal says the rule
    (# and 1-32 of a-z 0-9 _ -; a DM's two handles lower-case and in order)."""
    for room in ("#Lobby", "#" + "x" * 40, "dm:zed:yak"):
        msg = refuse("client", {"t": "join", "room": room}).msg
        assert "1-32 of a-z 0-9 _ -" in msg and "lower-case handles in order" in msg, msg


def test_leave_takes_a_group_room_only() -> None:
    assert codec.decode_client(codec.encode_map({"t": "leave", "room": "#lobby"}))
    refuse("client", {"t": "leave", "room": "dm:alice:bob"})


def test_dm_members_of_a_dm_room() -> None:
    assert rules.dm_members("dm:alice:bob") == ("alice", "bob")
    assert rules.dm_members("#lobby") is None
    assert rules.dm_members("dm:bob:alice") is None


# --- statuses and other enumerations -------------------------------------------------


@pytest.mark.parametrize("status", sorted(rules.CLIENT_STATUSES))
def test_every_client_status_is_accepted(status: str) -> None:
    codec.decode_client(codec.encode_map({"t": "presence", "status": status}))
    codec.decode_client(codec.encode_map({"t": "hello", "v": 1, "name": "ab",
                                          "status": status}))


@pytest.mark.parametrize("status", ["offline", "Online", "ONLINE", "idle", "", "online "])
def test_other_statuses_from_a_client_are_a_bad_frame(status: str) -> None:
    refuse("client", {"t": "presence", "status": status})
    refuse("client", {"t": "hello", "v": 1, "name": "ab", "status": status})


def test_the_server_may_send_offline_but_no_unknown_status() -> None:
    base = codec.to_map(FULL["server"]["presence"])
    assert codec.decode_server(codec.encode_map({**base, "status": "offline"}))
    refuse("server", {**base, "status": "idle"})


@pytest.mark.parametrize(("direction", "base", "key", "good", "bad"), [
    ("client", {"t": "contact", "name": "bob"}, "op",
     ["add", "remove", "block", "unblock"], ["added_you", "poke", "ADD"]),
    ("server", {"t": "contact", "name": "bob"}, "op",
     ["add", "remove", "block", "unblock", "added_you"], ["poke"]),
    ("server", {"t": "member", "room": "#a", "name": "bob"}, "op", ["join", "leave"],
     ["kick", "Join"]),
    ("server", {"t": "msg", "room": "#a", "seq": 1, "from": "bob", "text": "", "ts": 1},
     "kind", ["text", "nudge"], ["wink", "TEXT"]),
])
def test_enumerated_values(direction, base, key, good, bad) -> None:
    for value in good:
        DECODE[direction](codec.encode_map({**base, key: value}))
    for value in bad:
        refuse(direction, {**base, key: value})


# --- control characters --------------------------------------------------------------

C0 = [chr(c) for c in range(0x20)]
C1 = [chr(c) for c in range(0x80, 0xA0)]
BIDI = list("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
CONTROLS = [*C0, "\x7f", *C1, *BIDI]


@pytest.mark.parametrize("ch", CONTROLS, ids=lambda ch: f"U+{ord(ch):04X}")
def test_text_refuses_control_characters_except_tab_and_line_breaks(ch: str) -> None:
    wire = {**SAY, "text": f"a{ch}b"}
    if ch in "\t\n\r":
        assert codec.decode_client(codec.encode_map(wire)).text == f"a{ch}b"
    else:
        assert refuse("client", wire).ref == "m1"


@pytest.mark.parametrize("ch", CONTROLS, ids=lambda ch: f"U+{ord(ch):04X}")
@pytest.mark.parametrize("key", ["display", "psm"])
def test_display_and_psm_refuse_every_control_character(ch: str, key: str) -> None:
    refuse("client", {"t": "presence", key: f"a{ch}b"})
    refuse("client", {"t": "hello", "v": 1, "name": "ab", key: ch})
    base = codec.to_map(FULL["server"]["presence"])
    refuse("server", {**base, key: f"{ch}"})


@pytest.mark.parametrize("text", ["caf\u00e9", "\u4e2d\u6587", "\u05e9\u05dc\u05d5\u05dd",
                                  "\u05e9\u200f!", "e\u0301", EMOJI + "\u200d" + EMOJI,
                                  "a\u00a0b"])
def test_ordinary_unicode_is_fine_in_text_display_and_psm(text: str) -> None:
    # Marks such as RLM (U+200F) and joiners are format characters, not controls; in a
    # display name they are fine where they do a job (see test_lookalikes.py).
    codec.decode_client(codec.encode_map({**SAY, "text": text}))
    codec.decode_client(codec.encode_map({"t": "presence", "display": text, "psm": text}))


# --- bounded strings and integers ----------------------------------------------------


@pytest.mark.parametrize(("base", "key", "limit"), [
    ({"t": "say", "text": "x", "room": "#a"}, "id", rules.MAX_ID),
    ({"t": "nudge", "to": "bob"}, "id", rules.MAX_ID),
    ({"t": "join", "room": "#a"}, "epoch", rules.MAX_EPOCH),
    ({"t": "hello", "v": 1, "name": "ab"}, "client", rules.MAX_CLIENT),
])
def test_id_epoch_and_client_are_1_to_64_characters(base, key, limit) -> None:
    for length in (1, limit):
        codec.decode_client(codec.encode_map({**base, key: EMOJI * length}))
    for value in ("", "x" * (limit + 1), EMOJI * (limit + 1)):
        error = refuse("client", {**base, key: value})
        assert error.ref == base["t"]  # an invalid id is no ref


INT_SLOTS = [
    ({"t": "read", "room": "#a"}, "seq"),
    ({"t": "join", "room": "#a"}, "since"),
    ({"t": "history", "room": "#a"}, "before"),
    ({"t": "history", "room": "#a"}, "after"),
]


@pytest.mark.parametrize(("base", "key"), INT_SLOTS)
def test_integers_run_from_0_to_2_to_the_63_minus_1(base, key) -> None:
    for value in (0, 1, 2**31, 2**32, rules.MAX_INT):
        assert getattr(codec.decode_client(codec.encode_map({**base, key: value})),
                       key) == value
    for value in (-1, -(2**63), 2**63, 2**64 - 1):
        refuse("client", {**base, key: value})


def test_server_ints_have_the_same_range() -> None:
    base = codec.to_map(FULL["server"]["ack"])
    for key in ("seq", "ts"):
        refuse("server", {**base, key: -1})
        refuse("server", {**base, key: 2**63})
    error = codec.to_map(FULL["server"]["error"])
    refuse("server", {**error, "retry_ms": -5})


def test_history_limit_is_1_to_200_and_before_excludes_after() -> None:
    base = {"t": "history", "room": "#a"}
    for limit in (1, 100, 200):
        codec.decode_client(codec.encode_map({**base, "limit": limit}))
    for limit in (0, 201, 10_000):
        refuse("client", {**base, "limit": limit})
    refuse("client", {**base, "before": 5, "after": 1})
    refuse("client", {**base, "before": 0, "after": 0})


@pytest.mark.parametrize("t", ["say", "typing"])
def test_say_and_typing_take_exactly_one_of_room_and_to(t: str) -> None:
    base: dict[str, Any] = {"t": t, "text": "x", "id": "m1"} if t == "say" else {"t": t}
    codec.decode_client(codec.encode_map({**base, "room": "#a"}))
    codec.decode_client(codec.encode_map({**base, "to": "bob"}))
    codec.decode_client(codec.encode_map({**base, "room": "#a", "to": None}))
    refuse("client", {**base, "room": "#a", "to": "bob"})
    refuse("client", base)
    refuse("client", {**base, "room": None, "to": None})


def test_token_is_1_to_256_characters() -> None:
    base = {"t": "hello", "v": 1, "name": "ab"}
    codec.decode_client(codec.encode_map({**base, "token": "k" * 256}))
    refuse("client", {**base, "token": ""})
    refuse("client", {**base, "token": "k" * 257})


# --- the frame type, the version, the ref --------------------------------------------


@pytest.mark.parametrize("direction", ["client", "server"])
@pytest.mark.parametrize("t", [None, 1, True, 1.5, b"hello", ["hello"], {"t": "hello"}])
def test_a_missing_or_non_string_t_is_a_bad_frame_without_ref(direction: str, t) -> None:
    wire = {"t": t, "v": 1, "name": "ab", "id": "m1"}
    assert refuse(direction, wire).ref is None
    del wire["t"]
    assert refuse(direction, wire).ref is None


@pytest.mark.parametrize("direction", ["client", "server"])
def test_an_unknown_t_is_unknown_type_with_the_t_as_ref(direction: str) -> None:
    error = refuse(direction, {"t": "sparkle", "x": 1}, ErrorCode.UNKNOWN_TYPE)
    assert error.ref == "sparkle"
    # An id does not change it: the type is what the receiver cannot handle.
    assert refuse(direction, {"t": "wink", "id": "m7"}, ErrorCode.UNKNOWN_TYPE).ref == "wink"
    # A very long t is cut in the ref.
    long_t = "x" * 500
    assert refuse(direction, {"t": long_t}, ErrorCode.UNKNOWN_TYPE).ref == long_t[:32]
    assert refuse(direction, {"t": ""}, ErrorCode.UNKNOWN_TYPE).ref == ""


@pytest.mark.parametrize("v", [0, 2, 3, 255, 2**63, 2**64 - 1, -1])
def test_hello_with_another_integer_version_is_unsupported_before_anything_else(v) -> None:
    error = refuse("client", {"t": "hello", "v": v}, ErrorCode.UNSUPPORTED_VERSION)
    assert error.ref == "hello"
    junk = {"t": "hello", "v": v, "name": 5, "status": "zzz", "display": "\x00" * 99}
    refuse("client", junk, ErrorCode.UNSUPPORTED_VERSION)


@pytest.mark.parametrize("v", ["1", "2", 1.0, 2.0, True, None, [1]])
def test_hello_with_a_non_integer_version_is_a_bad_frame(v) -> None:
    refuse("client", {"t": "hello", "v": v, "name": "ab"})


def test_the_ref_is_the_id_when_valid_else_the_t() -> None:
    assert refuse("client", {"t": "say", "text": 1, "id": "m1", "room": "#a"}).ref == "m1"
    assert refuse("client", {"t": "say", "text": 1, "id": "", "room": "#a"}).ref == "say"
    assert refuse("client", {"t": "say", "text": 1, "id": "i" * 65, "room": "#a"}).ref == "say"
    assert refuse("client", {"t": "say", "text": 1, "id": 7, "room": "#a"}).ref == "say"
    assert refuse("client", {"t": "say", "text": 1, "room": "#a"}).ref == "say"
    # Any frame's id counts, even where id is not one of its keys.
    assert refuse("client", {"t": "read", "room": "#a", "id": "r1"}).ref == "r1"
    # Errors below the frame level (not a map, bad msgpack) have no ref.
    with pytest.raises(ProtocolError) as info:
        codec.decode_client(b"\xc1")
    assert info.value.ref is None
