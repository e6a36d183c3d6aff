"""A blocker's scrollback: placeholders of hidden messages take their seq, show nothing,
and paging older history goes on below them."""

from __future__ import annotations

from cfm_common.frames import StoredMsg
from cfm_tui.conversation import Conversation

ROOM = "dm:alice:bob"


def stored(seq: int, text: str = "", *, hidden: bool | None = None) -> StoredMsg:
    return StoredMsg(ROOM, seq, "bob", text, 1000 + seq, "text", None, hidden)


def test_placeholders_are_not_shown_and_paging_continues_below_them() -> None:
    conv = Conversation(ROOM, "alice")
    added = conv.add_history([stored(9, hidden=True), stored(10, "visible")], more=True)
    assert added == 1
    assert [m.text for m in conv.messages] == ["visible"]
    assert conv.oldest_seq == 9 and conv.latest_seq == 10 and conv.can_load_older
    # A page of placeholders only still moves the paging point down.
    conv.add_history([stored(7, hidden=True), stored(8, hidden=True)], more=True)
    assert conv.oldest_seq == 7 and [m.seq for m in conv.messages] == [10]
    conv.reset(None)
    assert conv.oldest_seq is None
