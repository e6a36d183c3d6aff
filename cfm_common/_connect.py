"""Opening a session: a WebSocket to one URL, ``hello``, and its ``welcome`` — or a
:class:`~cfm_common.errors.ClientError` that says why not, in words a person can act on
and with a cause a program can test (:class:`~cfm_common.errors.ConnectCause`).

The I/O of signing in, nothing more: which URL to try and when is
:mod:`cfm_common._reconnect`, what a session does once open is
:mod:`cfm_common._core`.
"""

from __future__ import annotations

import asyncio
import errno
import ssl as ssl_module
from typing import Any

from cfm_common import SUBPROTOCOL, codec, rules
from cfm_common import frames as f
from cfm_common.errors import (
    ClientError,
    ConnectCause,
    ConnectFailed,
    ProtocolError,
    ServerRefused,
)
from cfm_common.servers import check_url

# A server frame can hold a history page of 200 long messages; the server's own limit
# (limits.max_frame) is about what clients send.
MAX_INCOMING = 16 * 1024 * 1024


def bad_url_message(url: str, exc: Exception) -> str:
    if url.split(":", 1)[0].lower() in ("http", "https"):
        return check_url(url) or str(exc)
    return f"bad server URL {url!r}: {exc} (want ws://host:port/ws or wss://…)"


def status_message(url: str, status: int) -> str:
    if status == 429:
        return f"refused: too many connections from your address ({url} answered HTTP 429)"
    if status == 404:
        return f"{url} answered HTTP 404: no cfm server at this path (cfm listens at /ws)"
    if status in (400, 426):  # what a WebSocket server answers to a subprotocol it lacks
        return (f"{url} refused the WebSocket handshake (HTTP {status}): it does not speak"
                f" {SUBPROTOCOL} (is it a cfm server?)")
    return f"cannot reach {url}: it answered HTTP {status} instead of a WebSocket handshake"


def retry_after_ms(status: int, headers: Any) -> int | None:
    """A 503's or 429's ``Retry-After`` in delay-seconds, as ms (an HTTP date, or
    nonsense, is no hint)."""
    value = headers.get("Retry-After") if status in (429, 503) else None
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip()) * 1000


def status_is_final(status: int) -> bool:
    """A person must change something: a 4xx other than "too many" or "too slow"."""
    return 400 <= status < 500 and status not in (408, 429)


def connect_cause(url: str, exc: BaseException) -> ConnectCause:
    """Which kind of failure a socket-level exception of connecting is."""
    import socket

    from websockets.exceptions import InvalidMessage

    if isinstance(exc, socket.gaierror):
        return ConnectCause.DNS
    if isinstance(exc, ConnectionRefusedError):
        return ConnectCause.REFUSED
    # asyncio's create_connection tries every address; when all refuse it raises a
    # plain OSError whose errno is ECONNREFUSED (no ConnectionRefusedError).
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return ConnectCause.REFUSED
    if isinstance(exc, TimeoutError):
        return ConnectCause.TIMEOUT
    if isinstance(exc, ssl_module.SSLError) or (
            url.lower().startswith("wss:") and isinstance(
                exc, ConnectionResetError | EOFError)):
        return ConnectCause.TLS
    if isinstance(exc, InvalidMessage):  # no HTTP answer: TLS, or another protocol
        return ConnectCause.NO_HANDSHAKE
    return ConnectCause.NETWORK


def connect_failure(url: str, exc: BaseException) -> str:
    """Why connecting failed, never an empty string (a reset has no text of its own).

    A plain (ws://) server answers a TLS handshake by closing the connection or with
    bytes that are not TLS: for a wss:// URL that is what to say, with the fix.
    """
    reason = str(exc) or ("the connection was reset" if isinstance(exc, ConnectionResetError)
                          else type(exc).__name__)
    if url.lower().startswith("wss:") and isinstance(
            exc, ssl_module.SSLError | ConnectionResetError | EOFError):
        plain = "ws:" + url[len("wss:"):]
        return (f"the TLS handshake failed ({reason}): the server may not use TLS, "
                f"try {plain}")
    return reason


async def open_session(url: str, hello: f.Hello, *, timeout: float,
                       ssl: ssl_module.SSLContext | None = None) -> tuple[Any, f.Welcome]:
    """Open a WebSocket, send ``hello``, wait for ``welcome``; ClientError if not."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import (
        ConnectionClosed as WsClosed,
    )
    from websockets.exceptions import (
        InvalidHandshake,
        InvalidStatus,
        InvalidURI,
        NegotiationError,
    )

    tls: dict[str, Any] = {}
    if ssl is not None and url.lower().startswith("wss:"):
        tls["ssl"] = ssl
    try:
        ws = await connect(
            url, subprotocols=[SUBPROTOCOL], compression=None, max_size=MAX_INCOMING,
            open_timeout=timeout, close_timeout=3, **tls,
        )
    except InvalidURI as exc:
        raise ConnectFailed(ConnectCause.BAD_URL, url, bad_url_message(url, exc),
                            final=True) from exc
    except InvalidStatus as exc:
        status = exc.response.status_code
        # 400/426: what a WebSocket server answers to a subprotocol it lacks.
        cause = ConnectCause.NOT_CFM if status in (400, 426) else ConnectCause.HTTP_STATUS
        raise ConnectFailed(cause, url, status_message(url, status), status=status,
                            final=status_is_final(status),
                            retry_ms=retry_after_ms(status, exc.response.headers)) from exc
    except NegotiationError as exc:
        raise ConnectFailed(ConnectCause.NOT_CFM, url, f"{url} does not speak {SUBPROTOCOL}"
                            f" (is it a cfm server?): {exc}", final=True) from exc
    except ssl_module.SSLCertVerificationError as exc:
        reason = (f"its TLS certificate is not trusted ({exc.verify_message}); for a"
                  " private CA set SSL_CERT_FILE to its PEM file")
        raise ConnectFailed(ConnectCause.CERTIFICATE, url, f"cannot reach {url}: {reason}",
                            detail=reason) from exc
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        reason = connect_failure(url, exc)
        raise ConnectFailed(connect_cause(url, exc), url, f"cannot reach {url}: {reason}",
                            detail=reason) from exc
    try:
        if ws.subprotocol != SUBPROTOCOL:
            raise ConnectFailed(ConnectCause.NOT_CFM, url, f"{url} does not speak"
                                f" {SUBPROTOCOL} (is it a cfm server?)", final=True)
        await ws.send(codec.encode(hello))
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancel (close()) that comes in the turn the welcome arrives.
        async with asyncio.timeout(timeout):
            data = await ws.recv()
        frame = codec.decode_server(data) if isinstance(data, bytes) else None
        if isinstance(frame, f.Error):
            # A refusal of who we are (bad_token, name_taken …) is final: every node says
            # the same, and trying again cannot mend it.
            raise ServerRefused(frame.code, frame.msg, frame.retry_ms, ref=frame.ref,
                                final=frame.code in rules.FINAL_HELLO_REFUSALS)
        if not isinstance(frame, f.Welcome):
            raise ConnectFailed(ConnectCause.NOT_CFM, url,
                                "the server did not answer hello")
        return ws, frame
    except ClientError:
        await ws.close()
        raise
    except TimeoutError as exc:
        await ws.close()
        raise ConnectFailed(ConnectCause.TIMEOUT, url,
                            f"sign-in to {url} failed: no welcome in time") from exc
    except (WsClosed, OSError, ProtocolError) as exc:
        await ws.close()
        cause = ConnectCause.NOT_CFM if isinstance(exc, ProtocolError) \
            else ConnectCause.NETWORK
        raise ConnectFailed(cause, url, f"sign-in to {url} failed: {exc!r}") from exc
    except BaseException:  # cancelled mid-sign-in: drop the socket without waiting
        ws.transport.abort()
        raise

