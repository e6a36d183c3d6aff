"""Invite codes: how a server whose ``registration`` is ``invite`` lets new people in.

A code is ``<nonce>-<expires>-<uses>-<mac>``: a random nonce, the expiry (Unix seconds
in hex, 0 for never), how many sign-ups it allows (hex, 0 for any number) and an
HMAC-SHA256 of the rest under the server's secret key (``<data dir>/invite.key``, made
on first use, mode 0600). The server needs nothing stored to check a code, so
``cfm admin invite`` works while the server runs; only the uses of each nonce are
counted in the store.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

KEY_FILE = "invite.key"
# Nonces of codes withdrawn before their time (cfm admin revoke-invite), one a line.
REVOKED_FILE = "invite.revoked"
MAC_HEX = 20  # 80 bits of the HMAC: forging one takes 2**80 tries
NOT_A_CODE = "that is not an invite code (one looks like 6925b5f1bca86c9b-6b124678-1-ff59…)"


class InviteError(Exception):
    """A code that lets nobody in; the message says why, for the person holding it."""


@dataclass(frozen=True, slots=True)
class Invite:
    nonce: str
    expires: int  # Unix seconds; 0: never
    uses: int  # sign-ups it allows; 0: any number


def load_key(data_dir: Path, *, create: bool) -> bytes | None:
    """The server's invite key; made (mode 0600) when ``create`` and there is none."""
    path = data_dir / KEY_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        if not create:
            return None
        data_dir.mkdir(parents=True, exist_ok=True)
        text = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text + "\n")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise InviteError(f"{path} does not hold an invite key; delete it to make a new one "
                          f"(every invite made so far stops working)")
    return key


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, f"cfm-invite:{body}".encode(), hashlib.sha256).hexdigest()[:MAC_HEX]


def make_code(key: bytes, *, uses: int = 1, expires: int = 0) -> str:
    if uses < 0 or expires < 0:
        raise ValueError("uses and expires must be >= 0")
    body = f"{secrets.token_hex(8)}-{expires:x}-{uses:x}"
    return f"{body}-{_mac(key, body)}"


def parse_code(key: bytes, code: str, now: float) -> Invite:
    """The invite a code stands for; InviteError if it is malformed, forged or expired."""
    parts = code.strip().lower().split("-")
    if len(parts) != 4:
        raise InviteError(NOT_A_CODE)
    nonce, expires_hex, uses_hex, mac = parts
    try:
        expires, uses = int(expires_hex, 16), int(uses_hex, 16)
    except ValueError:
        raise InviteError(NOT_A_CODE) from None
    if not hmac.compare_digest(mac, _mac(key, f"{nonce}-{expires_hex}-{uses_hex}")):
        raise InviteError("that invite code is not from this server (check for typos)")
    if expires and now >= expires:
        raise InviteError("that invite code has expired; ask for a new one")
    return Invite(nonce, expires, uses)


def read_revoked(path: Path) -> frozenset[str]:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return frozenset()
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def revoke(data_dir: Path, nonce: str) -> bool:
    """Add ``nonce`` to the data directory's withdrawn codes (0600); False if it was."""
    path = data_dir / REVOKED_FILE
    if nonce in read_revoked(path):
        return False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as fh:
        fh.write(nonce + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return True


class InviteBook:
    """Checks codes against the key and counts each nonce's sign-ups.

    ``revoked``: the file of withdrawn nonces, read again whenever it changed, so that
    ``cfm admin revoke-invite`` takes effect on a running server at the next sign-up.
    """

    def __init__(self, key: bytes, used: dict[str, int], revoked: Path | None = None) -> None:
        self.key = key
        self.used = used
        self._revoked_path = revoked
        self._revoked_stamp: tuple[int, int] | None = None
        self._revoked: frozenset[str] = frozenset()

    def admit(self, code: str, now: float) -> Invite:
        invite = parse_code(self.key, code, now)
        if invite.nonce in self.revoked():
            raise InviteError("that invite code was withdrawn; ask for a new one")
        if invite.uses and self.used.get(invite.nonce, 0) >= invite.uses:
            raise InviteError("that invite code has been used up; ask for a new one")
        return invite

    def revoked(self) -> frozenset[str]:
        path = self._revoked_path
        if path is None:
            return self._revoked
        try:
            info = path.stat()
            stamp = (info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = None
        if stamp != self._revoked_stamp:
            self._revoked_stamp = stamp
            self._revoked = read_revoked(path) if stamp is not None else frozenset()
        return self._revoked

    def spend(self, invite: Invite) -> int:
        """Count one sign-up with ``invite``; the nonce's new total."""
        total = self.used.get(invite.nonce, 0) + 1
        self.used[invite.nonce] = total
        return total

    def refund(self, invite: Invite) -> None:
        """Take back a use whose sign-up could not be stored (its write was lost too)."""
        total = self.used.get(invite.nonce, 0) - 1
        if total > 0:
            self.used[invite.nonce] = total
        else:
            self.used.pop(invite.nonce, None)
