"""The one exception of the protocol core.

    ProtocolError            bad input from the other side; carries the protocol's code
"""

from __future__ import annotations

from cfm_common.rules import ErrorCode


class ProtocolError(Exception):
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
