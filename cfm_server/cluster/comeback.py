"""Users whose going offline a node holds back for a while, because another node will
sign them in again: the AI contacts, which the node taking over their lease starts anew
when their node dies (``cluster/ai.py``).

When a node dies, the reaper publishes ``gone <user>`` for each user it held alone and
every node tells its own watchers at once (``NodePresence``). For a person that is right:
their client reconnects to another node within a second, long before the reaper runs, so
a ``gone`` means they really went. The AI contacts come back later: the lease must expire
(up to ``ai_lease_ttl`` after the death) and the new holder must start them, while the
reaper may run as soon as ``presence_expiry / 3`` after the death. Told at once, every
watcher would see them go offline and come back (a flap). So a ``gone`` of a user
expected back is held for ``within`` seconds: watchers still see them online (and so
does anyone signing in meanwhile); their return anywhere (``on``) ends the hold with
nothing told; at the end of the hold Redis is asked, and only a user still offline is
told gone. A takeover slower than the hold (a starved node, Redis out of reach) still
flaps, once, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from cfm_server.cluster.errors import ClusterError
from cfm_server.cluster.presence import Presence

if TYPE_CHECKING:
    from cfm_server.state import User

log = logging.getLogger(__name__)


class Comebacks:
    def __init__(self, presence: Presence, tell_gone: Callable[[User], None]) -> None:
        self._presence = presence
        self._tell_gone = tell_gone  # what a node does with a 'gone' not held back
        self._expected: dict[str, float] = {}  # user → how long a 'gone' is held
        self._held: dict[str, asyncio.TimerHandle] = {}
        self._checks: set[asyncio.Task[Any]] = set()

    def expect(self, names: Iterable[str], within: float) -> None:
        """``names`` come back on another node within ``within`` seconds of going."""
        for name in names:
            self._expected[name] = within

    def expects(self, name: str) -> bool:
        """Whether ``name`` is one of the users expected back on another node."""
        return name in self._expected

    def hold(self, user: User) -> bool:
        """A ``gone`` of ``user``: True if it is held back (nothing to tell now)."""
        within = self._expected.get(user.name)
        if within is None or user.sessions:
            return False
        if user.name not in self._held:
            log.info("%s went with its node; expected back within %.0f s", user.name, within)
            self._held[user.name] = asyncio.get_running_loop().call_later(
                within, self._ended, user)
        return True

    def back(self, name: str) -> None:
        """``on <name>``: the user came back somewhere; nobody saw it go."""
        handle = self._held.pop(name, None)
        if handle is not None:
            handle.cancel()

    def close(self) -> None:
        for handle in self._held.values():
            handle.cancel()
        self._held.clear()
        for task in self._checks:
            task.cancel()

    def _ended(self, user: User) -> None:
        self._held.pop(user.name, None)
        task = asyncio.ensure_future(self._check(user))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(self, user: User) -> None:
        """The hold is over and no ``on`` came (pub/sub may have lost it): Redis says."""
        try:
            back = bool(await self._presence.online([user.name]))
        except ClusterError as exc:  # out of reach: this node's view decides
            log.debug("is %s back? Redis cannot say: %s", user.name, exc)
            back = bool(user.sessions)
        if not back and not user.sessions:
            log.warning("%s did not come back within its hold: telling watchers", user.name)
            self._tell_gone(user)
