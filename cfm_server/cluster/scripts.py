"""The server-side scripts of cluster mode and the bytes they are given.

Each script is Lua in a ``.lua`` file beside this module, run with EVALSHA. On one
Redis the batcher loads the scripts a pipeline calls at its head on a connection that
has not loaded them (a new connection: after a restart Redis knows none); a server that
forgot one anyway (a ``SCRIPT FLUSH``) answers NOSCRIPT, and the batcher sends the
command again with the script loaded (NOSCRIPT means it did not run). A Redis Cluster's
batcher loads a script on every master at its first NOSCRIPT.

Encode once. The ``msg`` frame's bytes hold its ``seq``, which only the append script
knows. Rather than have every node re-encode a published message (once per node) or have
Redis run a msgpack encoder (Redis is the one part of the cluster that does not scale
out), the sending node encodes the frame once, in two pieces around the seq's value
(:func:`msg_parts`), and the script only concatenates ``head .. seq .. tail``, writing
the seq as msgpack-python would. The result is byte for byte what ``encode_msg`` makes
(a test proves it), it is what the stream keeps and what every node receives, and a node
sends it to its sessions as it is.

The publish carries an envelope ``b"<seq> <epoch> <origin> " + msg``: the seq and epoch
for the receiving node's gap tracking (without decoding the frame), the origin tag so
that the sender's own session is skipped, then the frame's bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import msgpack

_packer = msgpack.Packer(use_bin_type=True)


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str  # what EVALSHA names it by


# Every script by its sha: what the batcher loads ahead of a pipeline that calls it.
BY_SHA: dict[str, Script] = {}


def load(name: str) -> Script:
    source = resources.files(__package__).joinpath(f"{name}.lua").read_text("utf-8")
    script = Script(name, source, hashlib.sha1(source.encode()).hexdigest())
    BY_SHA[script.sha] = script
    return script


APPEND = load("append")
PRESENCE_SESSION = load("presence_session")
PRESENCE_BEAT = load("presence_beat")
PRESENCE_REJOIN = load("presence_rejoin")
LEASE_ACQUIRE = load("lease_acquire")
LEASE_RELEASE = load("lease_release")
STATE_CHANGE = load("state_change")
READ = load("read")
COMPACT = load("compact")
UNREAD = load("unread")
FORGET_REACTIONS = load("forget_reactions")  # cfm admin remove-user (cluster/admin.py)

# The extension keys a stored entry may carry (message changes, docs/protocol.md), in
# the canonical order of ``cfm_common.codec``; the current state of a changed message
# (``edited``, ``deleted``, ``reactions``) is not among them: the overlay holds it.
EXTRA_KEYS = ("reply", "mentions", "change", "target", "emoji")


def msg_parts(room: str, sender: str, text: str, ts: int, kind: str,
              client_id: str | None, extra: dict[str, Any] | None = None
              ) -> tuple[bytes, bytes]:
    """The ``msg`` frame's msgpack bytes before and after the value of ``seq``.

    Same keys in the same order as ``cfm_common.codec.encode_msg``; ``extra`` holds the
    extension keys of a reply, mentions or a change entry (``EXTRA_KEYS``).
    """
    pack = _packer.pack
    extras = [(k, extra[k]) for k in EXTRA_KEYS if extra.get(k) is not None] if extra else []
    head = b"".join((
        _packer.pack_map_header((7 if client_id is None else 8) + len(extras)),
        pack("t"), pack("msg"), pack("room"), pack(room), pack("seq"),
    ))
    pieces = [pack("from"), pack(sender), pack("text"), pack(text), pack("ts"), pack(ts),
              pack("kind"), pack(kind)]
    if client_id is not None:
        pieces += (pack("id"), pack(client_id))
    for key, value in extras:
        pieces += (pack(key), pack(list(value) if isinstance(value, tuple) else value))
    return head, b"".join(pieces)


def msg_bytes(head: bytes, seq: int, tail: bytes) -> bytes:
    """What the append script stores for ``seq``: the node computes the same locally."""
    return head + _packer.pack(seq) + tail


@dataclass(frozen=True, slots=True)
class Envelope:
    seq: int
    epoch: str
    origin: str
    msg: bytes  # the msg frame, ready to send


def envelope(seq: int, epoch: str, origin: str, msg: bytes) -> bytes:
    return b"%d %s %s " % (seq, epoch.encode(), origin.encode()) + msg


def parse_envelope(data: bytes) -> Envelope:
    """Raises ValueError on anything that is not an envelope."""
    seq, epoch, origin, msg = data.split(b" ", 3)
    return Envelope(int(seq), epoch.decode(), origin.decode(), msg)


# An origin tag ending with this marks a DM message hidden from its peer (private
# blocking): every node sends that peer the placeholder, and the stream's copy reads back
# as hidden (as the field ``h`` = ``1`` of a migrated message does).
HIDDEN_SUFFIX = "/h"


def check_token(value: str, what: str) -> str:
    """Epochs and origin tags travel space-separated: refuse one that would break that."""
    if not value or " " in value or len(value) > 128:
        raise ValueError(f"{what} must be 1-128 characters without spaces: {value!r}")
    return value
