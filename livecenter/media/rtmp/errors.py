"""The two ways an RTMP exchange goes wrong (in the manner of h11)."""

from __future__ import annotations


class RtmpProtocolError(Exception):
    """The peer sent bytes we cannot accept, or broke one of our limits.

    `reason` says what, in words fit for a log line. The connection that
    raised it is in an ERROR state from then on and raises it again on every
    later call: the only thing left to do is close the socket.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RtmpUsageError(Exception):
    """Our caller used the API wrongly (a bug on our side, not the peer's)."""
