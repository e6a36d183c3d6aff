"""Invites on a cluster: one key for every node, each code's uses counted in Redis.

A single node keeps the key that signs invite codes in ``<data dir>/invite.key`` and
counts each code's sign-ups in its store. On a cluster every node must verify codes made
on any node, and a code's limit must hold wherever its sign-ups land:

- the key is the string ``cfm:invite-key`` (the text of a single node's key file, so
  ``cfm admin migrate`` copies it as it is). The first node started with
  ``registration = "invite"`` (or the first ``cfm admin invite --redis``) makes it with
  ``SET NX``; whoever comes second reads the one that stands;
- a sign-up's use is counted with the code's limit in the same change of the shared
  records as the identity's creation (``SharedState.create(counted=…)``): Redis adds one
  unless the limit is reached, so two sign-ups at once on two nodes with a one-use code
  get one account between them; and a use is counted exactly when its account is made
  (an identity refused, a reply lost, Redis gone between two calls: both or neither).

The counts every node sees are the shared records ``i:<nonce>`` (followed like every
record), so a code used up elsewhere is refused here without asking Redis; the count in
Redis is what decides a race.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from typing import Any

from cfm_server.cluster import keys, records
from cfm_server.cluster.batcher import Batcher
from cfm_server.cluster.broker import Broker
from cfm_server.cluster.state import SharedState
from cfm_server.invites import Invite, InviteBook, InviteError


class InviteUsedUp(InviteError):
    """Redis refused a sign-up's use: the code's limit was reached on some node."""

    def __init__(self) -> None:
        super().__init__("that invite code has been used up; ask for a new one")


def parse_key(text: bytes) -> bytes:
    """The key in ``cfm:invite-key``'s value (hex, as in a key file); InviteError if not."""
    try:
        key = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) < 16:
        raise InviteError(f"Redis key {keys.INVITE_KEY} does not hold an invite key; delete it "
                          f"to make a new one (every invite made so far stops working)")
    return key


async def shared_key(batcher: Batcher, *, create: bool = True) -> bytes | None:
    """The cluster's invite key: made now (``SET NX``) if there is none and ``create``;
    the one another node made first otherwise. None: none made and not ``create``."""
    if create:
        await batcher.call("SET", keys.INVITE_KEY, secrets.token_hex(32) + "\n", "NX")
    value: Any = await batcher.call("GET", keys.INVITE_KEY)
    return None if value is None else parse_key(value)


async def key_from_redis(url: str, create: bool = True) -> bytes | None:
    """``shared_key`` for a command (``cfm admin invite --redis``): its own connection.
    Redis's errors (out of reach, a refused password) go up as they are."""
    from cfm_server.cluster.rediscluster import one_shot

    async with one_shot(url) as client:
        if create:
            await client.set(keys.INVITE_KEY, secrets.token_hex(32) + "\n", nx=True)
        value = await client.get(keys.INVITE_KEY)
    return None if value is None else parse_key(value)


async def revoke_in_redis(url: str, nonce: str) -> bool:
    """Withdraw the code ``nonce`` on every node of the cluster at ``url`` (``cfm admin
    revoke-invite --redis``); False if it was already."""
    from cfm_server.cluster.rediscluster import one_shot

    async with one_shot(url) as client:
        added = await client.sadd(keys.INVITE_REVOKED, nonce)
        await client.publish(keys.INVITE_REVOKED_CHANNEL, nonce)
    return bool(added)


class SharedUses(Mapping[str, int]):
    """The uses of each code as the shared records hold them (read-only: Redis counts)."""

    def __init__(self, state: SharedState) -> None:
        self._records = state.records

    def __getitem__(self, nonce: str) -> int:
        value = self._records.get(records.invite_key(nonce))
        if value is None:
            raise KeyError(nonce)
        return int(value)

    def __iter__(self) -> Iterator[str]:
        prefix = records.invite_key("")
        return (k[len(prefix):] for k in self._records if k.startswith(prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class ClusterInviteBook(InviteBook):
    """``InviteBook`` whose counts are the shared records: ``spend`` and ``refund``
    change nothing here (Redis counts in ``ClusterWrites``; the change comes back through
    the log). Withdrawn codes are the set ``cfm:invite-revoked``, followed (``follow``)."""

    def __init__(self, key: bytes, state: SharedState) -> None:
        super().__init__(key, {})
        self._state = state
        self._withdrawn: set[str] = set()

    async def follow(self, broker: Broker) -> None:
        """Listen for withdrawn codes, then read those withdrawn so far (in this order,
        so that none withdrawn meanwhile is missed)."""
        await broker.listen(keys.INVITE_REVOKED_CHANNEL, self._on_revoked)
        members: Any = await broker.batcher.call("SMEMBERS", keys.INVITE_REVOKED)
        self._withdrawn.update(m.decode() for m in members or ())

    def _on_revoked(self, data: bytes) -> None:
        self._withdrawn.add(data.decode().strip())

    def revoked(self) -> frozenset[str]:
        return frozenset(self._withdrawn)

    @property  # type: ignore[override]
    def used(self) -> Mapping[str, int]:
        return SharedUses(self._state)

    @used.setter
    def used(self, value: Any) -> None:
        pass  # InviteBook.__init__ sets it; the shared records are the counts

    def spend(self, invite: Invite) -> int:
        return self.used.get(invite.nonce, 0) + 1

    def refund(self, invite: Invite) -> None:
        pass  # Redis counts a use only with its identity (ClusterWrites.create_user)
