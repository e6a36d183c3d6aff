"""Who a connection comes from, and the TLS context the server listens with."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterable
from pathlib import Path

from cfm_server.config import ConfigError

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
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        if not forwarded_for or not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            hop = hop.strip()
            try:
                hop = str(ipaddress.ip_address(hop))
            except ValueError:
                return client  # garbage: believe no further than the last good hop
            client = hop
            if not self.trusts(hop):
                return hop
        return client


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2 or newer) from PEM files; ConfigError says what is wrong."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for what, path in (("certificate", cert), ("key", key)):
        if not path.is_file():
            raise ConfigError(f"the TLS {what} file {path} does not exist")
    try:
        context.load_cert_chain(cert, key)
    except PermissionError as exc:
        raise ConfigError(f"cannot read the TLS files {cert}, {key}: {exc.strerror}") from None
    except ssl.SSLError as exc:
        raise ConfigError(
            f"cannot use the TLS certificate {cert} with the key {key}: {exc.reason or exc}"
            " (both must be PEM, and the key must match the certificate)") from None
    return context
