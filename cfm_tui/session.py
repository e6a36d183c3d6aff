"""The live side of ``cfm chat``: an SDK ``Client`` and, if needed, an embedded server.

:class:`ChatSession` maps the app's intents onto the SDK (a DM is addressed ``to`` its
peer, a group room by name) and turns every failure into a :class:`ClientError` with a
sentence a person can read (:func:`friendly_error`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cfm_common import rules
from cfm_common.client import Client
from cfm_common.errors import (
    ClientError,
    ConnectCause,
    ConnectFailed,
    ConnectionClosed,
    LocalRefusal,
    TimedOut,
)
from cfm_common.rules import DEFAULT_PORT, WS_PATH
from cfm_tui.sanitize import clean_line

log = logging.getLogger(__name__)

CLIENT_NAME = "cfm-chat/0.1"
EXAMPLE_URL = f"ws://127.0.0.1:{DEFAULT_PORT}{WS_PATH}"


def server_url(typed: str) -> str:
    """A server address as people type it, completed to a ``ws://`` URL.

    ``host:port`` and ``ws://host:port`` get the ``/ws`` path cfm serves on, a bare host
    gets cfm's port too, ``http(s)://`` becomes ``ws(s)://``. A ValueError says what to
    type instead.
    """
    text = typed.strip()
    hint = (f"{text!r} is not a server address: type host:port or ws://host:port/ws, "
            f"e.g. {EXAMPLE_URL}")
    if not text or any(ch.isspace() for ch in text):
        raise ValueError(hint)
    bare = "://" not in text
    parts = urlsplit(f"ws://{text}" if bare else text)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        raise ValueError(hint) from None
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(hint)
    netloc = parts.netloc
    if bare and port is None:
        netloc = f"{netloc}:{DEFAULT_PORT}"
    path = parts.path if parts.path not in ("", "/") else WS_PATH
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def server_urls(typed: str) -> list[str]:
    """One server address or several, comma-separated (the nodes of one cluster), each
    completed by :func:`server_url`; a ValueError names an empty item or a bad one."""
    items = [item.strip() for item in typed.split(",")]
    if len(items) > 1 and not all(items):
        raise ValueError(f"{typed.strip()!r} has an empty server between its commas: give "
                         f"host:port or ws://host:port/ws, e.g. {EXAMPLE_URL},"
                         f"ws://127.0.0.2:{DEFAULT_PORT}{WS_PATH}")
    urls: list[str] = []
    for item in items:
        url = server_url(item)
        if url not in urls:
            urls.append(url)
    return urls


def connect_error(exc: ClientError, url: str = "") -> str:
    """Why the server could not be reached, and what to do about it; for several URLs
    (``exc.by_url``), why each could not. Told from the error's kind and fields (the
    SDK's words are shown, never read)."""
    if exc.by_url:
        return " ".join(connect_error(each, each_url) for each_url, each in exc.by_url.items())
    if not isinstance(exc, ConnectFailed):
        return f"Can't reach the server: {exc.msg}"
    url = exc.url or url
    parts = urlsplit(url)
    cause = exc.cause
    if cause is ConnectCause.DNS:
        return f"Can't find the host {parts.hostname!r}: check the server address."
    if cause is ConnectCause.REFUSED:
        return f"Nothing answers at {url}: is `cfm serve` running there?"
    if cause is ConnectCause.HTTP_STATUS and exc.status == 429:
        # The server's per-address cap: it is a cfm server, just busy.
        return (f"{parts.netloc} refused: too many connections from your address. Close "
                "other cfm windows or bots on this machine, or try again in a moment.")
    if cause is ConnectCause.HTTP_STATUS:
        fixed = urlunsplit((parts.scheme, parts.netloc, WS_PATH, "", ""))
        return (f"{parts.netloc} answered HTTP {exc.status}, not a cfm chat: a cfm server "
                f"listens at {WS_PATH}, e.g. {fixed}")
    if cause is ConnectCause.NO_HANDSHAKE:
        if parts.scheme == "ws":
            tls = urlunsplit(("wss", parts.netloc, parts.path, parts.query, ""))
            return f"{parts.netloc} answered, but not as a cfm server: if it uses TLS, try {tls}"
        return f"{parts.netloc} answered, but not as a cfm server: check the address."
    if cause is ConnectCause.TIMEOUT:
        return f"{url} did not answer in time: is it a cfm server?"
    if exc.detail:  # TLS, an untrusted certificate, a reset: the SDK's reason, as it is
        return f"Can't reach {url}: {exc.detail}"
    return f"Can't reach the server: {exc.msg}"


@dataclass
class SignIn:
    """Everything needed to sign in; ``server`` None means the embedded local server."""

    name: str
    display: str | None = None
    status: str = "online"
    psm: str | None = None
    server: str | None = None
    # An operator's invite code, for claiming a new handle on a server that asks for one.
    invite: str | None = None


class ChatSession:
    """One signed-in client; the app iterates ``client`` for events."""

    def __init__(self, url: str | list[str], sign_in: SignIn, *,
                 token_file: Path | None = None) -> None:
        self.client = Client(
            url, sign_in.name,
            token_file=token_file,
            status=sign_in.status,
            display=sign_in.display or None,
            psm=sign_in.psm or None,
            client_name=CLIENT_NAME,
            invite=sign_in.invite or None,
        )

    @property
    def url(self) -> str:
        """The server URL in use (of several, the one connected to or tried next)."""
        return self.client.url

    @property
    def me(self) -> str:
        return self.client.name

    async def connect(self) -> Any:
        return await self.client.connect()

    async def close(self) -> None:
        await self.client.close()

    def _target(self, room: str) -> dict[str, str]:
        """A DM is addressed to the peer (the room may not exist yet); a group by name."""
        pair = rules.dm_members(room)
        if pair is None:
            return {"room": room}
        me = rules.normalize_name(self.me)
        return {"to": pair[1] if pair[0] == me else pair[0]}

    async def say(self, room: str, text: str, id: str, reply: int | None = None) -> Any:
        # ``reply`` only when answering: the keyword is an extension of the SDK's say.
        answer = {"reply": reply} if reply is not None else {}
        return await self.client.say(text, id=id, **self._target(room), **answer)

    # Message changes (docs/protocol.md "Message changes"): the room is known by now
    # (a message in it is being changed), so DMs are addressed by room too.
    async def edit(self, room: str, target: int, text: str) -> Any:
        return await self.client.edit(room, target, text)

    async def delete(self, room: str, target: int) -> Any:
        return await self.client.delete(room, target)

    async def react(self, room: str, target: int, emoji: str, *, add: bool = True) -> Any:
        if add:
            return await self.client.react(room, target, emoji)
        return await self.client.unreact(room, target, emoji)

    async def search(self, text: str, room: str | None = None, before: str | None = None,
                     limit: int = 50) -> Any:
        return await self.client.search(text, room=room, before=before, limit=limit)

    async def nudge(self, peer: str) -> Any:
        return await self.client.nudge(peer)

    async def typing(self, room: str) -> None:
        await self.client.typing(**self._target(room))


HANDLE_RULE = "A handle is 2-24 letters, digits, '_', '.' or '-', starting with a letter or digit."
MAX_HANDLE = 24


def handle_refusal(name: str) -> str | None:
    """Why ``name`` cannot be a handle (too long says by how much), or None."""
    if rules.is_valid_name(name):
        return None
    if len(name) > MAX_HANDLE:
        return (f"That handle is {len(name)} characters long; the limit is {MAX_HANDLE}. "
                f"{HANDLE_RULE}")
    return HANDLE_RULE

# What a refusal (the server's, or the SDK's before sending) means to a person, by code.
ERROR_TEXT = {
    "name_taken": "The handle {name!r} is already taken on this server. Pick another one.",
    "bad_token": "The server refuses this computer's sign-in token for {name!r}: the "
                 "handle is someone else's, or the operator replaced its token. If it is "
                 "yours, get the new one (cfm admin reset-token {name}) and start cfm chat "
                 "--token-file FILE.",
    "name_invalid": HANDLE_RULE,
    "unsupported_version": "That server speaks another version of the cfm protocol.",
    "rate_limited": "Slow down a little: the server is rate-limiting you.",
    "no_such_user": "There is no user called {name!r} on this server.",
    "no_such_room": "There is no such room.",
    "not_member": "You are not in that room any more.",
    "forbidden": "That conversation is private.",
    "too_long": "That is too long for the server.",
}


MAX_REFUSAL = 200  # characters of a server's reason for refusing a sign-up


def sign_in_refusal(exc: ClientError) -> tuple[str, str | None]:
    """A ``forbidden`` answer to ``hello``: the server's reason, and the field to fix.

    The server says why (registration by invite, or closed; a code that is wrong, expired
    or used up); only the reasons about invites are fixed in the invite field. The text
    is the server's, so it is cleaned and cut to what the sign-in box shows (four lines).
    """
    msg = clean_line(exc.msg).strip() or "This server does not take new users."
    if len(msg) > MAX_REFUSAL:
        msg = msg[:MAX_REFUSAL - 1] + "…"
    lowered = msg.lower()
    field = "invite" if "invite" in lowered else "display" if "display name" in lowered \
        else None
    return msg[:1].upper() + msg[1:], field


def _shown_path(path: Path) -> str:
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def name_taken_text(name: str, token_file: Path) -> str:
    """``name_taken``: someone else's handle, or the user's own without its token here.

    An account made by the operator (`cfm admin add-user`) comes with a token file but
    this computer has none, so the server takes the sign-in for a new claim.
    """
    return (f"The handle {name!r} is taken on this server. If it is yours, its token is "
            f"missing: cfm chat reads it from {_shown_path(token_file)} (or --token-file "
            f"PATH). The operator can make a new one: cfm admin reset-token {name}.")


def bad_token_text(name: str, token_file: Path) -> str:
    """``bad_token``: this computer sent a token that is not the handle's (close 4003).

    Someone else's handle with a token of ours for it (an old claim), or, as often, the
    user's own after the operator replaced its token (`cfm admin reset-token`): the
    protocol does not tell these apart, so the text says both. Six lines of the sign-in
    box at most with a token path of ~60 characters: it fits 60x20 too.
    """
    return (f"The server refuses the token in {_shown_path(token_file)} for {name!r}: the "
            f"handle is someone else's, or the operator replaced its token. If it is "
            f"yours, get the new one (cfm admin reset-token {name}) and start cfm chat "
            f"--token-file FILE.")


def ended_text(error: ClientError | None, name: str) -> str | None:
    """Why the server ended the session for good (the SDK's ``StateChanged(CLOSED)``
    error), and what to do; None when nothing did (the user closed it).

    Told by the close code or the refusal's code; the server's close reason (4003: its
    token replaced, or the account removed, by the operator) is shown as it said it."""
    if error is None:
        return None
    closed = error if isinstance(error, ConnectionClosed) else None
    said = clean_line(closed.close_reason or "").strip()[:MAX_REFUSAL] if closed else ""
    if (closed is not None and closed.close_code == rules.CloseCode.BAD_TOKEN) \
            or error.code == rules.ErrorCode.BAD_TOKEN:
        return (f"Signed out by the server{f' ({said})' if said else ''}: the sign-in token "
                f"this computer has for {name!r} no longer works. Ask the operator for a "
                f"new one (cfm admin reset-token {name}) and start cfm chat "
                f"--token-file FILE; a removed account has none: ask for a new account.")
    if closed is not None and closed.close_code is not None:
        return (f"Disconnected by the server (close code {closed.close_code}"
                f"{f': {said}' if said else ''}).")
    return f"Disconnected: {friendly_error(error, name)}"


def is_lookalike_refusal(exc: ClientError) -> bool:
    """A name refused for passing as one of the server's bots or a reserved one.

    The one place the TUI reads the server's words: the protocol's ``error`` frame has
    no field that tells this ``name_taken``/``forbidden`` from the others (a protocol
    change, not the TUI's to make), and the advice differs (no token to look for).
    """
    return (exc.code == rules.ErrorCode.FORBIDDEN and "display name" in exc.msg) or \
        (exc.code == rules.ErrorCode.NAME_TAKEN and "looks too much like" in exc.msg)


def friendly_error(exc: ClientError, name: str = "") -> str:
    """One sentence for a failed request, from the error's kind and code."""
    if isinstance(exc, ConnectFailed):
        return connect_error(exc)
    if isinstance(exc, TimedOut):
        return "The server did not answer in time."
    if isinstance(exc, ConnectionClosed):
        return "You are signed out." if exc.by_client else \
            "The connection to the server was closed."
    if isinstance(exc, LocalRefusal) and exc.code == rules.ErrorCode.RATE_LIMITED:
        return "Wait a moment before sending that again."
    if is_lookalike_refusal(exc):
        # A name that passes for one of the server's bots or a reserved one: the
        # server's words say which.
        text = clean_line(exc.msg)
        return f"{text[:1].upper()}{text[1:]}: pick another one." if "pick" not in text \
            else text[:1].upper() + text[1:]
    template = ERROR_TEXT.get(exc.code)
    return template.format(name=name) if template else exc.msg or exc.code
