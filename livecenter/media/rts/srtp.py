"""SRTP protection for the fast fan-out path (issue 18), sans-IO.

aiortc protects each packet through its DTLS transport's libsrtp session
(`_tx_srtp`, pylibsrtp). The fast path protects a viewer's packets itself,
with the keys that viewer's DTLS handshake exported, in one of two ways:

- `LibsrtpProtector`: libsrtp, through a pylibsrtp `Session` of its own
  whose `srtp_protect` it calls directly (what aiortc does, without the
  coroutine, the RtpPacket object, the copies and the ICE send around it);
- `AesCmProtector` / `AesGcmProtector`: the `cryptography` package's AES
  (OpenSSL) and the stdlib's one-shot HMAC, per RFC 3711 (AES_CM_128_HMAC_SHA1_80)
  and RFC 7714 (AEAD_AES_128_GCM, AEAD_AES_256_GCM).

What is negotiated: aiortc offers (as DTLS client) and prefers (as DTLS
server) SRTP_AEAD_AES_256_GCM, then SRTP_AEAD_AES_128_GCM, then
SRTP_AES128_CM_SHA1_80 (rtcdtlstransport.SRTP_PROFILES, the order OpenSSL's
server choice follows); Chrome offers GCM first too (its
`enable_gcm_crypto_suites` is on by default), so a Chrome viewer gets
AEAD_AES_256_GCM either way. AES_CM_128_HMAC_SHA1_80 is what a peer without
GCM (older libsrtp builds, some SIP gateways) gets.

`protector(profile, key_and_salt)` makes the one that measured faster on
this machine class (bench/rts/sender_micro.py, bench/README.md): libsrtp
through pylibsrtp for every profile (by 1.1 µs a packet for GCM, 7 µs for
AES-CM), unless the native sender is built (`make native`, `native`
below): then its own session for the GCM profiles, which also lets
media.FastTrackSender send a frame in one call.

Only the sending side is here: the fast path never unprotects (RTCP from
viewers still arrives through aiortc's DTLS transport).
"""

from __future__ import annotations

import hmac
import logging
import struct

import pylibsrtp
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

try:
    from pylibsrtp import _binding
except ImportError:  # pragma: no cover - a pylibsrtp without its cffi module
    _binding = None

log = logging.getLogger(__name__)

# The native sender (_rtssend.c, `make native`): one call per viewer per
# frame (media.FastTrackSender) writes, protects (OpenSSL's AES-GCM,
# AES-CM with the system libsrtp2) and sends a frame with one sendmmsg.
# Chosen once, here; without it the fast path is the Python one below.
try:
    from . import _rtssend as native
except ImportError as exc:
    native = None
    log.info("rts fast path: pure Python sender (the native one is not built: %s; `make native`)", exc)
else:
    log.info("rts fast path: native sender (OpenSSL AES-GCM, sendmmsg: %s)", native.__file__)

# The profiles by their DTLS-SRTP names (RFC 5764 4.1.2, RFC 7714 14.2).
AES_CM_128_HMAC_SHA1_80 = "SRTP_AES128_CM_SHA1_80"
AEAD_AES_128_GCM = "SRTP_AEAD_AES_128_GCM"
AEAD_AES_256_GCM = "SRTP_AEAD_AES_256_GCM"
# (master key bytes, master salt bytes) per profile: RFC 3711 8.2, RFC 7714 12.
KEY_SALT_BYTES = {
    AES_CM_128_HMAC_SHA1_80: (16, 14),
    AEAD_AES_128_GCM: (16, 12),
    AEAD_AES_256_GCM: (32, 12),
}
LIBSRTP_PROFILES = {
    AES_CM_128_HMAC_SHA1_80: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    AEAD_AES_128_GCM: pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    AEAD_AES_256_GCM: pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}
# RFC 3711 4.3.1: key derivation labels for SRTP (SRTCP's are 3, 4, 5).
LABEL_RTP_ENCRYPTION = 0x00
LABEL_RTP_AUTHENTICATION = 0x01
LABEL_RTP_SALT = 0x02
AUTH_KEY_BYTES = 20  # RFC 3711 5.2: n_a = 160 bits for HMAC-SHA1
AUTH_TAG_BYTES = 10  # HMAC-SHA1-80
GCM_TAG_BYTES = 16  # RFC 7714 5.1
RTP_HEADER_BYTES = 12
# libsrtp replays a packet sent again (a NACK answered with the original
# packet, not RTX) only with allow_repeat_tx; the window it keeps.
LIBSRTP_WINDOW_PACKETS = 1024
# The SRTP packet index (RFC 3711 3.3.1) is 48 bits: ROC (32) and SEQ (16).
SEQ_MODULO = 1 << 16
ROC_MODULO = 1 << 32
HALF_SEQ = 1 << 15
# A protector serves one viewer's track: its media SSRC and its RTX SSRC.
# The rollover counters it keeps are bounded by this many SSRCs.
MAX_SSRCS_PER_PROTECTOR = 8

_EXTENSION = struct.Struct("!HH")
_ROC = struct.Struct("!L")
_GCM_IV = struct.Struct("!HLLH")


class SrtpError(ValueError):
    """A packet the caller handed in cannot be protected: not RTP, too long,
    one SSRC too many (a bug of the caller)."""


def aes_cm_keystream(key: bytes, iv: bytes, length: int) -> bytes:
    """`length` bytes of AES counter-mode keystream from the 128-bit `iv`
    (RFC 3711 4.1.1: the counter is the low 16 bits of the IV block)."""
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(bytes(length))


def derive_session_key(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
    """RFC 3711 4.3.1 with key_derivation_rate 0 (r = 0, what DTLS-SRTP
    uses): x = (label << 48) XOR master_salt, the PRF is AES-CM keyed with
    the master key from IV x * 2^16. A 12-byte AEAD master salt (RFC 7714
    11) is padded with zeros to 14, as libsrtp does."""
    salt = master_salt.ljust(14, b"\x00")
    x = int.from_bytes(salt, "big") ^ (label << 48)
    return aes_cm_keystream(master_key, (x << 16).to_bytes(16, "big"), length)


def rtp_header_bytes(packet: bytes | bytearray | memoryview) -> int:
    """The length of the packet's RTP header: fixed part, CSRCs, extension."""
    if len(packet) < RTP_HEADER_BYTES or packet[0] >> 6 != 2:
        raise SrtpError("not an RTP version 2 packet")
    length = RTP_HEADER_BYTES + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        if len(packet) < length + 4:
            raise SrtpError("RTP header extension runs past the packet")
        length += 4 + 4 * _EXTENSION.unpack_from(packet, length)[1]
    if length > len(packet):
        raise SrtpError("RTP header runs past the packet")
    return length


class _RolloverCounters:
    """The sender's rollover counter per SSRC (RFC 3711 3.3.1): a sequence
    number far below the highest sent is the next cycle, one far above it is
    a packet of the previous cycle sent again (a NACK answered with the
    original packet)."""

    __slots__ = ("_highest",)

    def __init__(self) -> None:
        self._highest: dict[int, tuple[int, int]] = {}  # ssrc -> (roc, highest seq)

    def roc_of(self, ssrc: int, seq: int) -> int:
        state = self._highest.get(ssrc)
        if state is None:
            if len(self._highest) >= MAX_SSRCS_PER_PROTECTOR:
                raise SrtpError(f"more than MAX_SSRCS_PER_PROTECTOR ({MAX_SSRCS_PER_PROTECTOR}) SSRCs")
            self._highest[ssrc] = (0, seq)
            return 0
        roc, highest = state
        if seq > highest:
            if seq - highest > HALF_SEQ:
                return (roc - 1) % ROC_MODULO  # an old packet again
            self._highest[ssrc] = (roc, seq)
            return roc
        if highest - seq > HALF_SEQ:
            roc = (roc + 1) % ROC_MODULO
            self._highest[ssrc] = (roc, seq)
        return roc


class AesCmProtector:
    """AES_CM_128_HMAC_SHA1_80 (RFC 3711 4.1.1, 4.2.1) with `cryptography`."""

    __slots__ = ("_key", "_salt", "_auth_key", "_rocs")

    def __init__(self, key_and_salt: bytes) -> None:
        key_bytes, salt_bytes = KEY_SALT_BYTES[AES_CM_128_HMAC_SHA1_80]
        if len(key_and_salt) != key_bytes + salt_bytes:
            raise ValueError(f"AES_CM_128_HMAC_SHA1_80 takes {key_bytes + salt_bytes} bytes of key and salt")
        master_key, master_salt = key_and_salt[:key_bytes], key_and_salt[key_bytes:]
        self._key = derive_session_key(master_key, master_salt, LABEL_RTP_ENCRYPTION, key_bytes)
        self._salt = int.from_bytes(derive_session_key(master_key, master_salt, LABEL_RTP_SALT, salt_bytes), "big")
        self._auth_key = derive_session_key(master_key, master_salt, LABEL_RTP_AUTHENTICATION, AUTH_KEY_BYTES)
        self._rocs = _RolloverCounters()

    def protect(self, packet: bytes | bytearray | memoryview) -> bytes:
        header = rtp_header_bytes(packet)
        seq, ssrc = struct.unpack_from("!2xH4xL", packet)
        roc = self._rocs.roc_of(ssrc, seq)
        # RFC 3711 4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)
        iv = ((self._salt << 16) ^ (ssrc << 64) ^ (((roc << 16) | seq) << 16)).to_bytes(16, "big")
        encryptor = Cipher(algorithms.AES(self._key), modes.CTR(iv)).encryptor()
        protected = bytes(packet[:header]) + encryptor.update(packet[header:])
        # RFC 3711 4.2: the tag is over the packet and the ROC.
        tag = hmac.digest(self._auth_key, protected + _ROC.pack(roc), "sha1")
        return protected + tag[:AUTH_TAG_BYTES]


class AesGcmProtector:
    """AEAD_AES_128_GCM and AEAD_AES_256_GCM (RFC 7714) with `cryptography`:
    the header is the associated data (8.2), the 12-byte IV is
    (0x0000 || SSRC || ROC || SEQ) XOR the session salt (8.1)."""

    __slots__ = ("_aead", "_salt", "_rocs")

    def __init__(self, profile: str, key_and_salt: bytes) -> None:
        key_bytes, salt_bytes = KEY_SALT_BYTES[profile]
        if profile not in (AEAD_AES_128_GCM, AEAD_AES_256_GCM) or len(key_and_salt) != key_bytes + salt_bytes:
            raise ValueError(f"{profile} takes {key_bytes + salt_bytes} bytes of key and salt")
        master_key, master_salt = key_and_salt[:key_bytes], key_and_salt[key_bytes:]
        key = derive_session_key(master_key, master_salt, LABEL_RTP_ENCRYPTION, key_bytes)
        self._salt = int.from_bytes(derive_session_key(master_key, master_salt, LABEL_RTP_SALT, salt_bytes), "big")
        self._aead = AESGCM(key)
        self._rocs = _RolloverCounters()

    def protect(self, packet: bytes | bytearray | memoryview) -> bytes:
        header = rtp_header_bytes(packet)
        seq, ssrc = struct.unpack_from("!2xH4xL", packet)
        roc = self._rocs.roc_of(ssrc, seq)
        iv = (int.from_bytes(_GCM_IV.pack(0, ssrc, roc, seq), "big") ^ self._salt).to_bytes(12, "big")
        aad = bytes(packet[:header])
        return aad + self._aead.encrypt(iv, bytes(packet[header:]), aad)


class LibsrtpProtector:
    """libsrtp through pylibsrtp, with a session of its own (as aiortc's
    `_tx_srtp`: any outbound SSRC, repeats allowed for NACK answers).

    pylibsrtp's `Session.protect` wants bytes (a copy of the writer's
    buffer), allocates an `int *` and copies in and out on every call; here
    libsrtp's `srtp_protect` is called on the session's own buffer with one
    `int *` kept, which saves about a third of the cost (bench/README.md).
    That uses pylibsrtp's private names (LIBSRTP_SESSION_*); where they are
    missing (`missing_libsrtp_internals`), `Session.protect` is used."""

    __slots__ = ("_session", "_context", "_cdata", "_buffer", "_length", "_max_packet_bytes", "_direct")

    def __init__(self, profile: str, key_and_salt: bytes) -> None:
        outbound = pylibsrtp.Policy.SSRC_ANY_OUTBOUND
        policy = pylibsrtp.Policy(key=bytes(key_and_salt), ssrc_type=outbound, srtp_profile=LIBSRTP_PROFILES[profile])
        policy.allow_repeat_tx = True
        policy.window_size = LIBSRTP_WINDOW_PACKETS
        self._session = pylibsrtp.Session(policy)
        self._direct = not missing_libsrtp_internals(self._session)
        if self._direct:
            self._context = getattr(self._session, LIBSRTP_SESSION_CONTEXT)[0]
            self._cdata = getattr(self._session, LIBSRTP_SESSION_CDATA)
            self._buffer = getattr(self._session, LIBSRTP_SESSION_BUFFER)
            self._length = _binding.ffi.new("int *")
            self._max_packet_bytes = len(self._cdata) - pylibsrtp.SRTP_MAX_TRAILER_LEN

    def protect(self, packet: bytes | bytearray | memoryview) -> bytes:
        if not self._direct:
            return self._session.protect(bytes(packet))
        length = len(packet)
        if length > self._max_packet_bytes:
            raise SrtpError(f"RTP packet of {length} bytes is over libsrtp's {self._max_packet_bytes}")
        self._buffer[0:length] = packet
        self._length[0] = length
        status = _binding.lib.srtp_protect(self._context, self._cdata, self._length)
        if status:
            raise SrtpError(f"libsrtp refused the packet (srtp_err_status_t {status})")
        return self._buffer[0 : self._length[0]]


# pylibsrtp 1.0.0's (constraints.txt) Session: its libsrtp context (a
# `srtp_t *`), its packet buffer (cdata) and that buffer as a Python buffer.
LIBSRTP_SESSION_CONTEXT = "_srtp"
LIBSRTP_SESSION_CDATA = "_cdata"
LIBSRTP_SESSION_BUFFER = "_buffer"


def missing_libsrtp_internals(session: pylibsrtp.Session) -> list[str]:
    """What LibsrtpProtector's direct call needs of pylibsrtp and lacks,
    each naming the attribute (empty when all is there)."""
    missing = []
    if _binding is None or not hasattr(_binding, "lib") or not hasattr(_binding.lib, "srtp_protect"):
        missing.append("pylibsrtp._binding.lib.srtp_protect is gone")
    for name in (LIBSRTP_SESSION_CONTEXT, LIBSRTP_SESSION_CDATA, LIBSRTP_SESSION_BUFFER):
        if not hasattr(session, name):
            missing.append(f"pylibsrtp.Session instance attribute {name} is gone")
    if not hasattr(pylibsrtp, "SRTP_MAX_TRAILER_LEN"):
        missing.append("pylibsrtp.SRTP_MAX_TRAILER_LEN is gone")
    return missing


NATIVE_PROFILES = (
    {
        AES_CM_128_HMAC_SHA1_80: native.PROFILE_AES128_CM_SHA1_80,
        AEAD_AES_128_GCM: native.PROFILE_AEAD_AES_128_GCM,
        AEAD_AES_256_GCM: native.PROFILE_AEAD_AES_256_GCM,
    }
    if native is not None
    else {}
)


def native_protector(profile: str, key_and_salt: bytes):
    """The native sender's SRTP session (`protect(rtp_packet) -> srtp_packet`,
    and what `native.send_frame` protects with), for any outbound SSRC with
    repeats allowed, as LibsrtpProtector's: for the GCM profiles OpenSSL's
    AES-GCM with the rollover counters of AesGcmProtector; else the system
    libsrtp2, never pylibsrtp's bundled copy (a session of one must never
    reach the other)."""
    if native is None:
        raise ValueError("the native sender is not built (`make native`)")
    key_bytes, salt_bytes = KEY_SALT_BYTES[profile]
    if len(key_and_salt) != key_bytes + salt_bytes:
        raise ValueError(f"{profile} takes {key_bytes + salt_bytes} bytes of key and salt")
    return native.Srtp(NATIVE_PROFILES[profile], bytes(key_and_salt), LIBSRTP_WINDOW_PACKETS)


def native_session(protect):
    """The native libsrtp2 session behind a protector's bound `protect`, or
    None (another implementation, or no native sender)."""
    session = getattr(protect, "__self__", None)
    return session if native is not None and isinstance(session, native.Srtp) else None


def native_destination(transport, address: tuple) -> tuple[int, bytes]:
    """The fd of an asyncio datagram transport's socket and the packed
    sockaddr of `address` for `native.send_frame`, or (-1, b"") where the
    transport has no socket or the address is not numeric (the Python path)."""
    sock = transport.get_extra_info("socket") if hasattr(transport, "get_extra_info") else None
    try:
        return sock.fileno(), native.sockaddr(address[0], address[1])
    except (AttributeError, OSError, ValueError, TypeError, IndexError):
        return -1, b""


# Which implementation `protector` makes per profile: the faster one as
# measured by bench/rts/sender_micro.py (bench/README.md has the figures).
# The native session, where built, for the GCM profiles (what Chrome and
# aiortc negotiate): it lets the native sender send a frame in one call.
# Its AES-CM is Debian's libsrtp2, which hashes with NSS, ~3 µs a packet
# more than pylibsrtp's OpenSSL: AES-CM stays on the Python path.
FASTEST = {
    AES_CM_128_HMAC_SHA1_80: "libsrtp",
    AEAD_AES_128_GCM: "native" if native is not None else "libsrtp",
    AEAD_AES_256_GCM: "native" if native is not None else "libsrtp",
}


def protector(profile: str, key_and_salt: bytes, implementation: str | None = None):
    """A protector (`protect(rtp_packet) -> srtp_packet`) for the profile
    and the master key and salt a DTLS handshake exported (RFC 5764 4.2),
    by default the implementation that measured faster (FASTEST)."""
    if profile not in KEY_SALT_BYTES:
        raise ValueError(f"unknown SRTP profile {profile!r}")
    implementation = implementation or FASTEST[profile]
    if implementation == "native":
        return native_protector(profile, key_and_salt)
    if implementation == "libsrtp":
        return LibsrtpProtector(profile, key_and_salt)
    if implementation != "cryptography":
        raise ValueError(f"unknown SRTP implementation {implementation!r}")
    if profile == AES_CM_128_HMAC_SHA1_80:
        return AesCmProtector(key_and_salt)
    return AesGcmProtector(profile, key_and_salt)
