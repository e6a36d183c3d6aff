"""Frames to bytes and back: ``encode(frame)`` and ``decode_client`` / ``decode_server``.

Decoding is where untrusted bytes meet the program, so it is strict and bounded:
msgpack's limits are set explicitly from the size of the input, extension types are
refused, nesting is capped, and every key of a known frame is checked for its type and
rule. The only exception that leaves this module is :class:`ProtocolError`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import msgpack

from cfm_common import PROTOCOL_VERSION, rules
from cfm_common.errors import ProtocolError
from cfm_common.frames import (
    CLIENT_FRAMES,
    SERVER_FRAMES,
    Ack,
    ClientFrame,
    Hello,
    Msg,
    RosterEntry,
    ServerFrame,
    StoredMsg,
)
from cfm_common.rules import ErrorCode

# Hard ceilings for one frame, whatever the server's max_frame: no frame of the protocol
# needs more, and each is further capped by the length of the input itself.
MAX_STR_LEN = 1 << 20
MAX_BIN_LEN = 1 << 20
MAX_ARRAY_LEN = 1 << 16
MAX_MAP_LEN = 1 << 12
# A frame is a map of scalars, lists of maps at most (welcome, joined, history): depth 3.
# Unknown keys may carry more, but not without end.
MAX_DEPTH = 8


class ShapeLimits(NamedTuple):
    """How much structure one frame may hold: the cost of unpacking is per element.

    ``containers`` and ``elements`` are totals over the whole frame (an element is one
    value in an array or one key-value pair in a map; every container counts as an
    element of its parent too), checked while msgpack unpacks, so a frame of thousands of
    empty maps is refused after ``containers`` of them, not after all were built.
    """

    array_len: int
    map_len: int
    containers: int
    elements: int


# Client frames are maps of scalars (no client frame has a list): what an unknown key may
# carry is kept small. A frame within these costs at most ~elements + array_len values.
CLIENT_SHAPE = ShapeLimits(array_len=1024, map_len=64, containers=64, elements=4096)
# Server frames carry big lists (a welcome's contacts, a join's members): only the
# per-container ceilings apply.
SERVER_SHAPE = ShapeLimits(array_len=MAX_ARRAY_LEN, map_len=MAX_MAP_LEN,
                           containers=1 << 30, elements=1 << 30)


class _Field(NamedTuple):
    attr: str
    key: str
    kind: type | tuple[type, ...]
    check: Any
    of: type | None
    optional: bool


@functools.cache
def _fields(cls: type) -> tuple[_Field, ...]:
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        out.append(
            _Field(
                attr=f.name,
                key=meta.get("key") or f.name,
                kind=meta["kind"],
                check=meta["check"],
                of=meta["of"],
                optional=f.default is None,
            )
        )
    return tuple(out)


# --- encoding ------------------------------------------------------------------------


def to_map(obj: Any) -> dict[str, Any]:
    """A frame (or a nested shape) as the map that goes on the wire, ``t`` first."""
    out: dict[str, Any] = {}
    t = getattr(type(obj), "T", None)
    if t is not None:
        out["t"] = t
    for f in _fields(type(obj)):
        value = getattr(obj, f.attr)
        if value is None:
            continue
        if f.of is not None:
            fast = _NESTED_MAPS.get(f.of, to_map)
            value = [fast(item) for item in value]
        elif type(value) is tuple:  # a list of handles
            value = list(value)
        out[f.key] = value
    return out


# The two shapes that come in long lists (a big room's ``joined.members``, a page of
# ``history`` or a ``join`` replay): literal maps, same keys in the same order as
# ``to_map`` writes them (a test compares the bytes), without the walk over fields.
def _roster_map(e: RosterEntry) -> dict[str, Any]:
    out = {"name": e.name, "display": e.display, "status": e.status, "psm": e.psm,
           "bot": e.bot}
    if e.blocked is not None:
        out["blocked"] = e.blocked
    return out


def _stored_map(m: StoredMsg | Msg) -> dict[str, Any]:
    out = {"room": m.room, "seq": m.seq, "from": m.sender, "text": m.text, "ts": m.ts,
           "kind": m.kind}
    if m.id is not None:
        out["id"] = m.id
    if m.hidden is not None:
        out["hidden"] = m.hidden
    if m.reply is not None or m.mentions is not None or m.change is not None \
            or m.target is not None or m.emoji is not None or m.edited is not None \
            or m.deleted is not None or m.reactions is not None:
        _add_change_keys(m, out)
    return out


def _add_change_keys(m: StoredMsg | Msg, out: dict[str, Any]) -> None:
    """The extension keys of a message (replies, mentions, changes), in canonical order:
    apart, so that a plain message (the hot path) costs one test each, not two."""
    if m.reply is not None:
        out["reply"] = m.reply
    if m.mentions is not None:
        out["mentions"] = list(m.mentions)
    if m.change is not None:
        out["change"] = m.change
    if m.target is not None:
        out["target"] = m.target
    if m.emoji is not None:
        out["emoji"] = m.emoji
    if m.edited is not None:
        out["edited"] = m.edited
    if m.deleted is not None:
        out["deleted"] = m.deleted
    if m.reactions is not None:
        out["reactions"] = [{"emoji": r.emoji, "names": list(r.names)} for r in m.reactions]


_NESTED_MAPS: dict[type, Any] = {RosterEntry: _roster_map, StoredMsg: _stored_map}


def encode(frame: ClientFrame | ServerFrame) -> bytes:
    """The msgpack bytes of one frame."""
    cls = type(frame)
    if cls is Msg:
        return encode_msg(frame)  # type: ignore[arg-type]
    if cls is Ack:
        return encode_ack(frame)  # type: ignore[arg-type]
    return msgpack.packb(to_map(frame), use_bin_type=True)


# The hot path's two frames, ``msg`` and ``ack``, are one per say (and the ``msg`` once
# per say, whatever the fan-out): built as literal maps, in the same key order as
# ``to_map`` (so the bytes are identical), they skip the generic walk over dataclass
# fields, 4x faster. The shared Packer saves building one per call; its ``pack`` never
# releases the GIL for these plain values, so sharing it is safe across threads too.
_hot_packer = msgpack.Packer(use_bin_type=True)


def encode_msg(m: Msg | StoredMsg) -> bytes:
    """The bytes of a ``msg`` frame for a message (a ``Msg`` or the ``StoredMsg`` behind it)."""
    payload = {"t": "msg", "room": m.room, "seq": m.seq, "from": m.sender, "text": m.text,
               "ts": m.ts, "kind": m.kind}
    if m.id is not None:
        payload["id"] = m.id
    if m.hidden is not None:
        payload["hidden"] = m.hidden
    if m.reply is not None or m.mentions is not None or m.change is not None \
            or m.target is not None or m.emoji is not None or m.edited is not None \
            or m.deleted is not None or m.reactions is not None:
        _add_change_keys(m, payload)
    return _hot_packer.pack(payload)


def encode_ack(a: Ack | StoredMsg) -> bytes:
    """The bytes of the ``ack`` frame of an ``Ack`` or of the ``StoredMsg`` it acknowledges."""
    payload = {"t": "ack", "room": a.room, "seq": a.seq, "ts": a.ts}
    if a.id is not None:
        payload["id"] = a.id
    return _hot_packer.pack(payload)


def encode_map(payload: dict[str, Any]) -> bytes:
    """The msgpack bytes of a raw map (tests and tools that speak the wire directly)."""
    return msgpack.packb(payload, use_bin_type=True)


# --- decoding ------------------------------------------------------------------------


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"extension type {code} is not allowed")


class _TooMuchStructure(Exception):
    pass


class _ShapeCounter:
    """msgpack's ``object_hook``/``list_hook``: counts containers and elements as they
    are built (innermost first) and stops the unpacker once a total is over its limit."""

    __slots__ = ("containers", "elements", "limits")

    def __init__(self, limits: ShapeLimits) -> None:
        self.limits = limits
        self.containers = 0
        self.elements = 0

    def __call__(self, value: Any) -> Any:
        self.containers += 1
        self.elements += len(value)
        if self.containers > self.limits.containers:
            raise _TooMuchStructure(f"more than {self.limits.containers} maps and arrays")
        if self.elements > self.limits.elements:
            raise _TooMuchStructure(f"more than {self.limits.elements} elements")
        return value


def unpack_map(data: bytes, shape: ShapeLimits = SERVER_SHAPE) -> dict[str, Any]:
    """Unpack one msgpack map with string keys, within explicit limits.

    ``shape`` bounds the structure (see :data:`CLIENT_SHAPE`); every length is also
    capped by the size of ``data`` itself.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(ErrorCode.BAD_FRAME, "a frame is a binary message")
    n = len(data)
    if n == 0:
        raise ProtocolError(ErrorCode.BAD_FRAME, "empty frame")
    counter = _ShapeCounter(shape) if shape is not SERVER_SHAPE else None
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=min(n, MAX_STR_LEN),
            max_bin_len=min(n, MAX_BIN_LEN),
            max_array_len=min(n, shape.array_len),
            max_map_len=min(n // 2, shape.map_len),
            max_ext_len=0,
            ext_hook=_refuse_ext,
            timestamp=0,
            object_hook=counter,
            list_hook=counter,
        )
    except _TooMuchStructure as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"too much structure: {exc}") from None
    except Exception as exc:  # msgpack raises a zoo of ValueError/TypeError subclasses
        raise ProtocolError(ErrorCode.BAD_FRAME, f"not valid msgpack: {_describe(exc)}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "a frame is a msgpack map")
    for key in obj:
        if not isinstance(key, str):
            raise ProtocolError(ErrorCode.BAD_FRAME, "frame keys must be strings")
    _check_depth(obj)
    return obj


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:80]


def _check_depth(obj: dict[str, Any]) -> None:
    # One level at a time, exact type tests: a frame of scalars costs one pass, and a
    # frame stuffed with tiny containers (the costly case) is walked as fast as Python can.
    level = [v for v in obj.values() if type(v) is list or type(v) is dict]
    depth = 1
    while level:
        if depth >= MAX_DEPTH:
            raise ProtocolError(ErrorCode.BAD_FRAME, f"nested deeper than {MAX_DEPTH} levels")
        below: list[Any] = []
        for value in level:
            if type(value) is dict:
                # Checked where each map is visited, so a map that is a frame value is too.
                # (strict_map_key refuses int and nil keys but lets bin keys through.)
                for key in value:
                    if type(key) is not str:
                        raise ProtocolError(ErrorCode.BAD_FRAME, "map keys must be strings")
                value = value.values()
            below.extend(v for v in value if type(v) is list or type(v) is dict)
        level = below
        depth += 1


def _ref_of(payload: dict[str, Any]) -> str | None:
    ident = payload.get("id")
    if isinstance(ident, str) and 0 < len(ident) <= rules.MAX_ID and not rules.has_control_chars(
        ident
    ):
        return ident
    t = payload.get("t")
    return t if isinstance(t, str) and len(t) <= 32 else None


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "a boolean", list: "a list", dict: "a map"}
    return names.get(kind, str(kind)) if isinstance(kind, type) else "a value"


def _build(cls: type, payload: dict[str, Any], ref: str | None) -> Any:
    values: dict[str, Any] = {}
    for f in _fields(cls):
        value = payload.get(f.key)
        if value is None:
            # msgpack nil counts as absent: the encoder never sends it for a set field.
            if f.optional:
                values[f.attr] = None
                continue
            raise ProtocolError(ErrorCode.BAD_FRAME, f"missing key {f.key!r}", ref)
        # bool is an int subclass in Python but a different type on the wire.
        if not isinstance(value, f.kind) or (f.kind is int and isinstance(value, bool)):
            raise ProtocolError(
                ErrorCode.BAD_FRAME, f"key {f.key!r} must be {_type_name(f.kind)}", ref
            )
        if f.of is not None:
            items = []
            for item in value:
                if not isinstance(item, dict):
                    raise ProtocolError(ErrorCode.BAD_FRAME, f"{f.key!r} holds a non-map", ref)
                items.append(_build(f.of, item, ref))
            value = tuple(items)
        elif f.check is not None:
            try:
                f.check(value)
            except ProtocolError as exc:
                raise ProtocolError(exc.code, exc.msg, ref) from None
            if f.kind is list:  # a list of strings (handles): frames hold tuples
                value = tuple(value)
        values[f.attr] = value
    frame = cls(**values)
    check = getattr(cls, "CHECK", None)
    if check is not None:
        try:
            check(frame)
        except ProtocolError as exc:
            raise ProtocolError(exc.code, exc.msg, ref) from None
    return frame


def _frame_type(payload: dict[str, Any], registry: dict[str, type]) -> type:
    t = payload.get("t")
    if not isinstance(t, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, "key 't' (the frame type) must be a string")
    cls = registry.get(t)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {t[:32]!r}", t[:32])
    return cls


def frame_from_map(
    payload: dict[str, Any], *, max_text: int = rules.DEFAULT_MAX_TEXT
) -> ClientFrame:
    """Validate an already-unpacked client map (see :func:`decode_client`)."""
    cls = _frame_type(payload, CLIENT_FRAMES)
    ref = _ref_of(payload)
    if cls is Hello:
        # Checked before the other keys: a later version's hello may look different.
        v = payload.get("v")
        if type(v) is int and v != PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {v} is not supported (this server speaks {PROTOCOL_VERSION})",
                ref,
            )
    frame = _build(cls, payload, ref)
    text = getattr(frame, "text", None)
    if text is not None and len(text) > max_text:
        raise ProtocolError(ErrorCode.TOO_LONG, f"text is longer than {max_text} characters", ref)
    return frame


def decode_client(data: bytes, *, max_text: int = rules.DEFAULT_MAX_TEXT) -> ClientFrame:
    """A client → server frame from bytes; raises ProtocolError with the protocol's code.

    Handles keep the case the client sent; the server lower-cases them (``normalize_name``).
    """
    return frame_from_map(unpack_map(data, CLIENT_SHAPE), max_text=max_text)


def decode_server(data: bytes) -> ServerFrame:
    """A server → client frame from bytes; raises ProtocolError with the protocol's code."""
    payload = unpack_map(data)
    cls = _frame_type(payload, SERVER_FRAMES)
    return _build(cls, payload, _ref_of(payload))
