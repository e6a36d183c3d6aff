"""Every exception cfm raises, in one tree.

    CfmError                     the root: ``except CfmError`` catches all of them
    ├── ProtocolError            bad input from the other side; carries the protocol's code
    └── ClientError              something the SDK could not do (``code``, ``msg``, ``final``)
        ├── ServerRefused        the server answered ``error``: ``code`` is an ErrorCode
        ├── ConnectFailed        no session was opened: ``cause`` says why (ConnectCause)
        ├── ConnectionClosed     the connection or the client ended: ``close_code``,
        │                        ``close_reason``
        ├── TimedOut             no answer in time: ``request``, ``seconds``
        └── LocalRefusal         refused here before sending: the caller's mistake

Callers tell failures apart by type and fields, never by the message text: ``msg`` is
for people. ``ClientError.code`` stays a string (an ErrorCode is a ``str`` too) so code
written before the tree, ``except ClientError`` and ``exc.code == "bad_token"``, still
works: the server's codes keep their values, and the SDK's own are
``connect_failed`` / ``bad_certificate`` (ConnectFailed), ``closed`` / ``disconnected``
/ ``internal`` (ConnectionClosed), ``timeout`` (TimedOut).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from cfm_common.rules import ErrorCode


class CfmError(Exception):
    """The root of cfm's exceptions."""


class ProtocolError(CfmError):
    """Input that breaks the protocol. ``code`` is what an ``error`` frame would carry.

    ``ref`` names the offending frame (its ``t``, or the client's ``id`` when it had one)
    so the server can answer with ``error{code, msg, ref}`` in one place.
    """

    def __init__(self, code: ErrorCode | str, msg: str, ref: str | None = None) -> None:
        super().__init__(msg)
        self.code = ErrorCode(code)
        self.msg = msg
        self.ref = ref

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.value!r}, {self.msg!r}, ref={self.ref!r})"


class ClientError(CfmError):
    """A request or a connection failed; the base of the SDK's exceptions.

    ``code`` is a string: the server's error code, or the SDK's own (see the module
    doc). ``final`` is true for a failure that trying again cannot mend (an ``http://``
    URL, a path the server answers 404 for, a server that does not speak cfm):
    ``connect(wait=True)`` raises it at once instead of waiting. ``by_url`` is set when
    connecting to several URLs failed: each URL tried and its own error.

    Raise one of the subclasses; this one stays constructible for code written before
    them.
    """

    def __init__(
        self, code: str, msg: str, retry_ms: int | None = None, *, final: bool = False,
        by_url: Mapping[str, ClientError] | None = None,
    ) -> None:
        super().__init__(f"{code}: {msg}")
        self.code: str = code if isinstance(code, ErrorCode) else str(code)
        self.msg = msg
        self.retry_ms = retry_ms
        self.final = final
        self.by_url: dict[str, ClientError] = dict(by_url or {})

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.code)!r}, {self.msg!r}, "
                f"retry_ms={self.retry_ms!r})")


class ServerRefused(ClientError):
    """The server answered ``error``: ``code`` is the protocol's ErrorCode (a code this
    SDK does not know, from a newer server, stays the plain string), ``ref`` the frame
    it refused (as the server named it), ``retry_ms`` when to try again."""

    def __init__(
        self, code: ErrorCode | str, msg: str, retry_ms: int | None = None, *,
        ref: str | None = None, final: bool = False,
        by_url: Mapping[str, ClientError] | None = None,
    ) -> None:
        known = code in ErrorCode._value2member_map_
        super().__init__(ErrorCode(code) if known else str(code), msg, retry_ms, final=final,
                         by_url=by_url)
        self.ref = ref


class ConnectCause(enum.StrEnum):
    """Why no session could be opened."""

    BAD_URL = "bad_url"  # not a ws:// or wss:// URL one can connect to
    DNS = "dns"  # the host name does not resolve
    REFUSED = "refused"  # nothing listens at that address and port
    TIMEOUT = "timeout"  # no answer (TCP, TLS, HTTP or hello) in time
    NETWORK = "network"  # another socket error: reset, unreachable…
    TLS = "tls"  # the TLS handshake failed (a plain server behind wss://, say)
    CERTIFICATE = "certificate"  # the server's certificate is not trusted
    HTTP_STATUS = "http_status"  # an HTTP answer other than the upgrade: ``status``
    NO_HANDSHAKE = "no_handshake"  # it answered, but not in HTTP: TLS, or another protocol
    NOT_CFM = "not_cfm"  # a WebSocket server, but not a cfm one (no cfm.v1, no welcome)
    SEVERAL = "several"  # several URLs failed for different reasons: see ``by_url``


class ConnectFailed(ClientError):
    """No session: ``cause`` says why, ``url`` where, ``status`` the HTTP status for
    ``HTTP_STATUS`` (and ``retry_ms`` its ``Retry-After``, if it said). ``msg`` is the
    whole sentence ("cannot reach URL: …"), ``detail`` its reason alone (the part after
    the URL), both for people."""

    def __init__(
        self, cause: ConnectCause, url: str, msg: str, *, status: int | None = None,
        detail: str = "", final: bool = False, by_url: Mapping[str, ClientError] | None = None,
        retry_ms: int | None = None,
    ) -> None:
        code = "bad_certificate" if cause is ConnectCause.CERTIFICATE else "connect_failed"
        super().__init__(code, msg, retry_ms, final=final, by_url=by_url)
        self.cause = cause
        self.url = url
        self.status = status
        self.detail = detail


class ConnectionClosed(ClientError):
    """The connection ended for good, or the client was closed (``by_client``).

    ``close_code`` is the WebSocket close code when the server closed it (a
    ``CloseCode`` when it is one of the protocol's), ``close_reason`` the reason the
    server gave with it (its words, for people; None when it gave none). ``code`` is
    ``closed`` when the client was closed, ``disconnected`` when the server ended it,
    ``internal`` when the SDK's own task failed.
    """

    def __init__(
        self, msg: str, *, close_code: int | None = None, by_client: bool = False,
        code: str | None = None, close_reason: str | None = None,
    ) -> None:
        super().__init__(code or ("closed" if by_client else "disconnected"), msg)
        self.close_code = close_code
        self.close_reason = close_reason
        self.by_client = by_client


class TimedOut(ClientError):
    """A request got no answer within ``seconds``; ``request`` is its frame type."""

    def __init__(self, request: str, seconds: float) -> None:
        super().__init__("timeout", f"no answer to {request} within {seconds:g} s")
        self.request = request
        self.seconds = seconds


class LocalRefusal(ClientError):
    """Refused before anything was sent: the call breaks a rule the server would
    enforce. ``code`` is the ErrorCode the server would have answered."""

    code: ErrorCode

    def __init__(self, code: ErrorCode | str, msg: str, retry_ms: int | None = None) -> None:
        super().__init__(ErrorCode(code), msg, retry_ms)
