"""The reconnect schedule: which server next, how long to wait, and when to stop.

Pure, clock passed in; the client's connection task sleeps for what it is told.

- Given several URLs (the nodes of a cluster, :mod:`cfm_common.servers`), the next one
  is tried at once after a failure; the back-off (:mod:`cfm_common._backoff`) applies
  only once a whole round of them failed. The URL that dropped us counts as the round's
  first failure, so a killed node costs a reconnect, not a wait.
- A connection that lived :data:`STABLE_AFTER` seconds was a good one: the back-off
  starts again from its first step.
- After a 1012 close (the server is restarting) the back-off stops growing at
  :data:`RESTART_CAP` for :data:`RESTART_WINDOW`: a restart takes seconds. So it does
  after a 1013 close and after an attempt the server (or a proxy in front of it)
  answered "not now" without saying how long (HTTP 502/503/504, a ``hello`` refused
  ``internal``): something there is up and will be ready in seconds, and a long wait
  would keep its clients away long after it is (:func:`answered_busy`).
- A failed attempt that says when to come back (the ``retry_ms`` of a ``hello``'s
  ``error``, the ``Retry-After`` of an HTTP 503 or 429) is taken at its word: the next
  attempt waits that long, spread up to half as much again (:meth:`Backoff.after`),
  and the back-off does not grow meanwhile — never sooner than asked, never much later.
- Close codes 4002/4003/4004 and the matching ``hello`` refusals are final
  (``rules.FATAL_CLOSES``, ``rules.FINAL_HELLO_REFUSALS``): the client closes.
"""

from __future__ import annotations

from cfm_common import rules
from cfm_common._backoff import Backoff
from cfm_common.errors import ClientError, ConnectCause, ConnectFailed, ServerRefused
from cfm_common.servers import ServerList

STABLE_AFTER = 10.0
RESTART_CAP = 4.0
RESTART_WINDOW = 60.0
# The longest a server's hint is followed (a "Retry-After: 86400" is a mistake).
HINT_CAP = 300.0
BUSY_STATUSES = frozenset({502, 503, 504})  # a proxy up, the server behind it not ready
SHORT_CLOSES = frozenset({rules.CloseCode.SERVICE_RESTART, rules.CloseCode.TRY_AGAIN_LATER})


def final_refusal(exc: ClientError) -> bool:
    """A refusal of who we are: every node of the server says the same."""
    return isinstance(exc, ServerRefused) and exc.code in rules.FINAL_HELLO_REFUSALS


def retryable(exc: ClientError) -> bool:
    """What connect(wait=True) tries again: a server not reached (but not one whose
    certificate is untrusted), or one that could not store a new account (``internal``);
    anything else needs a person."""
    if exc.final:
        return False
    if isinstance(exc, ConnectFailed):
        return exc.cause is not ConnectCause.CERTIFICATE
    return isinstance(exc, ServerRefused) and exc.code == rules.ErrorCode.INTERNAL


def answered_busy(exc: ClientError) -> bool:
    """The server, or the proxy in front of it, answered "not now": it is up, and what
    it waits for (its Redis, a node behind the proxy) takes seconds, not minutes."""
    if isinstance(exc, ConnectFailed):
        return exc.status in BUSY_STATUSES
    return isinstance(exc, ServerRefused) and exc.code == rules.ErrorCode.INTERNAL


def round_error(errors: dict[str, ClientError]) -> ClientError:
    """One error for a round of failed connects: the error itself for one URL, else
    every URL's own words in one line (and ``by_url``), final only if each is. All
    refused alike: that refusal; otherwise a ConnectFailed (cause SEVERAL when the
    causes differ)."""
    if len(errors) == 1:
        return next(iter(errors.values()))
    msg = f"none of the {len(errors)} servers answered: " + "; ".join(
        exc.msg if url in exc.msg else f"{url}: {exc.msg}" for url, exc in errors.items())
    retry = [exc.retry_ms for exc in errors.values() if exc.retry_ms is not None]
    final = all(exc.final for exc in errors.values())
    codes = {exc.code for exc in errors.values()}
    if len(codes) == 1 and all(isinstance(exc, ServerRefused) for exc in errors.values()):
        return ServerRefused(codes.pop(), msg, min(retry) if retry else None, final=final,
                             by_url=errors)
    causes = {exc.cause if isinstance(exc, ConnectFailed) else None for exc in errors.values()}
    cause = causes.pop() if len(causes) == 1 else None
    return ConnectFailed(cause or ConnectCause.SEVERAL, ", ".join(errors), msg, final=final,
                         by_url=errors)


class Reconnect:
    """The schedule of one client: its servers, its back-off and the short one after a
    restart."""

    def __init__(self, servers: ServerList, backoff: Backoff) -> None:
        self.servers = servers
        self.backoff = backoff
        self._short: Backoff | None = None
        self._short_until = 0.0
        self._round_over = False
        self._failures: dict[str, ClientError] = {}
        self._hint: float | None = None  # seconds a failure of this round asked us to wait

    def lost(self, close_code: int | None, lived: float, now: float) -> bool:
        """The connection dropped after ``lived`` seconds: True to reconnect, False if
        the close code refuses who we are."""
        if lived >= STABLE_AFTER:
            self.backoff.reset()
        if close_code in rules.FATAL_CLOSES:
            return False
        self._short = None
        if close_code in SHORT_CLOSES:
            self._shorten(now)
        self._hint = None
        self._round_over = self.servers.failed()
        return True

    def delay(self, now: float) -> float:
        """The wait before the next reconnect attempt (0: another URL, at once)."""
        if not self._round_over:
            return 0.0
        return self.wait(now)

    def wait(self, now: float) -> float:
        """The wait after a round of failed attempts: the server's hint if one gave it,
        else the short schedule while it lasts, else the back-off."""
        hint, self._hint = self._hint, None
        if hint is not None:
            return self.backoff.after(min(max(hint, self.backoff.base), HINT_CAP))
        if self._short is not None and now < self._short_until:
            return self._short.next()
        return self.backoff.next()

    def note(self, exc: ClientError, now: float) -> None:
        """What a failed attempt says about the next one: a hint (``retry_ms``, the
        smallest of the round's), or "not now" (the short schedule, once per lost
        connection: a server still not ready after its minute gets the back-off)."""
        if exc.retry_ms is not None:
            seconds = exc.retry_ms / 1000
            self._hint = seconds if self._hint is None else min(self._hint, seconds)
        elif answered_busy(exc) and self._short is None:
            self._shorten(now)

    def _shorten(self, now: float) -> None:
        self._short = self.backoff.capped(RESTART_CAP)
        self._short_until = now + RESTART_WINDOW

    def woken(self) -> None:
        """A person asked to reconnect now: both schedules start over."""
        self.backoff.reset()
        if self._short is not None:
            self._short.reset()

    def reconnect_failed(self, exc: ClientError, now: float) -> bool:
        """An attempt to reconnect failed (not finally): the next URL, or (True) a round
        of them failed and the next attempt waits."""
        self.note(exc, now)
        self._round_over = self.servers.failed()
        return self._round_over

    def connect_failed(self, url: str, exc: ClientError, now: float
                       ) -> tuple[ClientError, bool] | None:
        """A first connect to ``url`` failed: None to try the next URL at once, or the
        error of the whole round (all URLs failed) and whether waiting may mend it."""
        self._failures[url] = exc
        self.note(exc, now)
        if not self.servers.failed():
            return None
        again = any(retryable(e) for e in self._failures.values())
        error, self._failures = round_error(self._failures), {}
        return error, again

    def succeeded(self) -> None:
        self.servers.succeeded()
        self._failures = {}
        self._hint = None
