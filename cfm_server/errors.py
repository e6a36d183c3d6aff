"""Errors of the server's settings, in a module of their own: the settings (config.py)
and what reads addresses and certificates for them (netaddr.py) both raise them, and
neither may import the other for it (no import cycle inside cfm_server)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting a person has to fix; the message says which and how."""
