"""Who a connection comes from, and the TLS context the server listens with."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterable
from pathlib import Path

from cfm_common.rules import WS_PATH  # re-exported: server.py takes it from here
from cfm_server.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """Reverse proxies whose ``X-Forwarded-For`` header is believed.

    Behind a TLS-terminating proxy every connection comes from the proxy's address, so
    the per-address connection cap would count all users as one. For a peer that is a
    trusted proxy, the client is the right-most address of ``X-Forwarded-For`` that is
    not itself a trusted proxy (the left part of the header is the client's to forge).
    """

    __slots__ = ("networks",)

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks)

    def trusts(self, address: str) -> bool:
        if not self.networks:
            return False
        ip = _address(address)
        return ip is not None and any(ip in network for network in self.networks)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        if not forwarded_for or not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            ip = _address(hop)
            if ip is None:
                return client  # garbage: believe no further than the last good hop
            client = str(ip)
            if not self.trusts(client):
                return client
        return client


def is_loopback(address: str) -> bool:
    """Whether a client address (as ``_client_ip`` gives it) is this machine's."""
    ip = _address(address)
    return ip is not None and ip.is_loopback


# An IPv6 client holds a whole /64 (a home or a cloud host gets at least that many
# addresses), so limits per address count an IPv6 client by its /64, as an IPv4 client
# by its one address.
IPV6_CLIENT_PREFIX = 64


def address_key(address: str) -> str:
    """What limits per client address count by: an IPv4 address itself, an IPv6 address's
    /64 network (``2001:db8:1:2::/64``); text that is no address, unchanged."""
    ip = _address(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as a proxy or a socket may write it: with a port (``1.2.3.4:5678``,
    ``[2001:db8::1]:80``) or IPv4 mapped into IPv6 (``::ffff:10.0.0.5``, a dual-stack
    listener's view of an IPv4 peer); None if it is none."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def ws_url(host: str, port: int, *, tls: bool, dial: bool = False) -> str:
    """The WebSocket URL of a server listening on ``host:port``. ``dial``: the address
    to connect to from this machine (a wildcard listen address becomes loopback)."""
    if dial:
        host = _LOOPBACK.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"{'wss' if tls else 'ws'}://{host}:{port}{WS_PATH}"


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2 or newer) from PEM files; ConfigError says what is wrong."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for what, path in (("certificate", cert), ("key", key)):
        if not path.is_file():
            raise ConfigError(f"the TLS {what} file {path} does not exist")
    def no_password() -> str:
        # An encrypted key would make OpenSSL prompt on the terminal and hang start-up.
        raise ConfigError(f"the TLS key {key} is encrypted; give cfm serve an unencrypted "
                          f"copy (openssl pkey -in {key} -out plain.pem), readable only by "
                          f"the server's user")

    try:
        context.load_cert_chain(cert, key, password=no_password)
    except ConfigError:
        raise
    except PermissionError as exc:
        raise ConfigError(f"cannot read the TLS files {cert}, {key}: {exc.strerror}") from None
    except ssl.SSLError as exc:
        raise ConfigError(
            f"cannot use the TLS certificate {cert} with the key {key}: {exc.reason or exc}"
            " (both must be PEM, and the key must match the certificate)") from None
    return context

def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9100`` for IPv6); ValueError saying what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be HOST:PORT (e.g. 127.0.0.1:9464), not {text!r}")
    return host.strip("[]"), int(port)
