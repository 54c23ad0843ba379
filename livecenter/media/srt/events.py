"""What the SRT listener and its connections tell their caller. Past tense:
each one has happened (or been asked for) already."""

from __future__ import annotations

from dataclasses import dataclass

Address = tuple  # (host, port) as asyncio gives it; the core only compares it


@dataclass(frozen=True, slots=True)
class SrtConnectionRequested:
    """A caller finished its handshake with a good cookie and nothing the
    protocol refuses. Answer with `SrtListener.accept(event, ...)` (which
    checks the passphrase against the caller's key material) or
    `SrtListener.reject(event, reason)`, after asking the policy about
    `stream_id`."""

    request_id: int
    peer: Address
    peer_socket_id: int
    stream_id: str | None
    encrypted: bool  # the caller sent key material (it has a passphrase)
    key_bytes: int  # 16, 24 or 32 if encrypted, else 0
    peer_latency_ms: int  # the caller's sender TSBPD delay (its `latency`)
    peer_srt_version: int  # 0x010503 for 1.5.3


@dataclass(frozen=True, slots=True)
class SrtConnectionRejected:
    """The listener itself refused a caller (not when you call `reject`):
    a protocol mismatch, a limit, or a passphrase mismatch found by
    `accept`. `request_id` is 0 if no SrtConnectionRequested came first."""

    request_id: int
    peer: Address
    stream_id: str | None
    reason: int  # SrtRejectReason or a user-range code
    detail: str  # for the log line


@dataclass(frozen=True, slots=True)
class SrtCallAccepted:
    """Our call (`SrtCaller`) was answered: the connection is open and
    `SrtCaller.send` sends on it."""

    socket_id: int
    peer_socket_id: int
    send_latency_ms: int  # the listener's receive latency: our packets play this late
    receive_latency_ms: int
    encrypted: bool
    peer_srt_version: int


@dataclass(frozen=True, slots=True)
class SrtCallRejected:
    """Our call failed: the listener refused it, its answer was one we
    cannot take, or nothing came within the connect timeout (TIMEOUT).
    `reason` is libsrt's code for it, as its callers report it (1403 for
    a listener's "forbidden")."""

    reason: int  # SrtRejectReason or a user-range code
    detail: str  # for the log line


@dataclass(frozen=True, slots=True)
class SrtDataReceived:
    """A payload at its TSBPD release time, in sequence order."""

    socket_id: int
    seq: int
    timestamp_us: int  # the sender's timestamp, extended past 32 bits
    payload: bytes


@dataclass(frozen=True, slots=True)
class SrtPacketsDropped:
    """`count` packets from `first_seq` on will never come: too late to
    play, dropped by the sender, or undecryptable. The stream has a gap."""

    socket_id: int
    first_seq: int
    count: int


@dataclass(frozen=True, slots=True)
class SrtConnectionClosed:
    """The connection is over: the peer shut it down or went silent."""

    socket_id: int
    reason: str


SrtEvent = (
    SrtConnectionRequested
    | SrtConnectionRejected
    | SrtCallAccepted
    | SrtCallRejected
    | SrtDataReceived
    | SrtPacketsDropped
    | SrtConnectionClosed
)
