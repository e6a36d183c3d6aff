"""The reconnect schedule: which server next, how long to wait, and when to stop.

Pure, clock passed in; the client's connection task sleeps for what it is told.

- Given several URLs (the nodes of a cluster, :mod:`cfm_common.servers`), the next one
  is tried at once after a failure; the back-off (:mod:`cfm_common._backoff`) applies
  only once a whole round of them failed. The URL that dropped us counts as the round's
  first failure, so a killed node costs a reconnect, not a wait.
- A connection that lived :data:`STABLE_AFTER` seconds was a good one: the back-off
  starts again from its first step.
- After a 1012 close (the server is restarting) the back-off stops growing at
  :data:`RESTART_CAP` for :data:`RESTART_WINDOW`: a restart takes seconds.
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

    def lost(self, close_code: int | None, lived: float, now: float) -> bool:
        """The connection dropped after ``lived`` seconds: True to reconnect, False if
        the close code refuses who we are."""
        if lived >= STABLE_AFTER:
            self.backoff.reset()
        if close_code in rules.FATAL_CLOSES:
            return False
        restarting = close_code == rules.CloseCode.SERVICE_RESTART
        self._short = self.backoff.capped(RESTART_CAP) if restarting else None
        self._short_until = now + RESTART_WINDOW
        self._round_over = self.servers.failed()
        return True

    def delay(self, now: float) -> float:
        """The wait before the next reconnect attempt (0: another URL, at once)."""
        if not self._round_over:
            return 0.0
        if self._short is not None and now < self._short_until:
            return self._short.next()
        return self.backoff.next()

    def woken(self) -> None:
        """A person asked to reconnect now: both schedules start over."""
        self.backoff.reset()
        if self._short is not None:
            self._short.reset()

    def reconnect_failed(self) -> bool:
        """An attempt to reconnect failed (not finally): the next URL, or (True) a round
        of them failed and the next attempt waits."""
        self._round_over = self.servers.failed()
        return self._round_over

    def connect_failed(self, url: str, exc: ClientError) -> tuple[ClientError, bool] | None:
        """A first connect to ``url`` failed: None to try the next URL at once, or the
        error of the whole round (all URLs failed) and whether waiting may mend it."""
        self._failures[url] = exc
        if not self.servers.failed():
            return None
        again = any(retryable(e) for e in self._failures.values())
        error, self._failures = round_error(self._failures), {}
        return error, again

    def succeeded(self) -> None:
        self.servers.succeeded()
        self._failures = {}
