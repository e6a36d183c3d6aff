"""What a :class:`~cfm_common.client.Client` keeps on disk between runs: its token and
(with ``seen_file``) how far each room was handed to the program.

The file formats and where they live are :mod:`cfm_common.tokens`; this module decides
when they are read and written. Failing to write is logged, never raised: a client
that cannot save its token still chats.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path

from cfm_common import tokens

log = logging.getLogger(__name__)

# The seen file is written at most this often while messages flow.
SEEN_SAVE_DELAY = 1.0


class TokenFile:
    """The identity token: given, found in the token file, then the one each
    ``welcome`` hands out (written back when it changed)."""

    def __init__(self, urls: tuple[str, ...], name: str, token: str | None,
                 token_file: str | Path | bool | None) -> None:
        if token_file is False:
            self.path: Path | None = None
        elif token_file is None or token_file is True:
            # Under the first URL: the same file whichever node we are on (tokens.py).
            self.path = tokens.default_token_file(urls, name)
        else:
            self.path = Path(token_file)
        self._saved = tokens.read_token(self.path) if self.path else None
        found = self._saved
        if found is None and token_file in (None, True):
            # The same cluster listed in another order before: its token is under another
            # URL; the welcome then writes it under the first one.
            found = tokens.read_any_token(urls[1:], name)
        self.token = token if token is not None else found
        self._claim: str | None = None

    def claim(self) -> str:
        """While there is no token: the secret this client claims its handle with (it
        becomes the token), the same in every retry, so that a claim whose answer was
        lost (a connection cut, ``internal`` after the server stored the account) signs
        in when tried again instead of finding the handle taken (docs/protocol.md)."""
        if self._claim is None:
            self._claim = secrets.token_urlsafe(32)
        return self._claim

    def welcomed(self, token: str) -> None:
        if token:
            self.token = token
        if self.path is not None and token != self._saved:
            try:
                tokens.write_token(self.path, token)
                self._saved = token
            except OSError as exc:
                log.warning("cannot save the token to %s: %s", self.path, exc)


class SeenFile:
    """Room → (last seq handed over, epoch): loaded at start, saved a moment after it
    changes and at the end. Without a path it is kept in memory only."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.rooms: tokens.SeenState = tokens.read_seen(self.path) if self.path else {}
        self._timer: asyncio.TimerHandle | None = None

    def changed(self, *, now: bool = False) -> None:
        """The state changed: save it soon (``now``: the program may exit any moment)."""
        if now:
            self.save()
        elif self.path is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SEEN_SAVE_DELAY, self.save)

    def save(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.path is None:
            return
        try:
            tokens.write_seen(self.path, self.rooms)
        except OSError as exc:
            log.warning("cannot save the seen state to %s: %s", self.path, exc)
