"""Who may come in, under which name, and how fast: the hub's rules against one person
passing for another or multiplying themselves.

- **Look-alike names.** A new handle may not have the skeleton
  (``rules.handle_skeleton``) of a reserved name or of one of the server's own bots
  (``adm1n``, ``smarty_b0t``); a display name may not pass for either, unless it is
  that bot's own ("SmartyBot").
- **Per address.** New handles per client address (``signup_rate``/``signup_burst``);
  loopback is not limited.
- **Per user.** Buckets that all of a user's sessions share (``UserLimits``): says and
  nudges, the bytes of text they store, the bytes of stored messages their answers
  read (``read_budget``), DMs to strangers, contact requests, new group rooms; and a
  cap on the group rooms one user belongs to.

On a cluster node (``SharedLimits``, ``cluster/limits.py``) a user whose sessions are on
several nodes spends from one bucket in Redis: the charge raises :class:`ChargeLater`
and the frame is handled again once Redis answered (``ChargeLater.settled``); a user on
this node alone spends locally, as on a single node. New handles per address are
counted in Redis before the hello is answered (``signup_verdicts``).

The server's bots (the AI contacts it provisions) answer everyone: they spend from none
of the per-user buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from cfm_common import rules
from cfm_common.errors import ProtocolError
from cfm_common.rules import ErrorCode
from cfm_server.limits import KeyedBuckets, UserLimits
from cfm_server.netaddr import address_key, is_loopback

if TYPE_CHECKING:
    from cfm_server.config import ServerConfig
    from cfm_server.state import Room, User


class RateLimited(Exception):
    """A frame refused by a server-side limit the session does not see (nudge pairs,
    per-user and per-address buckets)."""

    def __init__(self, retry_ms: int, ref: str, why: str | None = None) -> None:
        super().__init__(f"retry in {retry_ms} ms")
        self.retry_ms = retry_ms
        self.ref = ref
        self.why = why  # for the error's msg: which limit it was


class SharedLimits(Protocol):
    """A cluster node's buckets for users on several nodes (``cluster/limits.py``)."""

    def spread(self, user: str) -> bool:
        """Whether ``user`` has sessions on another node too."""

    def take(self, kind: str, user: str, cost: int = 1) -> asyncio.Future[int]:
        """Spend ``cost`` from the user's shared bucket of ``kind``: 0 or a ``retry_ms``
        (never fails: without Redis, the local bucket answers)."""


class ChargeLater(Exception):
    """Charges only Redis can decide: the frame is to be handled again once
    ``verdict`` is done (every one of ``verdicts``: asked in one pipeline), inside
    ``settled()``, where those verdicts stand for the charges (and for the ones decided
    before them in the same frame)."""

    def __init__(self, admission: Admission, verdicts: dict[str, asyncio.Future[int]],
                 paid: dict[str, int]) -> None:
        super().__init__(", ".join(verdicts))
        self.admission = admission
        self.verdicts = verdicts
        self.paid = paid
        futures = list(verdicts.values())
        self.verdict: asyncio.Future[Any] = (
            futures[0] if len(futures) == 1 else asyncio.gather(*futures))

    @contextlib.contextmanager
    def settled(self) -> Iterator[None]:
        admission = self.admission
        admission.paid = {**self.paid,
                          **{kind: done.result() for kind, done in self.verdicts.items()}}
        try:
            yield
        finally:
            admission.paid = None


# What each per-user bucket limits, in an error's words: "too many say frames" read as
# the session's say rate when it was the stranger bucket.
USER_LIMIT_WORDS = {
    "say": "too many messages from you (all your sessions together)",
    "stranger": "too many messages to people who have not added you",
    "contact": "too many contact requests",
    "room": "too many new rooms",
    "typing": "too many typing notices (all your sessions together)",
    "presence": "too many presence changes (all your sessions together)",
    "search": "too many searches (all your sessions together)",
    "text": "too much text from you (all your sessions together)",
    "read": "too much history read (all your sessions together); try again later",
    "signin": "too many sign-ins of this account; try again later",
}


class Admission:
    def __init__(self, config: ServerConfig, reserved: Iterable[str]) -> None:
        self.config = config
        # Skeleton → the name a new handle with it would imitate.
        self.lookalike_of: dict[str, str] = {
            rules.handle_skeleton(n): n for n in sorted(reserved, reverse=True)}
        # The same for display names: a server bot's own are its alone, skeleton → bot.
        self.display_of_bot: dict[str, str] = {}
        # The bots this server provisioned (the AI contacts).
        self.server_bots: set[str] = set()
        self.user_limits = UserLimits(config)
        self.signups = (KeyedBuckets(config.signup_rate, config.signup_burst)
                        if config.rate_limits else None)
        self.shared: SharedLimits | None = None  # a cluster node's
        # Charges decided by Redis for the frame being handled again (ChargeLater).
        self.paid: dict[str, int] | None = None
        # address → the sign-up charge Redis decided for a hello about to be answered.
        self.signup_verdicts: dict[str, int] = {}
        # user → the sign-in charge Redis decided for a hello about to be answered.
        self.signin_verdicts: dict[str, int] = {}

    def add_server_bot(self, name: str, displays: Iterable[str]) -> None:
        self.server_bots.add(name)
        self.lookalike_of[rules.handle_skeleton(name)] = name
        for shown in displays:
            self.display_of_bot[rules.handle_skeleton(shown)] = name

    # --- names ---------------------------------------------------------------------------

    def check_new_handle(self, name: str) -> None:
        imitated = self.lookalike_of.get(rules.handle_skeleton(name))
        if imitated is not None:
            raise ProtocolError(ErrorCode.NAME_TAKEN,
                                f"{name!r} looks too much like {imitated!r}", "hello")

    def check_display(self, name: str, display: str) -> None:
        """Refuse a display name that passes for a reserved name or for one of the
        server's bots (its handle or display name), unless it is that bot's own."""
        looks = rules.handle_skeleton(display)
        owner = self.display_of_bot.get(looks) or self.lookalike_of.get(looks)
        if owner is not None and owner != name:
            raise ProtocolError(ErrorCode.FORBIDDEN,
                                f"display name {display!r} passes for {owner!r}: pick another")

    # --- rates ---------------------------------------------------------------------------

    def charge_signup(self, ip: str) -> None:
        """New handles per client address: one address cannot mint accounts by the
        thousand (each would get the AI quota, the buckets, a place in #lobby)."""
        if self.signups is None or not ip or is_loopback(ip):
            return
        key = address_key(ip)
        retry_ms = self.signup_verdicts.pop(key, None)
        if retry_ms is None:
            retry_ms = self.signups.take(key, time.monotonic())
        if retry_ms:
            raise RateLimited(retry_ms, "hello")

    def charge_signin(self, user: User) -> None:
        """Sign-ins per user, every session (and node) together: a hello with the right
        token, before it is answered. The server's own bots are not counted."""
        buckets = self.user_limits.kinds.get("signin")
        if buckets is None or user.name in self.server_bots:
            return
        retry_ms = self.signin_verdicts.pop(user.name, None)
        if retry_ms is None:
            retry_ms = buckets.take(user.name, time.monotonic())
        if retry_ms:
            raise RateLimited(retry_ms, "hello", USER_LIMIT_WORDS["signin"])

    def charge(self, user: User, kind: str, ref: str, cost: int = 1) -> None:
        """Spend ``cost`` from the user's own bucket of ``kind`` (see UserLimits)."""
        self.charge_each(user, ((kind, cost),), ref)

    def charge_each(self, user: User, charges: Iterable[tuple[str, int]], ref: str) -> None:
        """Spend from several of the user's buckets for one frame, in order; the first
        that refuses raises. For a user on several nodes every charge not decided yet
        goes to Redis at once (one pipeline: one round trip, not one per bucket; a
        refusal then does not keep the later buckets from being spent)."""
        if user.name in self.server_bots:
            return
        charges = tuple(charges)
        paid = self.paid
        if self.shared is not None and self.shared.spread(user.name):
            ask = {kind: cost for kind, cost in charges
                   if kind in self.user_limits.kinds and (paid is None or kind not in paid)}
            if ask:
                raise ChargeLater(self, {kind: self.shared.take(kind, user.name, cost)
                                         for kind, cost in ask.items()}, dict(paid or {}))
        for kind, cost in charges:
            if paid is not None and kind in paid:
                retry_ms = paid[kind]  # decided by Redis (ChargeLater.settled)
            else:
                retry_ms = self.user_limits.check(kind, user.name, time.monotonic(), cost)
            if retry_ms:
                raise RateLimited(retry_ms, ref, USER_LIMIT_WORDS.get(kind))

    def charge_message(self, user: User, peer: User | None, ref: str,
                       room: Room | None = None, text: str = "") -> None:
        """A say or nudge: the user's ``say`` bucket, and for a DM to someone who has
        not listed the user (a stranger: spam's target) the ``stranger`` bucket too —
        unless the peer wrote in that DM first: an answer is not unsolicited (a bot
        answering everyone who writes to it); and the ``text`` bucket (text_charge)."""
        charges = [("say", 1)]
        if peer is not None and peer.name not in self.server_bots:
            listing = peer.contacts.get(user.name)
            listed = listing is not None and listing.in_list
            answering = room is not None and peer.name in room.wrote
            if not listed and not answering:
                charges.append(("stranger", 1))
        self.charge_each(user, (*charges, *text_charge(text)), ref)

    def take_read(self, user: User, cost: int) -> int | asyncio.Future[int]:
        """Spend ``cost`` bytes (below 0: give them back) from the user's ``read`` bucket
        while an answer is produced (``read_budget``): 0 or a ``retry_ms``, at once, or
        for a user on several nodes a future of it (Redis decides)."""
        buckets = self.user_limits.kinds.get("read")
        if buckets is None or user.name in self.server_bots:
            return 0
        if self.shared is not None and self.shared.spread(user.name):
            return self.shared.take("read", user.name, cost)
        return buckets.take(user.name, time.monotonic(), cost)

    def admit_new_dm(self, user: User, peer: User, rooms: Mapping[str, Room]) -> None:
        """A say or nudge that would open a new DM room: neither user may have more than
        ``max_dms_per_user`` (every one is a line of each welcome). The server's bots,
        which everyone talks to, are not limited."""
        for member in (user, peer):
            if member.name in self.server_bots:
                continue
            count = sum(1 for r in member.rooms if rooms[r].is_dm)
            if count >= self.config.max_dms_per_user:
                whose = "you have" if member is user else f"{peer.name} has"
                raise ProtocolError(
                    ErrorCode.FORBIDDEN,
                    f"{whose} {count} conversations, the most this server allows")

    def admit_group_join(self, user: User, room_name: str, rooms: Mapping[str, Room]) -> None:
        """A user joining a group room it is not in: at most ``max_rooms_per_user`` of
        them (each is a line of every welcome), and new rooms only as fast as the user's
        ``room`` bucket allows."""
        count = sum(1 for r in user.rooms if not rooms[r].is_dm)
        if count >= self.config.max_rooms_per_user:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"you are in {count} rooms, the most this server allows: leave one first")
        if room_name not in rooms:
            self.charge(user, "room", "join")


def text_charge(text: str) -> tuple[tuple[str, int], ...]:
    """The ``text`` bucket's charge for the text a say or a change stores: its UTF-8
    bytes, what a user makes the store (a cluster's Redis: memory) hold, whatever the
    number of messages it comes in. None for no text."""
    size = len(text.encode("utf-8", "surrogatepass"))
    return (("text", size),) if size else ()
