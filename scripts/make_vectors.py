#!/usr/bin/env python3
"""Write ``docs/vectors.json``: the protocol's test vectors for clients in any language.

    .venv/bin/python scripts/make_vectors.py           # (re)write docs/vectors.json
    .venv/bin/python scripts/make_vectors.py --check   # exit 1 if the file is stale

Each case is ``{"name", "direction", "hex", "expect", ...}``; docs/protocol.md
("Test vectors") describes the format. Valid cases are built from frame objects and
encoded canonically; invalid cases are built by hand, byte by byte where msgpack-python
would refuse to produce them. The expectations are written down here, not computed by
the decoder, so that tests/protocol/test_vectors.py checks the decoder against them.

The output depends on nothing but this file and the frame definitions: no clocks, no
randomness, no dict ordering surprises, so regenerating it gives the same bytes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgpack

from cfm_common import codec
from cfm_common import frames as f
from cfm_common.rules import DEFAULT_MAX_TEXT, MAX_INT

VECTORS_PATH = Path(__file__).resolve().parent.parent / "docs" / "vectors.json"

EMOJI = "\U0001f600"  # 😀: one code point, four UTF-8 bytes, two UTF-16 units
CLAIM = "Jm4tq0yVbX5c0n2Z8rKXo1mDq9fT3wYbHc7eLp6uA2s"  # 43 characters: 256 bits

Case = dict[str, Any]

# --- valid frames --------------------------------------------------------------------


def _roster(name: str, status: str = "online", *, bot: bool = False,
            blocked: bool | None = None) -> f.RosterEntry:
    return f.RosterEntry(name=name, display=name.capitalize(), status=status, psm="",
                         bot=bot, blocked=blocked)


def client_samples() -> list[tuple[str, f.ClientFrame]]:
    """Valid client frames: every type with all optional keys, minimal, and boundaries."""
    return [
        ("hello/full", f.Hello(v=1, name="Alice", token="3q2-7Yh_tok", status="busy",
                               display="Alice \u2615", psm="(8) Daft Punk - One More Time",
                               client="cfm-tui/0.1.0", bot=False)),
        ("hello/minimal", f.Hello(v=1, name="alice")),
        ("hello/bot", f.Hello(v=1, name="echo-bot", bot=True)),
        ("hello/name-2-chars", f.Hello(v=1, name="ab")),
        ("hello/name-24-chars", f.Hello(v=1, name="a" * 23 + "9")),
        ("hello/name-all-classes", f.Hello(v=1, name="Mr.Bean-2_X")),
        ("hello/display-at-max", f.Hello(v=1, name="alice", display="a" * 63 + EMOJI)),
        ("hello/psm-at-max", f.Hello(v=1, name="alice", psm="p" * 127 + EMOJI)),
        ("hello/empty-display-and-psm", f.Hello(v=1, name="alice", display="", psm="")),
        ("hello/id-like-keys-at-max", f.Hello(v=1, name="alice", client="c" * 64)),
        ("presence/full", f.SetPresence(status="away", display="Alice", psm="back at 5")),
        ("presence/minimal", f.SetPresence()),
        ("presence/invisible", f.SetPresence(status="invisible")),
        # Joiners and marks where they do a job: an emoji sequence, Hebrew with an RLM.
        ("presence/display-emoji-zwj", f.SetPresence(
            display="Bob \U0001f468\u200d\U0001f469\u200d\U0001f467")),
        ("presence/psm-rtl-mark", f.SetPresence(psm="\u05e9\u05dc\u05d5\u05dd\u200f!")),
        ("join/full", f.Join(room="#lobby", since=41, epoch="01HZX3K9")),
        ("join/minimal", f.Join(room="#lobby")),
        ("join/since-zero", f.Join(room="#rust-fans_2", since=0)),
        ("join/dm", f.Join(room="dm:alice:bob", since=7)),
        ("join/room-32-chars", f.Join(room="#" + "r" * 32)),
        ("leave", f.Leave(room="#lobby")),
        ("say/room", f.Say(text="hi all " + EMOJI, id="m-0001", room="#lobby")),
        ("say/to", f.Say(text="hey", id="m-0002", to="Bob")),
        ("say/tab-and-line-breaks", f.Say(text="a\tb\nc\r\nd", id="m-0003", room="#lobby")),
        ("say/text-at-max", f.Say(text="a" * (DEFAULT_MAX_TEXT - 1) + EMOJI, id="m-0004",
                                  room="#lobby")),
        ("say/empty-text", f.Say(text="", id="m-0005", to="bob")),
        ("say/id-at-max", f.Say(text="x", id="i" * 64, room="dm:alice:bob")),
        # Code points, not UTF-16 units: 64 emoji are 128 units in JavaScript's .length.
        ("say/id-at-max-emoji", f.Say(text="x", id=EMOJI * 64, room="dm:alice:bob")),
        ("typing/room", f.SendTyping(room="#lobby")),
        ("typing/to", f.SendTyping(to="bob")),
        ("nudge/full", f.Nudge(to="bob", id="n-0001")),
        ("nudge/minimal", f.Nudge(to="bob")),
        ("history/before", f.GetHistory(room="#lobby", before=120, limit=50)),
        ("history/after", f.GetHistory(room="dm:alice:bob", after=7, limit=200)),
        ("history/minimal", f.GetHistory(room="#lobby")),
        ("history/limit-1", f.GetHistory(room="#lobby", limit=1)),
        ("read", f.MarkRead(room="#lobby", seq=42)),
        ("read/seq-at-max", f.MarkRead(room="#lobby", seq=MAX_INT)),
        ("contact/add", f.ContactRequest(op="add", name="bob")),
        ("contact/remove", f.ContactRequest(op="remove", name="bob")),
        ("contact/block", f.ContactRequest(op="block", name="Bob")),
        ("contact/unblock", f.ContactRequest(op="unblock", name="bob")),
        # Big rooms (an additive extension).
        ("hello/full-quiet", f.Hello(v=1, name="Alice", token="3q2-7Yh_tok", status="busy",
                                     display="Alice", psm="", client="cfm-tui/0.1.0",
                                     bot=False, quiet=True)),
        ("hello/quiet", f.Hello(v=1, name="alice", quiet=True)),
        # Registration by invite (an additive extension).
        ("hello/invite", f.Hello(v=1, name="alice", invite="3f9a1c2e-0-1-9b7c2e4f1a0d3c5b6e7f")),
        ("hello/full-invite", f.Hello(v=1, name="Alice", token="3q2-7Yh_tok", status="busy",
                                      display="Alice", psm="", client="cfm-tui/0.1.0",
                                      bot=False, quiet=True,
                                      invite="3f9a1c2e-0-1-9b7c2e4f1a0d3c5b6e7f")),
        ("hello/invite-at-max", f.Hello(v=1, name="alice", invite="i" * 128)),
        # A claim that signs in when tried again (an additive extension).
        ("hello/claim", f.Hello(v=1, name="alice", claim=CLAIM)),
        ("hello/full-claim", f.Hello(v=1, name="Alice", token="3q2-7Yh_tok", status="busy",
                                     display="Alice", psm="", client="cfm-tui/0.1.0",
                                     bot=False, quiet=True,
                                     invite="3f9a1c2e-0-1-9b7c2e4f1a0d3c5b6e7f", claim=CLAIM)),
        ("hello/claim-at-min", f.Hello(v=1, name="alice", claim="c" * 43)),
        ("hello/claim-at-max", f.Hello(v=1, name="alice", claim="c" * 256)),
        ("join/full-members-limit", f.Join(room="#lobby", since=41, epoch="01HZX3K9",
                                           members_limit=50)),
        ("join/members-limit-0", f.Join(room="#lobby", members_limit=0)),
        ("join/members-limit-1000", f.Join(room="#lobby", members_limit=1000)),
        ("members/full", f.GetMembers(room="#lobby", after="Bob", limit=100)),
        ("members/minimal", f.GetMembers(room="#lobby")),
        ("members/limit-500", f.GetMembers(room="#lobby", limit=500)),
        # Request ids: any request may carry an id, given back as its answer's ref.
        ("join/full-request-id", f.Join(room="#lobby", since=41, epoch="01HZX3K9",
                                         members_limit=50, id="r-1")),
        ("leave/request-id", f.Leave(room="#lobby", id="r-2")),
        ("history/request-id", f.GetHistory(room="#lobby", after=7, id="r-3")),
        ("members/full-request-id", f.GetMembers(room="#big", after="bob", limit=100, id="r-4")),
        ("contact/request-id", f.ContactRequest(op="add", name="bob", id="r-5")),
        ("history/request-id-at-max", f.GetHistory(room="#lobby", id="i" * 63 + EMOJI)),
        # Message changes (an additive extension): replies, edit, delete, reactions,
        # moderators.
        ("say/reply", f.Say(text="yes!", id="m-0006", room="#lobby", reply=41)),
        ("say/full-reply-to", f.Say(text="yes!", id="m-0007", to="bob", reply=3)),
        ("edit", f.Edit(room="#lobby", target=43, text="hello, fixed", id="e-0001")),
        ("delete", f.Delete(room="#lobby", target=43, id="d-0001")),
        ("react", f.React(room="#lobby", target=41, emoji="\U0001f44d", id="x-0001")),
        ("react/emoji-zwj", f.React(room="dm:alice:bob", target=2,
                                    emoji="\U0001f468\u200d\U0001f469\u200d\U0001f467",
                                    id="x-0002")),
        ("react/emoji-at-max", f.React(room="#lobby", target=1, emoji=":)" * 8, id="x-0003")),
        ("unreact", f.Unreact(room="#lobby", target=41, emoji="\U0001f44d", id="x-0004")),
        ("moderators/minimal", f.SetModerators(room="#lobby")),
        ("moderators/add", f.SetModerators(room="#games", add="Bob", id="r-6")),
        ("moderators/remove", f.SetModerators(room="#games", remove="bob")),
        # Search (an extension): words, newest first; before is an answer's next.
        ("search/full", f.Search(text="lunch friday", room="#lobby", before="1042", limit=50,
                                 id="r-6")),
        ("search/minimal", f.Search(text="lunch")),
        ("search/text-at-max", f.Search(text="w" * 199 + EMOJI)),
        ("search/limit-1", f.Search(text="lunch", limit=1)),
    ]


def server_samples() -> list[tuple[str, f.ServerFrame]]:
    """Valid server frames: every type with all optional keys, minimal, and boundaries."""
    stored = f.StoredMsg(room="#lobby", seq=41, sender="bob", text="hello", ts=1767225600000,
                         kind="text", id="b-77")
    nudge = f.StoredMsg(room="dm:alice:bob", seq=3, sender="bob", text="", ts=1767225600500,
                        kind="nudge")
    # What a blocker receives in place of a message from the user they blocked.
    hidden = f.StoredMsg(room="dm:alice:bob", seq=4, sender="bob", text="",
                         ts=1767225600700, kind="text", hidden=True)
    return [
        ("welcome/full", f.Welcome(
            v=1, session="s-4f1c", name="alice", token="3q2-7Yh_tok", display="Alice",
            status="online", psm="", server="cfm/0.1.0",
            # The keys cfm's server sends (docs/protocol.md "Values"); per_s is a float.
            limits={"max_text": 4096, "max_frame": 65536, "replay": 500, "history": 200,
                    "rates": {"nudge": {"per_s": 0.5, "burst": 3}},
                    "nudge_interval_ms": 5000},
            rooms=(f.RoomState(room="#lobby", seq=42, read=40, epoch="01HZX3K9"),
                   f.RoomState(room="dm:alice:bob", seq=3, read=3, epoch="01HZX4AA")),
            contacts=(_roster("bob", "away"), _roster("carol", "offline", blocked=True),
                      _roster("eliza", bot=True, blocked=False)))),
        ("welcome/minimal", f.Welcome(
            v=1, session="s", name="alice", token="t", display="", status="invisible",
            psm="", server="x", limits={}, rooms=(), contacts=())),
        ("presence", f.Presence(name="bob", display="Bob \u2615", status="busy",
                                psm="in a meeting", bot=False)),
        ("presence/offline", f.Presence(name="bob", display="Bob", status="offline", psm="",
                                        bot=False)),
        ("joined/full", f.Joined(room="#lobby", seq=42, epoch="01HZX3K9",
                                 members=(_roster("alice"), _roster("eliza", bot=True)),
                                 more=True, reset=True)),
        ("joined/minimal", f.Joined(room="#lobby", seq=0, epoch="e", members=())),
        ("joined/full-count", f.Joined(room="#big", seq=7, epoch="e",
                                       members=(_roster("alice"),), more=False, reset=True,
                                       count=5000)),
        ("joined/count", f.Joined(room="#big", seq=7, epoch="e", members=(_roster("alice"),),
                                  count=5000)),
        ("members/full", f.MembersPage(room="#big", members=(_roster("bob"), _roster("carol")),
                                       more=True)),
        ("members/empty", f.MembersPage(room="#big", members=(), more=False)),
        ("left", f.Left(room="#lobby")),
        ("member/join", f.Member(room="#lobby", name="carol", op="join")),
        ("member/leave", f.Member(room="#lobby", name="carol", op="leave")),
        ("msg/full", f.Msg.from_stored(stored)),
        ("msg/nudge-without-id", f.Msg.from_stored(nudge)),
        ("msg/hidden", f.Msg.from_stored(hidden)),
        ("msg/seq-and-ts-at-max", f.Msg(room="#lobby", seq=MAX_INT, sender="bob", text="x",
                                        ts=MAX_INT, kind="text", id="z")),
        ("ack/full", f.Ack(room="#lobby", seq=43, ts=1767225601000, id="m-0001")),
        ("ack/nudge-without-id", f.Ack(room="dm:alice:bob", seq=4, ts=1767225601000)),
        ("typing", f.Typing(room="#lobby", sender="bob")),
        ("read", f.Read(room="dm:alice:bob", name="bob", seq=3)),
        ("history/full", f.History(room="#lobby", msgs=(stored, f.StoredMsg(
            room="#lobby", seq=42, sender="carol", text="hi\nthere", ts=1767225600900,
            kind="text", id="c-1")), more=True)),
        ("history/empty", f.History(room="#lobby", msgs=(), more=False)),
        ("history/hidden", f.History(room="dm:alice:bob", msgs=(nudge, hidden), more=False)),
        ("contact/full", f.Contact(op="add", name="bob", display="Bob", status="away",
                                   psm="", bot=False, blocked=False)),
        ("contact/added-you", f.Contact(op="added_you", name="carol", display="Carol",
                                        status="online", psm="hi!", bot=False)),
        ("contact/minimal", f.Contact(op="remove", name="bob")),
        # Request ids: the answer to a request that carried one.
        ("joined/full-ref", f.Joined(room="#big", seq=7, epoch="e", members=(_roster("alice"),),
                                     more=False, reset=True, count=5000, ref="r-1")),
        ("left/ref", f.Left(room="#lobby", ref="r-2")),
        ("history/ref", f.History(room="#lobby", msgs=(), more=False, ref="r-3")),
        ("members/ref", f.MembersPage(room="#big", members=(), more=False, ref="r-4")),
        ("contact/ref", f.Contact(op="add", name="bob", display="Bob", status="online",
                                  psm="", bot=False, blocked=False, ref="r-5")),
        ("search/full", f.SearchResults(msgs=(stored, f.StoredMsg(
            room="dm:alice:bob", seq=3, sender="bob", text="lunch?", ts=1767225600800,
            kind="text", id="b-3")), more=True, next="1042", ref="r-6", behind=12)),
        ("search/empty", f.SearchResults(msgs=(), more=False)),
        ("error/full", f.Error(code="rate_limited", msg="slow down", ref="m-0009",
                               retry_ms=1500)),
        ("error/minimal", f.Error(code="hello_required", msg="send hello first")),
        ("error/unknown-code", f.Error(code="some_future_code", msg="a newer server")),
        # Message changes (an additive extension). A reply that mentions someone:
        ("msg/reply-mentions", f.Msg(room="#lobby", seq=44, sender="carol",
                                     text="@bob @alice agreed", ts=1767225602000,
                                     kind="text", id="c-2", reply=41,
                                     mentions=("bob", "alice"))),
        # Change entries: an edit carries the new text, a reaction its emoji (as the text
        # too, for clients that do not know reactions); a delete and an unreact no text.
        ("msg/edit", f.Msg(room="#lobby", seq=45, sender="bob", text="hello, fixed",
                           ts=1767225603000, kind="text", id="e-1", change="edit",
                           target=41)),
        ("msg/delete", f.Msg(room="#lobby", seq=46, sender="alice", text="",
                             ts=1767225604000, kind="text", id="d-1", change="delete",
                             target=44)),
        ("msg/react", f.Msg(room="#lobby", seq=47, sender="carol", text="\U0001f44d",
                            ts=1767225605000, kind="text", id="x-1", change="react",
                            target=41, emoji="\U0001f44d")),
        ("msg/unreact", f.Msg(room="#lobby", seq=48, sender="carol", text="",
                              ts=1767225606000, kind="text", id="x-2", change="unreact",
                              target=41, emoji="\U0001f44d")),
        # A message as a replay or history page shows it once changed: edited, with its
        # reactions; and a tombstone.
        ("msg/edited-with-reactions", f.Msg(
            room="#lobby", seq=41, sender="bob", text="hello, fixed", ts=1767225600000,
            kind="text", id="b-77", edited=1767225603000,
            reactions=(f.Reaction("\U0001f44d", ("carol", "alice")),
                       f.Reaction("\U0001f602", ("dave",))))),
        ("msg/tombstone", f.Msg(room="#lobby", seq=44, sender="carol", text="",
                                ts=1767225602000, kind="text", id="c-2", reply=41,
                                deleted=True)),
        ("history/changed", f.History(room="#lobby", msgs=(
            f.StoredMsg(room="#lobby", seq=41, sender="bob", text="hello, fixed",
                        ts=1767225600000, kind="text", id="b-77", edited=1767225603000,
                        reactions=(f.Reaction("\U0001f44d", ("carol",)),)),
            f.StoredMsg(room="#lobby", seq=42, sender="bob", text="hello, fixed",
                        ts=1767225603000, kind="text", id="e-1", change="edit", target=41),
            f.StoredMsg(room="#lobby", seq=43, sender="carol", text="", ts=1767225602000,
                        kind="text", id="c-2", deleted=True)), more=False)),
        ("welcome/unread-mentions", f.Welcome(
            v=1, session="s", name="alice", token="t", display="", status="online",
            psm="", server="x", limits={},
            rooms=(f.RoomState(room="#lobby", seq=48, read=40, epoch="01HZX3K9", unread=5,
                               mentions=1),
                   f.RoomState(room="dm:alice:bob", seq=3, read=3, epoch="01HZX4AA")),
            contacts=())),
        ("moderators/full", f.Moderators(room="#games", names=("alice", "bob"),
                                         creator="alice", ref="r-6")),
        ("moderators/minimal", f.Moderators(room="#lobby", names=())),
    ]


def valid_cases() -> list[Case]:
    out: list[Case] = []
    for direction, samples in (("client", client_samples()), ("server", server_samples())):
        for name, frame in samples:
            out.append({
                "name": f"{direction}/{name}",
                "direction": direction,
                "hex": codec.encode(frame).hex(),
                "expect": "valid",
                "map": codec.to_map(frame),
            })
    return out


# --- invalid input -------------------------------------------------------------------


def packed(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


# A fixstr that is swapped for raw bytes after packing, for values msgpack-python will
# not pack (negative extension codes, invalid UTF-8, non-string keys of any kind).
_HOLE = "\x00hole\x00"


def with_raw(obj: Any, raw: bytes) -> bytes:
    data = packed(obj)
    assert data.count(packed(_HOLE)) == 1
    return data.replace(packed(_HOLE), raw)


HELLO = {"t": "hello", "v": 1, "name": "alice"}
SAY = {"t": "say", "text": "hi", "id": "m1", "room": "#lobby"}
PRESENCE_OUT = {"t": "presence", "name": "bob", "display": "Bob", "status": "online",
                "psm": "", "bot": False}
MSG = {"t": "msg", "room": "#lobby", "seq": 1, "from": "bob", "text": "hi", "ts": 5,
       "kind": "text", "id": "b1"}


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _client_invalid() -> list[tuple[str, bytes | dict[str, Any], str, str | None]]:
    """(name, bytes or map, expected code, expected error.ref) for client frames."""
    bad_names = {
        "too-short": "a", "too-long": "a" * 25, "empty": "", "leading-underscore": "_alice",
        "leading-dot": ".alice", "leading-dash": "-alice", "space": "al ice",
        "trailing-newline": "alice\n", "colon": "ali:ce", "hash": "#alice", "at": "alice@home",
        "cyrillic-a": "\u0430lice", "fullwidth": "\uff41lice", "accented": "al\u00efce",
        "zero-width-space": "ali\u200bce", "zero-width-joiner": "ali\u200dce",
        "bidi-override": "\u202ealice", "bidi-isolate": "alice\u2066", "emoji": "al" + EMOJI,
    }
    bad_rooms = {
        "no-hash": "lobby", "hash-only": "#", "upper-case": "#Lobby", "33-chars": "#" + "r" * 33,
        "space": "#a b", "dot": "#a.b", "dm-unsorted": "dm:bob:alice",
        "dm-upper-case": "dm:Alice:bob", "dm-same-user": "dm:alice:alice", "dm-one-name":
        "dm:alice", "dm-three-names": "dm:a1:b2:c3", "dm-bad-handle": "dm:_a:bob",
        "empty": "",
    }
    cases: list[tuple[str, bytes | dict[str, Any], str, str | None]] = [
        # The payload is not a map.
        ("payload/list", packed(["t", "hello"]), "bad_frame", None),
        ("payload/int", packed(1), "bad_frame", None),
        ("payload/str", packed("hello"), "bad_frame", None),
        ("payload/nil", packed(None), "bad_frame", None),
        ("payload/bin", packed(b"\x81\xa1t\xa5hello"), "bad_frame", None),
        ("payload/empty", b"", "bad_frame", None),
        ("bytes/never-used-byte", b"\xc1", "bad_frame", None),
        ("bytes/garbage", b"\xff\x00\xfe\x01garbage", "bad_frame", None),
        ("bytes/json-text", b'{"t":"hello","v":1,"name":"alice"}', "bad_frame", None),
        ("bytes/truncated", packed(HELLO)[:-3], "bad_frame", None),
        ("bytes/trailing", packed(HELLO) + b"\xc0", "bad_frame", None),
        ("bytes/two-maps", packed(HELLO) + packed(HELLO), "bad_frame", None),
        ("utf8/invalid-in-value", with_raw({**HELLO, "name": _HOLE}, b"\xa5al\xffce"),
         "bad_frame", None),
        ("utf8/invalid-in-key", with_raw({"t": "hello", "v": 1, _HOLE: "alice"},
                                         b"\xa4n\xc3\x28e"), "bad_frame", None),
        ("utf8/surrogate", with_raw({**HELLO, "name": _HOLE}, b"\xa5a\xed\xa0\x80e"),
         "bad_frame", None),
        ("utf8/overlong", with_raw({**HELLO, "name": _HOLE}, b"\xa5al\xc0\xafe"),
         "bad_frame", None),
        # Headers that announce far more than the message holds: refuse, don't allocate.
        ("huge/str32", b"\xdb\xff\xff\xff\xff" + b"a" * 16, "bad_frame", None),
        ("huge/bin32", b"\xc6\xff\xff\xff\xff" + b"a" * 16, "bad_frame", None),
        ("huge/array32", b"\xdd\xff\xff\xff\xff" + b"\xc0" * 16, "bad_frame", None),
        ("huge/map32", b"\xdf\xff\xff\xff\xff" + b"\xc0" * 16, "bad_frame", None),
        ("huge/str32-as-value", with_raw({**HELLO, "x": _HOLE}, b"\xdb\x7f\xff\xff\xff"),
         "bad_frame", None),
        ("huge/array32-as-value", with_raw({**HELLO, "x": _HOLE}, b"\xdd\x7f\xff\xff\xff"),
         "bad_frame", None),
        ("huge/map16-as-value", with_raw({**HELLO, "x": _HOLE}, b"\xde\xff\xff"),
         "bad_frame", None),
        # Nesting: the frame map is level 1; level 9 is refused.
        ("nesting/9-levels", packed({**HELLO, "x": _nested(8)}), "bad_frame", None),
        ("nesting/10000-levels", with_raw({**HELLO, "x": _HOLE}, b"\x91" * 10000 + b"\x01"),
         "bad_frame", None),
        # Extension types, msgpack timestamps included, anywhere.
        ("ext/fixext1", with_raw({**HELLO, "x": _HOLE}, b"\xd4\x05\x00"), "bad_frame", None),
        ("ext/negative-code", with_raw({**HELLO, "x": _HOLE}, b"\xd6\xf9abcd"),
         "bad_frame", None),
        ("ext/timestamp32", with_raw({**HELLO, "x": _HOLE}, b"\xd6\xff\x65\x53\xf1\x00"),
         "bad_frame", None),
        ("ext/timestamp-as-known-key", with_raw({**SAY, "text": _HOLE},
                                                b"\xd6\xff\x65\x53\xf1\x00"),
         "bad_frame", None),
        ("ext/in-a-list", with_raw({**HELLO, "x": [1, _HOLE]}, b"\xd5\x01\x00\x00"),
         "bad_frame", None),
        ("ext/whole-message", b"\xd6\xff\x65\x53\xf1\x00", "bad_frame", None),
        # Map keys that are not strings, at the top and nested.
        ("keys/int", with_raw({**HELLO, _HOLE: 1}, b"\x07"), "bad_frame", None),
        ("keys/nil", with_raw({**HELLO, _HOLE: 1}, b"\xc0"), "bad_frame", None),
        ("keys/bin", with_raw({**HELLO, _HOLE: 1}, b"\xc4\x01x"), "bad_frame", None),
        ("keys/bin-t", with_raw({_HOLE: "hello", "v": 1, "name": "alice"}, b"\xc4\x01t"),
         "bad_frame", None),
        ("keys/nested-int", with_raw({**HELLO, "x": {_HOLE: 1}}, b"\x07"), "bad_frame", None),
        ("keys/nested-bin", with_raw({**HELLO, "x": {_HOLE: 1}}, b"\xc4\x01k"),
         "bad_frame", None),
        ("keys/nested-nil-in-list", with_raw({**HELLO, "x": [{_HOLE: 1}]}, b"\xc0"),
         "bad_frame", None),
        # The frame type.
        ("t/missing", {"v": 1, "name": "alice"}, "bad_frame", None),
        ("t/nil", {"t": None, "v": 1, "name": "alice"}, "bad_frame", None),
        ("t/int", {"t": 1, "v": 1, "name": "alice"}, "bad_frame", None),
        ("t/bin", {"t": b"hello", "v": 1, "name": "alice"}, "bad_frame", None),
        ("t/unknown", {"t": "wink", "id": "m1", "text": "x"}, "unknown_type", "wink"),
        ("t/server-only", {"t": "welcome"}, "unknown_type", "welcome"),
        ("t/case-matters", {**HELLO, "t": "Hello"}, "unknown_type", "Hello"),
        # hello's version comes before every other check.
        ("hello/version-2", {"t": "hello", "v": 2}, "unsupported_version", "hello"),
        ("hello/version-0", {**HELLO, "v": 0}, "unsupported_version", "hello"),
        ("hello/version-2-bad-name", {**HELLO, "v": 2, "name": "_x", "status": "zzz"},
         "unsupported_version", "hello"),
        ("hello/version-str", {**HELLO, "v": "1"}, "bad_frame", "hello"),
        ("hello/version-bool", {**HELLO, "v": True}, "bad_frame", "hello"),
        ("hello/version-missing", {"t": "hello", "name": "alice"}, "bad_frame", "hello"),
        # Keys of the wrong msgpack type.
        ("type/str-where-int", {"t": "read", "room": "#lobby", "seq": "42"}, "bad_frame",
         "read"),
        ("type/int-where-str", {**HELLO, "name": 42}, "bad_frame", "hello"),
        ("type/bool-where-int", {"t": "read", "room": "#lobby", "seq": True}, "bad_frame",
         "read"),
        ("type/list-where-str", {**SAY, "text": ["hi"]}, "bad_frame", "m1"),
        ("type/float-where-int", {"t": "history", "room": "#lobby", "limit": 5.0},
         "bad_frame", "history"),
        ("type/int-where-bool", {**HELLO, "bot": 1}, "bad_frame", "hello"),
        ("type/bin-where-str", {**SAY, "text": b"hi"}, "bad_frame", "m1"),
        ("type/map-where-str", {**SAY, "room": {"room": "#lobby"}}, "bad_frame", "m1"),
        # Required keys; msgpack nil counts as absent.
        ("missing/hello-name", {"t": "hello", "v": 1}, "bad_frame", "hello"),
        ("missing/say-id", {"t": "say", "text": "hi", "room": "#lobby"}, "bad_frame", "say"),
        ("missing/say-text", {"t": "say", "id": "m1", "room": "#lobby"}, "bad_frame", "m1"),
        ("missing/say-text-nil", {**SAY, "text": None}, "bad_frame", "m1"),
        ("missing/read-seq", {"t": "read", "room": "#lobby"}, "bad_frame", "read"),
        ("missing/join-room", {"t": "join", "since": 3}, "bad_frame", "join"),
        ("missing/contact-op", {"t": "contact", "name": "bob"}, "bad_frame", "contact"),
        # Lengths count code points; a 4-byte emoji is one.
        ("too_long/text", {**SAY, "text": "a" * DEFAULT_MAX_TEXT + EMOJI}, "too_long", "m1"),
        ("too_long/display", {**HELLO, "display": "a" * 64 + EMOJI}, "too_long", "hello"),
        ("too_long/psm", {"t": "presence", "psm": "p" * 128 + EMOJI}, "too_long", "presence"),
        # Control characters.
        ("control/text-nul", {**SAY, "text": "a\x00b"}, "bad_frame", "m1"),
        ("control/text-esc", {**SAY, "text": "\x1b[2Jboo"}, "bad_frame", "m1"),
        ("control/text-del", {**SAY, "text": "a\x7f"}, "bad_frame", "m1"),
        ("control/text-c1-nel", {**SAY, "text": "a\x85b"}, "bad_frame", "m1"),
        ("control/text-c1-csi", {**SAY, "text": "a\x9b2J"}, "bad_frame", "m1"),
        ("control/text-bidi-override", {**SAY, "text": "a\u202eb"}, "bad_frame", "m1"),
        ("control/display-newline", {**HELLO, "display": "Al\nice"}, "bad_frame", "hello"),
        ("control/display-tab", {**HELLO, "display": "Al\tice"}, "bad_frame", "hello"),
        ("control/display-bidi-override", {**HELLO, "display": "\u202eecilA"}, "bad_frame",
         "hello"),
        ("control/psm-bidi-isolate", {"t": "presence", "psm": "a\u2067b\u2069"}, "bad_frame",
         "presence"),
        ("control/psm-bidi-embedding", {"t": "presence", "psm": "\u202bx"}, "bad_frame",
         "presence"),
        # Invisible characters in a client's own display name or psm (look-alike names).
        ("invisible/display-zero-width-space", {**HELLO, "display": "Alice\u200b"},
         "bad_frame", "hello"),
        ("invisible/display-hangul-filler", {"t": "presence", "display": "Al\u3164ice"},
         "bad_frame", "presence"),
        ("invisible/display-braille-blank", {**HELLO, "display": "\u2800"}, "bad_frame",
         "hello"),
        ("invisible/display-tag", {**HELLO, "display": "Alice\U000e0041"}, "bad_frame",
         "hello"),
        ("invisible/display-joiner-in-latin", {**HELLO, "display": "Ali\u200dce"},
         "bad_frame", "hello"),
        ("invisible/display-blank", {**HELLO, "display": "   "}, "bad_frame", "hello"),
        ("invisible/psm-line-separator", {"t": "presence", "psm": "a\u2028b"}, "bad_frame",
         "presence"),
        ("invisible/psm-word-joiner", {"t": "presence", "psm": "a\u2060b"}, "bad_frame",
         "presence"),
        # Statuses.
        ("status/unknown", {"t": "presence", "status": "sleeping"}, "bad_frame", "presence"),
        ("status/offline-from-a-client", {**HELLO, "status": "offline"}, "bad_frame",
         "hello"),
        ("status/upper-case", {"t": "presence", "status": "Online"}, "bad_frame", "presence"),
        # id, epoch, client: 1-64 characters.
        ("id/empty", {**SAY, "id": ""}, "bad_frame", "say"),
        ("id/65-chars", {**SAY, "id": "i" * 65}, "bad_frame", "say"),
        ("id/65-emoji", {**SAY, "id": "\U0001f600" * 65}, "bad_frame", "say"),
        ("id/control-char", {**SAY, "id": "m\x1b1"}, "bad_frame", "say"),
        ("id/bidi-override", {**SAY, "id": "m\u202e1"}, "bad_frame", "say"),
        ("id/nudge-empty", {"t": "nudge", "to": "bob", "id": ""}, "bad_frame", "nudge"),
        ("epoch/empty", {"t": "join", "room": "#lobby", "epoch": ""}, "bad_frame", "join"),
        ("epoch/65-chars", {"t": "join", "room": "#lobby", "epoch": "e" * 65}, "bad_frame",
         "join"),
        ("client/65-chars", {**HELLO, "client": "c" * 65}, "bad_frame", "hello"),
        ("token/empty", {**HELLO, "token": ""}, "bad_frame", "hello"),
        ("token/257-chars", {**HELLO, "token": "k" * 257}, "bad_frame", "hello"),
        # Integers: 0 to 2**63-1.
        ("int/negative-seq", {"t": "read", "room": "#lobby", "seq": -1}, "bad_frame", "read"),
        ("int/seq-2-to-63", {"t": "read", "room": "#lobby", "seq": 2**63}, "bad_frame",
         "read"),
        ("int/since-uint64-max", {"t": "join", "room": "#lobby", "since": 2**64 - 1},
         "bad_frame", "join"),
        ("int/negative-before", {"t": "history", "room": "#lobby", "before": -5},
         "bad_frame", "history"),
        # history.
        ("history/limit-0", {"t": "history", "room": "#lobby", "limit": 0}, "bad_frame",
         "history"),
        ("history/limit-201", {"t": "history", "room": "#lobby", "limit": 201}, "bad_frame",
         "history"),
        ("history/before-and-after", {"t": "history", "room": "#lobby", "before": 9,
                                      "after": 2}, "bad_frame", "history"),
        # search.
        ("search/text-empty", {"t": "search", "text": ""}, "bad_frame", "search"),
        ("search/text-201", {"t": "search", "text": "w" * 201}, "bad_frame", "search"),
        ("search/text-missing", {"t": "search", "room": "#lobby"}, "bad_frame", "search"),
        ("search/limit-0", {"t": "search", "text": "a", "limit": 0}, "bad_frame", "search"),
        ("search/limit-51", {"t": "search", "text": "a", "limit": 51}, "bad_frame", "search"),
        ("search/before-int", {"t": "search", "text": "a", "before": 5}, "bad_frame",
         "search"),
        ("search/before-129", {"t": "search", "text": "a", "before": "1" * 129}, "bad_frame",
         "search"),
        # say and typing take exactly one of room and to.
        ("target/say-both", {**SAY, "to": "bob"}, "bad_frame", "m1"),
        ("target/say-neither", {"t": "say", "text": "hi", "id": "m1"}, "bad_frame", "m1"),
        ("target/say-both-nil", {"t": "say", "text": "hi", "id": "m1", "room": None,
                                 "to": None}, "bad_frame", "m1"),
        ("target/typing-both", {"t": "typing", "room": "#lobby", "to": "bob"}, "bad_frame",
         "typing"),
        ("target/typing-neither", {"t": "typing"}, "bad_frame", "typing"),
        # Other enumerations and room kinds.
        ("leave/dm-room", {"t": "leave", "room": "dm:alice:bob"}, "bad_frame", "leave"),
        ("contact/op-added-you", {"t": "contact", "op": "added_you", "name": "bob"},
         "bad_frame", "contact"),
        ("contact/op-unknown", {"t": "contact", "op": "poke", "name": "bob"}, "bad_frame",
         "contact"),
        # Big rooms.
        ("hello/quiet-not-a-bool", {**HELLO, "quiet": 1}, "bad_frame", "hello"),
        ("join/members-limit-negative", {"t": "join", "room": "#lobby", "members_limit": -1},
         "bad_frame", "join"),
        ("join/members-limit-1001", {"t": "join", "room": "#lobby", "members_limit": 1001},
         "bad_frame", "join"),
        ("members/limit-0", {"t": "members", "room": "#lobby", "limit": 0}, "bad_frame",
         "members"),
        ("members/limit-501", {"t": "members", "room": "#lobby", "limit": 501}, "bad_frame",
         "members"),
        ("members/after-invalid", {"t": "members", "room": "#lobby", "after": "_bob"},
         "name_invalid", "members"),
        ("members/no-room", {"t": "members"}, "bad_frame", "members"),
        # Request ids: bounded as a say's id; a refused id is no ref (the t is).
        ("request-id/too-long", {"t": "history", "room": "#lobby", "id": "i" * 65},
         "bad_frame", "history"),
        ("request-id/not-a-string", {"t": "join", "room": "#lobby", "id": 7}, "bad_frame",
         "join"),
        # The ref rule: the frame's id when it is a valid one, else its t.
        ("ref/id-too-long-falls-back-to-t", {**SAY, "id": "i" * 65, "room": "lobby"},
         "bad_frame", "say"),
        ("ref/id-not-a-string", {**SAY, "id": 5}, "bad_frame", "say"),
        ("ref/id-of-a-frame-without-id", {"t": "read", "id": "r1", "room": "#lobby"},
         "bad_frame", "r1"),
        # Message changes: a target or a reply is a seq from 1; an emoji is 1-16
        # characters without white space or control characters; an edit's text is a
        # say's text; moderators of group rooms only, one change at a time.
        ("target/zero", {"t": "edit", "room": "#lobby", "target": 0, "text": "x", "id": "e1"},
         "bad_frame", "e1"),
        ("target/missing", {"t": "delete", "room": "#lobby", "id": "d1"}, "bad_frame", "d1"),
        ("target/reply-zero", {**SAY, "reply": 0}, "bad_frame", "m1"),
        ("edit/text-too-long", {"t": "edit", "room": "#lobby", "target": 1,
                                "text": "a" * (DEFAULT_MAX_TEXT + 1), "id": "e1"},
         "too_long", "e1"),
        ("edit/text-control", {"t": "edit", "room": "#lobby", "target": 1, "text": "a\x1b",
                               "id": "e1"}, "bad_frame", "e1"),
        ("edit/no-id", {"t": "edit", "room": "#lobby", "target": 1, "text": "x"},
         "bad_frame", "edit"),
        ("hello/claim-too-short", {**HELLO, "claim": "c" * 42}, "bad_frame", "hello"),
        ("hello/claim-too-long", {**HELLO, "claim": "c" * 257}, "bad_frame", "hello"),
        ("hello/claim-control", {**HELLO, "claim": "c" * 42 + "\n"}, "bad_frame", "hello"),
        ("react/emoji-empty", {"t": "react", "room": "#lobby", "target": 1, "emoji": "",
                               "id": "x1"}, "bad_frame", "x1"),
        ("react/emoji-space", {"t": "react", "room": "#lobby", "target": 1, "emoji": "+ 1",
                               "id": "x1"}, "bad_frame", "x1"),
        ("react/emoji-too-long", {"t": "react", "room": "#lobby", "target": 1,
                                  "emoji": "x" * 17, "id": "x1"}, "bad_frame", "x1"),
        ("unreact/emoji-control", {"t": "unreact", "room": "#lobby", "target": 1,
                                   "emoji": "\u202e", "id": "x1"}, "bad_frame", "x1"),
        ("moderators/dm-room", {"t": "moderators", "room": "dm:alice:bob"}, "bad_frame",
         "moderators"),
        ("moderators/add-and-remove", {"t": "moderators", "room": "#games", "add": "bob",
                                       "remove": "carol"}, "bad_frame", "moderators"),
        ("moderators/add-invalid", {"t": "moderators", "room": "#games", "add": "_bob"},
         "name_invalid", "moderators"),
    ]
    for label, name in bad_names.items():
        cases.append((f"name/{label}", {**HELLO, "name": name}, "name_invalid", "hello"))
    cases.append(("name/say-to", {"t": "say", "text": "hi", "id": "m1", "to": "_bob"},
                  "name_invalid", "m1"))
    cases.append(("name/contact", {"t": "contact", "op": "add", "name": "b"},
                  "name_invalid", "contact"))
    for label, room in bad_rooms.items():
        cases.append((f"room/{label}", {"t": "join", "room": room}, "bad_frame", "join"))
    return cases


def _server_invalid() -> list[tuple[str, bytes | dict[str, Any], str, str | None]]:
    """(name, bytes or map, expected code, expected error.ref) for server frames."""
    return [
        ("payload/list", packed([1, 2, 3]), "bad_frame", None),
        ("payload/nil", packed(None), "bad_frame", None),
        ("bytes/garbage", b"\xc1\xc1", "bad_frame", None),
        ("bytes/truncated", packed(MSG)[:-1], "bad_frame", None),
        ("bytes/trailing", packed(MSG) + b"\x00", "bad_frame", None),
        ("huge/array32", b"\xdd\xff\xff\xff\xff\x00", "bad_frame", None),
        ("ext/timestamp-as-ts", with_raw({**MSG, "ts": _HOLE}, b"\xd6\xff\x65\x53\xf1\x00"),
         "bad_frame", None),
        ("keys/bin-in-a-value-map", with_raw({**PRESENCE_OUT, "x": {_HOLE: 1}}, b"\xc4\x01k"),
         "bad_frame", None),
        ("t/missing", {k: v for k, v in MSG.items() if k != "t"}, "bad_frame", None),
        ("t/unknown", {"t": "sparkle", "room": "#lobby"}, "unknown_type", "sparkle"),
        ("t/client-only", {"t": "say", "text": "hi", "id": "m1", "room": "#lobby"},
         "unknown_type", "say"),
        ("missing/msg-seq", {k: v for k, v in MSG.items() if k != "seq"}, "bad_frame", "b1"),
        ("missing/history-more", {"t": "history", "room": "#lobby", "msgs": []},
         "bad_frame", "history"),
        ("type/str-where-int", {**MSG, "seq": "1"}, "bad_frame", "b1"),
        ("type/bool-where-int", {**MSG, "ts": False}, "bad_frame", "b1"),
        ("type/int-where-bool", {**PRESENCE_OUT, "bot": 0}, "bad_frame", "presence"),
        ("type/map-where-list", {"t": "history", "room": "#lobby", "msgs": {}, "more": False},
         "bad_frame", "history"),
        ("type/list-item-not-a-map", {"t": "history", "room": "#lobby", "msgs": [1],
                                      "more": False}, "bad_frame", "history"),
        ("type/list-item-missing-key", {"t": "joined", "room": "#lobby", "seq": 1,
                                        "epoch": "e", "members": [{"name": "bob"}]},
         "bad_frame", "joined"),
        ("name/msg-from", {**MSG, "from": "_bob"}, "name_invalid", "b1"),
        ("room/msg-room", {**MSG, "room": "lobby"}, "bad_frame", "b1"),
        ("status/unknown", {**PRESENCE_OUT, "status": "sleeping"}, "bad_frame", "presence"),
        ("too_long/display", {**PRESENCE_OUT, "display": "d" * 65}, "too_long", "presence"),
        ("control/psm", {**PRESENCE_OUT, "psm": "a\x1bb"}, "bad_frame", "presence"),
        ("kind/unknown", {**MSG, "kind": "wink"}, "bad_frame", "b1"),
        ("type/msg-hidden-int", {**MSG, "text": "", "hidden": 1}, "bad_frame", "b1"),
        ("member/op-unknown", {"t": "member", "room": "#lobby", "name": "bob", "op": "kick"},
         "bad_frame", "member"),
        ("int/negative-seq", {**MSG, "seq": -1}, "bad_frame", "b1"),
        ("missing/members-more", {"t": "members", "room": "#big", "members": []},
         "bad_frame", "members"),
        ("int/negative-joined-count", {"t": "joined", "room": "#big", "seq": 1, "epoch": "e",
                                       "members": [], "count": -1}, "bad_frame", "joined"),
        # Message changes.
        ("change/unknown", {**MSG, "change": "pin", "target": 1}, "bad_frame", "b1"),
        ("target/msg-zero", {**MSG, "change": "edit", "target": 0}, "bad_frame", "b1"),
        ("name/msg-mentions", {**MSG, "mentions": ["bob", "_x"]}, "name_invalid", "b1"),
        ("type/msg-mentions-not-strings", {**MSG, "mentions": [1]}, "bad_frame", "b1"),
        ("type/msg-deleted-int", {**MSG, "deleted": 1}, "bad_frame", "b1"),
        ("type/reaction-missing-names", {**MSG, "reactions": [{"emoji": "x"}]}, "bad_frame",
         "b1"),
        ("int/negative-unread", {"t": "welcome", "v": 1, "session": "s", "name": "alice",
                                 "token": "t", "display": "", "status": "online", "psm": "",
                                 "server": "x", "limits": {}, "contacts": [],
                                 "rooms": [{"room": "#lobby", "seq": 1, "read": 0,
                                            "epoch": "e", "unread": -1}]},
         "bad_frame", "welcome"),
    ]


def invalid_cases() -> list[Case]:
    out: list[Case] = []
    for direction, cases in (("client", _client_invalid()), ("server", _server_invalid())):
        for name, data, code, ref in cases:
            raw = data if isinstance(data, bytes) else packed(data)
            out.append({
                "name": f"{direction}/{name}",
                "direction": direction,
                "hex": raw.hex(),
                "expect": code,
                "ref": ref,
            })
    return out


# --- output --------------------------------------------------------------------------


def build() -> list[Case]:
    cases = valid_cases() + invalid_cases()
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


def render(cases: list[Case]) -> str:
    """One case per line (diffs stay readable), ASCII only (no raw bidi characters)."""
    lines = [json.dumps(case, ensure_ascii=True, separators=(", ", ": ")) for case in cases]
    return "[\n" + ",\n".join(lines) + "\n]\n"


def main(argv: list[str]) -> int:
    text = render(build())
    if argv[1:] == ["--check"]:
        current = VECTORS_PATH.read_text(encoding="utf-8") if VECTORS_PATH.exists() else ""
        if current != text:
            print(f"{VECTORS_PATH.name} is stale: run scripts/make_vectors.py", file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    VECTORS_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {len(text.splitlines()) - 2} cases to {VECTORS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
