"""Every Redis key and channel name of cluster mode, in one place.

A room's keys share the hash tag ``{room}`` so that the append script, which touches all
of them, runs on one slot (a Redis Cluster requires it). Room names cannot contain
braces, so the tag is exactly the room name. Presence keys share the tag ``{presence}``
for the same reason: the reaper script walks them together.
"""

from __future__ import annotations

PREFIX = "cfm:"


def room_meta(room: str) -> str:
    """Hash ``seq`` (latest stored seq) and ``epoch``."""
    return f"{PREFIX}{{{room}}}:meta"


def room_log(room: str) -> str:
    """Stream of the room's messages; entry id ``<seq>-0``, fields ``m`` (the msg frame's
    bytes) and ``o`` (the origin tag of the session that sent it)."""
    return f"{PREFIX}{{{room}}}:log"


def room_ids(room: str) -> str:
    """Hash ``<sender>:<client id>`` → ``<seq>:<ts>``: idempotent retries."""
    return f"{PREFIX}{{{room}}}:ids"


def room_changes(room: str) -> str:
    """Hash of the current state of the room's changed messages (message changes, kept
    beside the stream, which cannot be rewritten; append.lua writes it, read.lua merges
    it): ``t:<seq>``/``e:<seq>`` edited text and time, ``r:<seq>`` reactions (a line
    ``<name> <emoji>`` each, in order), ``d:<seq>`` the text-free copy of a deleted
    message or of an edit entry of one (the stream entry is gone), with its ``o:``/``h:``
    fields, ``x:<seq>`` the seqs of a message's edit entries and ``k:<seq>`` an edit
    entry's text-free copy (for when its target is deleted)."""
    return f"{PREFIX}{{{room}}}:chg"


def room_scratch(room: str) -> str:
    """A stream being rewritten (compact.lua), renamed over ``room_log`` at its end."""
    return f"{PREFIX}{{{room}}}:log:new"


def room_channel(room: str) -> str:
    """Pub/sub channel of the room's live messages (named like a key, so it can become a
    sharded channel on the room's slot later)."""
    return f"{PREFIX}{{{room}}}:live"


def room_events(room: str) -> str:
    """Pub/sub channel of what happens in the room besides messages (``member``, a new
    member's ``presence``, ``typing``): ``<origin> <type> <user> <frame>``, at most once."""
    return f"{PREFIX}{{{room}}}:events"


def room_of_channel(channel: bytes | str) -> str:
    name = channel.decode() if isinstance(channel, bytes) else channel
    return name[len(PREFIX) + 1 : -len("}:live")]


# The shared records (users, contacts, memberships, read marks, invite uses) are logged
# like a room's messages: ``state`` is the name of that log. Room names start with ``#``
# or ``dm:``, so no room can take it. Its meta, log and live channel are the room keys
# of that name (one slot: ``{state}``); the records themselves are one hash beside them.
STATE = "state"


def state_records() -> str:
    """Hash record key → value: every shared record as it is now (the snapshot)."""
    return f"{PREFIX}{{{STATE}}}:records"


def user_channel(user: str) -> str:
    """Pub/sub channel of frames for one user's sessions, wherever they are (a contact's
    ``added_you``, presence, read marks, the echo of a change made on another node).
    Tagged by user, so it can become a sharded channel on its own slot."""
    return f"{PREFIX}{{user:{user}}}:inbox"


USER_CHANNEL_SUFFIX = "}:inbox"


def user_of_channel(channel: bytes | str) -> str | None:
    """The user of a ``user_channel``; None for any other channel."""
    name = channel.decode() if isinstance(channel, bytes) else channel
    head = f"{PREFIX}{{user:"
    if name.startswith(head) and name.endswith(USER_CHANNEL_SUFFIX):
        return name[len(head):-len(USER_CHANNEL_SUFFIX)]
    return None


# What a single node keeps in its data dir and every node of a cluster needs.
INVITE_KEY = f"{PREFIX}invite-key"  # string: the key that signs invite codes (invites.py)
# Set of withdrawn codes' nonces (a single node's <data dir>/invite.revoked); each one
# added is also published on INVITE_REVOKED_CHANNEL, for every node.
INVITE_REVOKED = f"{PREFIX}invite-revoked"
INVITE_REVOKED_CHANNEL = f"{PREFIX}invite-revoked:changes"


def ai_memory(persona: str) -> str:
    """String: an AI persona's memory, the JSON of ``<data dir>/ai/<persona>.memory.json``."""
    return f"{PREFIX}ai-memory:{persona}"


# The AI contacts' kill switch for the whole cluster: "1" on, else off; every change is
# also published on AI_KILL_SWITCH_CHANNEL ("1"/"0"), for the node running them.
AI_KILL_SWITCH = f"{PREFIX}ai-kill-switch"
AI_KILL_SWITCH_CHANNEL = f"{PREFIX}ai-kill-switch:changes"

# Hash node → JSON of how that node runs (its ``registration``, ``public_url``, URL: what a
# single node writes to <data dir>/server.json), written at each start, for ``cfm admin``
# (noderuns.py).
NODE_RUNS = f"{PREFIX}node-runs"

# String: a random id of this Redis's data, made by the first node that starts (SET NX).
# A node's search index file records it: a file made over another Redis (or over this
# one before it lost its data) is made again (indexfile.py).
CLUSTER_ID = f"{PREFIX}cluster-id"


def ai_quota(day: str) -> str:
    """Hash of one UTC day's (``YYYY-MM-DD``) successful AI backend calls: ``t`` (all),
    ``u:<user>``, ``a:<address>``; expires two days after it was last counted."""
    return f"{PREFIX}ai-quota:{day}"


PRESENCE_PREFIX = f"{PREFIX}{{presence}}:"
PRESENCE_NODES = f"{PREFIX}{{presence}}:nodes"  # zset node → expiry (ms, Redis clock)
# "on <user>" / "off <user>": a session made the user online / offline cluster-wide;
# "gone <user>": the user's last node expired or left (no node tells watchers of it)
PRESENCE_CHANNEL = f"{PREFIX}{{presence}}:changes"
# "<origin> <user> <frame>": a presence frame for the watchers of <user> on every node
PRESENCE_FRAMES = f"{PREFIX}{{presence}}:frames"


def presence_node(node: str) -> str:
    """Hash user → number of the user's sessions on ``node``."""
    return f"{PREFIX}{{presence}}:node:{node}"


def presence_user(user: str) -> str:
    """Hash node → number of the user's sessions on that node."""
    return f"{PREFIX}{{presence}}:user:{user}"


# "many <user>" / "one <user>": the user's sessions went from one node to two, or from
# two to one (per-user limits are counted in Redis while a user is on several nodes).
PRESENCE_SPREAD = f"{PREFIX}{{presence}}:spread"


def presence_grace(user: str) -> str:
    """String, set while ``user`` is offline within the presence grace of the last
    sign-out: whoever takes it first (a return, or the node ending the grace) decides
    whether watchers are told "offline"."""
    return f"{PREFIX}{{presence}}:grace:{user}"


# node → its origin ("<node>.<life>") now: which counts of ``presence_conns`` are live.
PRESENCE_LIVES = f"{PREFIX}{{presence}}:lives"


def presence_conns(address: str) -> str:
    """Hash origin → connections that life of a node holds from ``address``
    (``netaddr.address_key``); under the presence tag, so the count script can check
    each node's expiry."""
    return f"{PREFIX}{{presence}}:conns:{address}"


def presence_life(origin: str) -> str:
    """Channel each life of a node subscribes and nobody publishes on: while Redis
    counts a subscriber, that life's pub/sub connection is open (a SIGKILLed node's
    closes with it), so its per-address counts stand (``conn_count.lua``)."""
    return f"{PREFIX}{{presence}}:life:{origin}"


def presence_released(origin: str) -> str:
    """Hash address → connections of that life released from ``presence_conns`` while
    it looked gone; moved back if it comes back (``conn_restore.lua``)."""
    return f"{PREFIX}{{presence}}:released:{origin}"


def user_limit(user: str, kind: str) -> str:
    """Hash ``t`` (tokens), ``s`` (ms, Redis's clock): the user's bucket of ``kind``
    while the user is on several nodes. Tagged by user: one slot per user."""
    return f"{PREFIX}{{user:{user}}}:limit:{kind}"


def address_limit(address: str, kind: str) -> str:
    """The same bucket per client address (``netaddr.address_key``: an IPv6 /64)."""
    return f"{PREFIX}{{addr:{address}}}:limit:{kind}"


def lease(name: str) -> str:
    """String holding the token of the lease's current holder, with an expiry."""
    return f"{PREFIX}lease:{name}"
