"""Message changes (docs/protocol.md, "Message changes") applied to a held message.

A change entry is a ``msg`` with ``change`` (edit, delete, react, unreact) and
``target``. Applying the entries of a replay to messages that are already in their
current state gives the same state, so each function here is idempotent: an edit sets
the text it carries, a delete makes a tombstone, a react adds a name once, an unreact
removes it (and the emoji with its last name). A tombstone takes no further change.
"""

from __future__ import annotations

import dataclasses

from cfm_common import rules
from cfm_common.frames import Msg, Reaction


def mentions(msg: Msg) -> tuple[str, ...]:
    """Who ``msg`` mentions, as the server worked it out (nobody once deleted)."""
    return () if msg.deleted else tuple(msg.mentions or ())


def apply_change(msg: Msg, entry: Msg) -> Msg:
    """``msg`` as ``entry`` leaves it; ``msg`` itself when nothing changes."""
    if msg.deleted:
        return msg
    change = entry.change
    if change == rules.ChangeKind.EDIT:
        if msg.text == entry.text and msg.edited == entry.ts:
            return msg
        return dataclasses.replace(msg, text=entry.text, edited=entry.ts)
    if change == rules.ChangeKind.DELETE:
        return dataclasses.replace(msg, text="", deleted=True, reactions=None, mentions=None)
    if change in (rules.ChangeKind.REACT, rules.ChangeKind.UNREACT) and entry.emoji:
        reactions = _react(msg.reactions or (), entry.emoji, entry.sender,
                           add=change == rules.ChangeKind.REACT)
        if reactions == (msg.reactions or ()):
            return msg
        return dataclasses.replace(msg, reactions=reactions or None)
    return msg


def _react(reactions: tuple[Reaction, ...], emoji: str, who: str,
           *, add: bool) -> tuple[Reaction, ...]:
    """Reactions in the order of each emoji's first use, names in the order they came."""
    out: list[Reaction] = []
    found = False
    for r in reactions:
        if r.emoji != emoji:
            out.append(r)
            continue
        found = True
        names = tuple(r.names)
        if add and who not in names:
            names += (who,)
        elif not add:
            names = tuple(n for n in names if n != who)
        if names:
            out.append(Reaction(r.emoji, names))
    if add and not found:
        out.append(Reaction(emoji, (who,)))
    return tuple(out)


def reacted(msg: Msg, emoji: str, who: str) -> bool:
    """Whether ``who`` has put ``emoji`` on ``msg`` (so choosing it again takes it off)."""
    return any(r.emoji == emoji and who in r.names for r in msg.reactions or ())
