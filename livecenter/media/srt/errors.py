"""The two ways an SRT exchange goes wrong (in the manner of h11)."""

from __future__ import annotations


class SrtProtocolError(Exception):
    """The peer sent a datagram we cannot accept.

    `reason` says what, in words fit for a log line. Over UDP one bad
    datagram is not fatal: the listener and the connection drop it and count
    it; only the codecs raise this to them.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SrtUsageError(Exception):
    """Our caller used the API wrongly (a bug on our side, not the peer's)."""
