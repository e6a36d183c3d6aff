"""Property tests of the decoder: nothing but ProtocolError ever leaves it.

Three generators: raw bytes, arbitrary msgpack maps (with and without a real ``t``),
and valid frames built from the protocol's rules, which must round-trip.
"""

from __future__ import annotations

import string
from datetime import timedelta
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfm_common import codec, rules
from cfm_common import frames as f
from cfm_common.errors import ProtocolError

FUZZ = settings(max_examples=300, deadline=timedelta(seconds=2),
                suppress_health_check=[HealthCheck.too_slow])

ALL_TYPES = sorted(set(f.CLIENT_FRAMES) | set(f.SERVER_FRAMES))


def decodes_or_refuses(data: bytes) -> None:
    """The decoder's contract: a frame, or ProtocolError; never anything else."""
    for decode in (codec.decode_client, codec.decode_server):
        try:
            frame = decode(data)
        except ProtocolError as exc:
            assert exc.code.value
            assert exc.ref is None or isinstance(exc.ref, str)
        else:
            assert codec.to_map(frame)["t"] == type(frame).T


# --- (1) arbitrary bytes -------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    decodes_or_refuses(data)


@FUZZ
@given(st.binary(min_size=1, max_size=64), st.sampled_from(ALL_TYPES))
def test_bytes_after_a_real_frame_prefix_decode_or_raise(tail: bytes, t: str) -> None:
    # A map header and a real t first, so the fuzzer gets past the first byte.
    decodes_or_refuses(b"\x83\xa1t" + msgpack.packb(t) + tail)


# --- (2) arbitrary msgpack maps ------------------------------------------------------

scalars = (
    st.none() | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True) | st.text(max_size=40) | st.binary(max_size=16)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
# Keys a frame really has, so that maps often look almost right.
KNOWN_KEYS = sorted({field.key for cls in (*f.CLIENT_FRAMES.values(), *f.SERVER_FRAMES.values(),
                                           f.RosterEntry, f.RoomState, f.StoredMsg)
                     for field in codec._fields(cls)})
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=8)
t_values = st.sampled_from(ALL_TYPES) | st.text(max_size=10) | scalars


@FUZZ
@given(st.dictionaries(keys, values, max_size=10), st.none() | t_values)
def test_arbitrary_maps_decode_or_raise_protocol_error(payload: dict[str, Any], t) -> None:
    if t is not None:
        payload = {"t": t, **payload}
    decodes_or_refuses(msgpack.packb(payload, use_bin_type=True))


@FUZZ
@given(values)
def test_arbitrary_non_map_payloads_raise_protocol_error(payload: Any) -> None:
    data = msgpack.packb(payload, use_bin_type=True)
    if not isinstance(payload, dict):
        for decode in (codec.decode_client, codec.decode_server):
            try:
                decode(data)
            except ProtocolError:
                continue
            raise AssertionError(f"{payload!r} decoded")
    decodes_or_refuses(data)


# --- (3) valid frames ----------------------------------------------------------------

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Anything a string can hold on the wire (no surrogates: they are not UTF-8).
any_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)
safe_chars = st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters=BIDI)
message_text = st.text(safe_chars | st.sampled_from("\t\n\r"), max_size=300)
names = st.from_regex(rules.NAME_RE, fullmatch=True)
group_rooms = st.from_regex(rules.GROUP_ROOM_RE, fullmatch=True)
dm_rooms = st.tuples(names, names).filter(
    lambda ab: ab[0].lower() != ab[1].lower()).map(lambda ab: rules.dm_room(*ab))
rooms = group_rooms | dm_rooms
seqs = st.integers(min_value=0, max_value=rules.MAX_INT)
ids = st.text(safe_chars, min_size=1, max_size=rules.MAX_ID)
short_ids = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=64)


def bounded(limit: int) -> st.SearchStrategy[str]:
    return st.text(safe_chars, max_size=limit)


roster = st.builds(
    f.RosterEntry, name=names, display=bounded(rules.MAX_DISPLAY),
    status=st.sampled_from(sorted(rules.SERVER_STATUSES)), psm=bounded(rules.MAX_PSM),
    bot=st.booleans(), blocked=st.none() | st.booleans(),
)
stored = st.builds(
    f.StoredMsg, room=rooms, seq=seqs, sender=names, text=any_text, ts=seqs,
    kind=st.sampled_from(["text", "nudge"]), id=st.none() | any_text,
)


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


client_statuses = st.sampled_from(sorted(rules.CLIENT_STATUSES))
server_statuses = st.sampled_from(sorted(rules.SERVER_STATUSES))
# What a client may set as its own name or personal message: no invisible characters.
display = bounded(rules.MAX_DISPLAY).filter(lambda s: rules.hidden_char(s) is None)
psm = bounded(rules.MAX_PSM).filter(lambda s: rules.hidden_char(s) is None)

client_frames = st.one_of(
    st.builds(f.Hello, v=st.just(1), name=names,
              token=opt(st.text(safe_chars, min_size=1, max_size=256)),
              status=opt(client_statuses), display=opt(display), psm=opt(psm),
              client=opt(ids), bot=opt(st.booleans())),
    st.builds(f.SetPresence, status=opt(client_statuses), display=opt(display), psm=opt(psm)),
    st.builds(f.Join, room=rooms, since=opt(seqs), epoch=opt(ids)),
    st.builds(f.Leave, room=group_rooms),
    st.builds(f.Say, text=message_text, id=ids, room=rooms, to=st.none()),
    st.builds(f.Say, text=message_text, id=ids, room=st.none(), to=names),
    st.builds(f.SendTyping, room=rooms, to=st.none()),
    st.builds(f.SendTyping, room=st.none(), to=names),
    st.builds(f.Nudge, to=names, id=opt(ids)),
    st.builds(f.GetHistory, room=rooms, before=opt(seqs), after=st.none(),
              limit=opt(st.integers(1, rules.MAX_HISTORY_LIMIT))),
    st.builds(f.GetHistory, room=rooms, before=st.none(), after=seqs,
              limit=opt(st.integers(1, rules.MAX_HISTORY_LIMIT))),
    st.builds(f.MarkRead, room=rooms, seq=seqs),
    st.builds(f.ContactRequest, op=st.sampled_from(sorted(rules.CLIENT_CONTACT_OPS)),
              name=names),
)

server_frames = st.one_of(
    st.builds(f.Welcome, v=st.just(1), session=any_text, name=names, token=any_text,
              display=display, status=server_statuses, psm=psm, server=any_text,
              limits=st.dictionaries(st.text(max_size=12), seqs, max_size=4),
              rooms=st.lists(st.builds(f.RoomState, room=rooms, seq=seqs, read=seqs,
                                       epoch=ids), max_size=3).map(tuple),
              contacts=st.lists(roster, max_size=3).map(tuple)),
    st.builds(f.Presence, name=names, display=display, status=server_statuses, psm=psm,
              bot=st.booleans()),
    st.builds(f.Joined, room=rooms, seq=seqs, epoch=ids,
              members=st.lists(roster, max_size=3).map(tuple), more=opt(st.booleans()),
              reset=opt(st.booleans())),
    st.builds(f.Left, room=rooms),
    st.builds(f.Member, room=rooms, name=names, op=st.sampled_from(["join", "leave"])),
    stored.map(f.Msg.from_stored),
    st.builds(f.Ack, room=rooms, seq=seqs, ts=seqs, id=opt(any_text)),
    st.builds(f.Typing, room=rooms, sender=names),
    st.builds(f.Read, room=rooms, name=names, seq=seqs),
    st.builds(f.History, room=rooms, msgs=st.lists(stored, max_size=3).map(tuple),
              more=st.booleans()),
    st.builds(f.Contact, op=st.sampled_from([o.value for o in rules.ContactOp]), name=names,
              display=opt(display), status=opt(server_statuses), psm=opt(psm),
              bot=opt(st.booleans()), blocked=opt(st.booleans())),
    st.builds(f.Error, code=any_text, msg=any_text, ref=opt(any_text), retry_ms=opt(seqs)),
)


@FUZZ
@given(client_frames)
def test_valid_client_frames_round_trip(frame: f.ClientFrame) -> None:
    data = codec.encode(frame)
    assert codec.decode_client(data, max_text=10_000) == frame
    assert codec.encode(codec.decode_client(data, max_text=10_000)) == data


@FUZZ
@given(server_frames)
def test_valid_server_frames_round_trip(frame: f.ServerFrame) -> None:
    data = codec.encode(frame)
    assert codec.decode_server(data) == frame
    assert codec.encode(codec.decode_server(data)) == data


@FUZZ
@given(client_frames | server_frames, st.data())
def test_a_valid_frame_cut_short_or_flipped_never_escapes(frame: Any, data: st.DataObject) -> None:
    raw = codec.encode(frame)
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    decodes_or_refuses(raw[:cut])
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    byte = data.draw(st.integers(0, 255), label="byte")
    decodes_or_refuses(raw[:position] + bytes([byte]) + raw[position + 1:])
