"""Several URLs for one server: the nodes of a cluster, tried in turn.

A client is given one URL, a comma-separated string of them, or a sequence; every node
of a cluster is the same server (same accounts, same rooms, same history), so moving
from one to the next is a reconnect like any other and resumes the same way.

:func:`parse_servers` turns what people give into a tuple of URLs and says clearly what
is wrong with it; :class:`ServerList` is the rotation: on a failure the next URL is
tried at once, and only a whole round of failures (every URL once) earns a back-off.
Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

Servers = str | Sequence[str]


def split_servers(value: Servers) -> list[str]:
    """The items of ``value`` (commas split, blanks around them dropped), unchecked."""
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in item.split(",")]


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be a cfm server's URL, or None if it can."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        fixed = ("wss" if scheme == "https" else "ws") + url[len(scheme):]
        return f"{url} is a web address: a cfm server is reached with ws:// or wss:// ({fixed})"
    if scheme not in ("ws", "wss") or not parts.hostname:
        return f"{url!r} is not a server URL (want ws://host:port/ws or wss://…)"
    return None


def parse_servers(value: Servers) -> tuple[str, ...]:
    """Every URL of ``value``, in order, checked; ValueError says what is wrong.

    ``"ws://a/ws,ws://b/ws"``, ``["ws://a/ws", "ws://b/ws"]`` and a mix of both give the
    same tuple. An empty item (``"a,,b"``, a trailing comma) and a URL that is not
    ``ws://``/``wss://`` are refused, each naming the item. A URL given twice counts
    once (the first place).
    """
    items = split_servers(value)
    if not items or items == [""]:
        raise ValueError("no server URL given (want ws://host:port/ws)")
    urls: list[str] = []
    for number, url in enumerate(items, 1):
        if not url:
            raise ValueError(f"server URL {number} of {len(items)} is empty: "
                             f"{', '.join(items)!r} has a comma too many")
        problem = check_url(url)
        if problem is not None:
            raise ValueError(problem)
        if url not in urls:
            urls.append(url)
    return tuple(urls)


def primary(value: Servers) -> str:
    """The URL a cluster's local files are kept under: the first one given.

    Token files are one per server and handle, and the nodes of a cluster are one
    server: keying on the first URL keeps the key the same whichever node the client is
    on, and a single URL keeps the place it always had.
    """
    items = [item for item in split_servers(value) if item]
    return items[0] if items else ""


class ServerList:
    """The URLs in turn: :meth:`failed` moves on, :meth:`succeeded` starts a new round."""

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("no server URL")
        self.urls = tuple(urls)
        self.index = 0
        self._failures = 0  # in this round: since the last success or the last back-off

    @property
    def current(self) -> str:
        return self.urls[self.index]

    def failed(self) -> bool:
        """The current URL failed (or dropped us): move to the next one.

        True when that completes a round, every URL having failed once since the last
        success or the last round: time for a back-off before going on. With one URL
        every failure is a round.
        """
        self._failures += 1
        self.index = (self.index + 1) % len(self.urls)
        if self._failures >= len(self.urls):
            self._failures = 0
            return True
        return False

    def succeeded(self) -> None:
        self._failures = 0
