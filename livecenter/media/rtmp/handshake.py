"""The RTMP handshake, server side (Adobe RTMP 1.0, section 5.2).

C0 (version) and C1 (1536 bytes) come in; S0, S1 and S2 go out at once; C2
comes in and the chunk stream begins. We answer every client with the simple
handshake: S1 is time, four zero bytes and random bytes, S2 echoes C1.

Clients that open with the "complex" handshake (FFmpeg, librtmp and Flash
put a version and an HMAC digest into C1) check the server's digest only
when S1's version field is non-zero (FFmpeg: `serverdata[5] >= 3`; librtmp
falls back to the simple scheme on a zero version), so a zero version field
keeps them on the simple path, as SRS does when it cannot verify C1.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import RtmpProtocolError

RTMP_VERSION = 3  # RTMP 5.2.2: the version this spec defines
HANDSHAKE_PACKET_BYTES = 1536  # C1, S1, C2, S2
_RANDOM_BYTES = HANDSHAKE_PACKET_BYTES - 8


def check_client_version(version: int) -> None:
    """C0. Versions 6 and 8 are RTMPE (encrypted), which we do not serve;
    32 and up are not RTMP at all (RTMP 5.2.2: they tell it from text
    protocols, such as an HTTP request sent to the wrong port)."""
    if version != RTMP_VERSION:
        raise RtmpProtocolError(f"unsupported RTMP version {version}")


def server_handshake_reply(c1: bytes, random_bytes: Callable[[int], bytes], time_ms: int = 0) -> bytes:
    """S0 + S1 + S2 for a client's C1."""
    if len(c1) != HANDSHAKE_PACKET_BYTES:
        raise ValueError(f"C1 must be {HANDSHAKE_PACKET_BYTES} bytes")
    noise = random_bytes(_RANDOM_BYTES)
    if len(noise) != _RANDOM_BYTES:
        raise ValueError(f"random_bytes({_RANDOM_BYTES}) returned {len(noise)} bytes")
    s1 = (time_ms & 0xFFFFFFFF).to_bytes(4, "big") + bytes(4) + noise
    return bytes((RTMP_VERSION,)) + s1 + c1
