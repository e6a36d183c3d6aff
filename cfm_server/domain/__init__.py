"""The server's domain: the rules of the protocol, each in one place, split by domain.

    world      the live state (users, rooms, who lists whom), loaded from the store
    signin     hello: sign-in, sign-up (registration, invites), welcome, sign-out
    presence   status, display name, personal message: what others see, and when
    rooms      join, leave, member lists, who may read a room
    messages   say, nudge (the hot path), typing, history, read marks
    changes    edit, delete, reactions (entries of the room's sequence), moderators,
               the unread and mention counts of welcome
    annotations  what a say carries besides its text: the seq it answers, mentions
    contacts   contact lists, add requests, private blocking
    hidden     what each side of a block sees of a DM message
    removal    what the others are told of an account the operator removed
    delivery   bytes to other users' sessions: to a user, to a room's members, presence
    writes     the one door for durable writes
    durable    a change is told only once its write is durable; a failed one is undone
    ports      the interfaces the domain needs (``Connection``: what a session is to it)

``cfm_server.hub.Hub`` wires these together and is what sessions and the server call.
Every handler runs on the event loop without awaiting, so the state never changes under
a handler's feet; the domain speaks to connections only through ``ports.Connection``
and never imports ``cfm_server.session``.

Where a cluster backend plugs in (docs/cluster.md): single node and cluster mode differ
only behind two seams, and the rules stay in the domain modules.

- ``writes.Writes`` (and the store reads): users, contacts, memberships, read marks and
  invites in Redis; a message's ``append`` becomes the broker's script, which also
  assigns the seq (sequencing in Redis rather than ``Room.next_seq``) and dedupes.
- ``delivery.Delivery``: delivery across nodes (publish a room's messages to the nodes
  with its members' sessions, each node fanning out to its own) and presence across
  nodes (who is online where; a change told to the watchers' nodes). What each
  recipient may see (blocks, invisibility, hidden messages) is still decided by the
  domain modules before the bytes reach delivery.
"""
