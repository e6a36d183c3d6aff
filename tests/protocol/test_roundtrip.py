"""Every frame type survives encode → decode, in both directions, with and without options."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from cfm_common import codec
from cfm_common import frames as f
from cfm_common.errors import ProtocolError
from tests.protocol.vectors import generator

CLIENT = generator().client_samples()
SERVER = generator().server_samples()
SAMPLES = [("client", name, frame) for name, frame in CLIENT] + [
    ("server", name, frame) for name, frame in SERVER
]
DECODE = {"client": codec.decode_client, "server": codec.decode_server}


def sample_id(sample: tuple[str, str, object]) -> str:
    return f"{sample[0]}/{sample[1]}"


@pytest.mark.parametrize("sample", SAMPLES, ids=sample_id)
def test_decode_of_encode_is_the_same_frame(sample) -> None:
    direction, _, frame = sample
    data = codec.encode(frame)
    back = DECODE[direction](data)
    assert back == frame
    assert type(back) is type(frame)
    assert codec.encode(back) == data


@pytest.mark.parametrize("sample", SAMPLES, ids=sample_id)
def test_the_wire_map_starts_with_t_and_omits_absent_keys(sample) -> None:
    _, _, frame = sample
    wire = msgpack.unpackb(codec.encode(frame), raw=False)
    keys = list(wire)
    assert keys[0] == "t"
    assert wire["t"] == type(frame).T
    assert None not in wire.values()
    documented = [field.key for field in codec._fields(type(frame))]
    # The keys that are present follow the documented order.
    assert keys[1:] == [k for k in documented if k in wire]


def _without(frame: object, attr: str) -> object:
    return dataclasses.replace(frame, **{attr: None})


# Optional keys whose absence makes the frame invalid: say/typing need room or to.
PAIRED = {(f.Say, "room"), (f.Say, "to"), (f.SendTyping, "room"), (f.SendTyping, "to")}


@pytest.mark.parametrize("sample", SAMPLES, ids=sample_id)
def test_each_optional_key_can_be_left_out(sample) -> None:
    direction, _, frame = sample
    for field in codec._fields(type(frame)):
        if not field.optional or getattr(frame, field.attr) is None:
            continue
        if (type(frame), field.attr) in PAIRED:
            continue
        smaller = _without(frame, field.attr)
        data = codec.encode(smaller)
        assert field.key not in msgpack.unpackb(data, raw=False)
        assert DECODE[direction](data) == smaller


@pytest.mark.parametrize("sample", SAMPLES, ids=sample_id)
def test_nil_for_an_optional_key_means_absent(sample) -> None:
    direction, _, frame = sample
    wire = codec.to_map(frame)
    for field in codec._fields(type(frame)):
        if field.optional and field.key not in wire:
            wire[field.key] = None
    assert DECODE[direction](codec.encode_map(wire)) == frame


@pytest.mark.parametrize("sample", SAMPLES, ids=sample_id)
def test_unknown_keys_are_ignored(sample) -> None:
    direction, _, frame = sample
    wire = codec.to_map(frame)
    wire.update({"zz_future": {"a": [1, 2, {"b": True}]}, "x-bin": b"\x00\x01", "f": 0.5,
                 "neg": -3})
    assert DECODE[direction](codec.encode_map(wire)) == frame


@pytest.mark.parametrize("sample", SAMPLES, ids=sample_id)
def test_key_order_on_the_wire_does_not_matter(sample) -> None:
    direction, _, frame = sample
    wire = codec.to_map(frame)
    reversed_map = dict(reversed(list(wire.items())))
    assert DECODE[direction](codec.encode_map(reversed_map)) == frame


def test_non_minimal_integer_encodings_are_accepted() -> None:
    # A uint64 holding 42 and an int8 holding 5: other msgpack libraries may send these.
    data = b"\x83\xa1t\xa4read\xa4room\xa6#lobby\xa3seq\xcf" + (42).to_bytes(8, "big")
    assert codec.decode_client(data) == f.MarkRead(room="#lobby", seq=42)
    data = b"\x83\xa1t\xa4read\xa4room\xa6#lobby\xa3seq\xd0\x05"
    assert codec.decode_client(data) == f.MarkRead(room="#lobby", seq=5)


def test_str8_and_str16_encodings_of_short_strings_are_accepted() -> None:
    data = b"\x83\xd9\x01t\xda\x00\x04read\xa4room\xa6#lobby\xa3seq\x01"
    assert codec.decode_client(data) == f.MarkRead(room="#lobby", seq=1)


def test_the_codec_keeps_the_case_of_handles() -> None:
    # The server, not the codec, lower-cases handles (rules.normalize_name).
    frame = codec.decode_client(codec.encode(f.Hello(v=1, name="AliCe")))
    assert frame.name == "AliCe"


def test_msg_and_stored_msg_convert_both_ways() -> None:
    msg = f.Msg(room="#lobby", seq=3, sender="bob", text="hi", ts=9, kind="text", id="x")
    assert f.Msg.from_stored(msg.to_stored()) == msg
    assert codec.to_map(msg.to_stored()) == {k: v for k, v in codec.to_map(msg).items()
                                             if k != "t"}


def test_frames_sharing_a_t_decode_to_their_own_direction_class() -> None:
    both = set(f.CLIENT_FRAMES) & set(f.SERVER_FRAMES)
    assert both == {"presence", "typing", "read", "history", "contact", "members",
                    "moderators", "search"}
    data = codec.encode(f.SendTyping(room="#lobby"))
    assert isinstance(codec.decode_client(data), f.SendTyping)
    with pytest.raises(ProtocolError):
        codec.decode_server(data)  # a server typing frame must say who types


def test_messages_built_by_the_fast_init_are_frozen_and_whole() -> None:
    import dataclasses

    by_position = f.StoredMsg("#lobby", 3, "bob", "hi", 9, "text", "x", None, 2)
    by_keyword = f.StoredMsg(room="#lobby", seq=3, sender="bob", text="hi", ts=9,
                             kind="text", id="x", reply=2)
    assert by_position == by_keyword and hash(by_position) == hash(by_keyword)
    assert by_keyword.mentions is None and by_keyword.reactions is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        by_keyword.text = "changed"  # type: ignore[misc]
    assert dataclasses.replace(by_keyword, text="changed").text == "changed"
    with pytest.raises(TypeError):
        f.StoredMsg("#lobby", 3, "bob")  # type: ignore[call-arg]
    assert f.Msg.from_stored(by_keyword).to_stored() == by_keyword
