"""SRT encryption (draft-sharabayko-srt section 6, libsrt's haicrypt).

The sender draws a Stream Encrypting Key (SEK) and a 16-byte salt, derives
a Key Encrypting Key (KEK) from the passphrase with PBKDF2-HMAC-SHA1 over
the salt's last 8 bytes, 2048 rounds, and sends the SEK wrapped with the
KEK (AES key wrap, RFC 3394) in a key material message (KMREQ). Payloads
are AES-CTR with an IV built from the salt and the packet's sequence
number. Two keys, even and odd, let the sender refresh its key without a
gap: a data packet's KK field says which one encrypted it.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from .errors import SrtProtocolError
from .packets import SrtKeyFlag

# haicrypt: HAICRYPT_PBKDF2_ITER_CNT, HAICRYPT_PBKDF2_SALT_LEN, HAICRYPT_SALT_SZ.
PBKDF2_ITERATIONS = 2048
PBKDF2_SALT_BYTES = 8
SALT_BYTES = 16
KEY_SIZES_BYTES = (16, 24, 32)
# libsrt's SRTO_PASSPHRASE accepts 10 to 79 characters (HAICRYPT_SECRET_MAX_SZ).
MIN_PASSPHRASE_CHARS = 10
MAX_PASSPHRASE_CHARS = 79
KEY_WRAP_OVERHEAD_BYTES = 8

_KM_HEADER = struct.Struct(">BHBIBBBBHBB")
KM_HEADER_BYTES = _KM_HEADER.size
# 3.2.2: version 1, packet type 2 (KMmsg), signature "HAI" as a PnP vendor ID.
_KM_VERSION = 1
_KM_PACKET_TYPE = 2
_KM_SIGNATURE = 0x2029


class SrtCipher(IntEnum):
    NONE = 0
    AES_ECB = 1
    AES_CTR = 2
    AES_CBC = 3
    AES_GCM = 4


class SrtKmState(IntEnum):
    """A KMRSP that is one word instead of key material: the state of the
    responder's decryption (libsrt's SRT_KM_STATE)."""

    UNSECURED = 0
    SECURING = 1
    SECURED = 2
    NOSECRET = 3
    BADSECRET = 4


# 3.2.2 Stream Encapsulation: 2 is MPEG-TS/SRT, what libsrt sends.
STREAM_ENCAPSULATION_SRT = 2


@dataclass(frozen=True, slots=True)
class SrtKeyMaterial:
    """A key material message (3.2.2): the wrapped SEK(s), even first."""

    keys: SrtKeyFlag  # EVEN, ODD or BOTH
    key_bytes: int  # the size of one SEK: 16, 24 or 32
    salt: bytes
    wrapped: bytes
    cipher: SrtCipher = SrtCipher.AES_CTR
    authentication: int = 0
    stream_encapsulation: int = STREAM_ENCAPSULATION_SRT
    key_encryption_key_index: int = 0

    def __bytes__(self) -> bytes:
        header = _KM_HEADER.pack(
            _KM_VERSION << 4 | _KM_PACKET_TYPE,
            _KM_SIGNATURE,
            self.keys,
            self.key_encryption_key_index,
            self.cipher,
            self.authentication,
            self.stream_encapsulation,
            0,
            0,
            len(self.salt) // 4,
            self.key_bytes // 4,
        )
        return header + self.salt + self.wrapped


def parse_key_material(data: bytes) -> SrtKeyMaterial:
    """A KMREQ (or a KMRSP that echoes it) into its fields."""
    if len(data) < KM_HEADER_BYTES:
        raise SrtProtocolError(f"key material of {len(data)} bytes is shorter than {KM_HEADER_BYTES}")
    (version_type, signature, kk, keki, cipher, auth, se, _, _, salt_words, key_words) = _KM_HEADER.unpack_from(data)
    if version_type != (_KM_VERSION << 4 | _KM_PACKET_TYPE) or signature != _KM_SIGNATURE:
        raise SrtProtocolError("key material has a wrong version, type or signature")
    keys = kk & 0b11
    if keys == SrtKeyFlag.NONE:
        raise SrtProtocolError("key material carries no key")
    if cipher != SrtCipher.AES_CTR:
        raise SrtProtocolError(f"key material cipher {cipher} is not AES-CTR (2)")
    key_bytes = key_words * 4
    if key_bytes not in KEY_SIZES_BYTES:
        raise SrtProtocolError(f"key material key of {key_bytes} bytes is not 16, 24 or 32")
    if salt_words * 4 != SALT_BYTES:
        raise SrtProtocolError(f"key material salt of {salt_words * 4} bytes is not {SALT_BYTES}")
    count = 2 if keys == SrtKeyFlag.BOTH else 1
    wrapped_bytes = KEY_WRAP_OVERHEAD_BYTES + count * key_bytes
    end = KM_HEADER_BYTES + SALT_BYTES + wrapped_bytes
    if len(data) < end:
        raise SrtProtocolError(f"key material of {len(data)} bytes is shorter than {end}")
    return SrtKeyMaterial(
        keys=SrtKeyFlag(keys),
        key_bytes=key_bytes,
        salt=bytes(data[KM_HEADER_BYTES : KM_HEADER_BYTES + SALT_BYTES]),
        wrapped=bytes(data[KM_HEADER_BYTES + SALT_BYTES : end]),
        cipher=SrtCipher(cipher),
        authentication=auth,
        stream_encapsulation=se,
        key_encryption_key_index=keki,
    )


def km_state_word(state: SrtKmState) -> bytes:
    """A KMRSP that reports a state. libsrt writes it as a host-order word
    that its control-packet swap leaves little-endian on x86; every libsrt
    peer reads it back the same way (gosrt does too)."""
    return struct.pack("<I", state)


def parse_km_state(data: bytes) -> SrtKmState | None:
    """The state in a one-word KMRSP, or None if it is key material."""
    if len(data) != 4:
        return None
    value = struct.unpack("<I", data)[0]
    if value not in SrtKmState._value2member_map_:
        value = struct.unpack(">I", data)[0]  # a big-endian peer
    return SrtKmState(value) if value in SrtKmState._value2member_map_ else None


def derive_kek(passphrase: str, salt: bytes, key_bytes: int) -> bytes:
    """KEK = PBKDF2-HMAC-SHA1(passphrase, last 8 bytes of salt, 2048, key size)."""
    return hashlib.pbkdf2_hmac(
        "sha1", passphrase.encode(), salt[-PBKDF2_SALT_BYTES:], PBKDF2_ITERATIONS, dklen=key_bytes
    )


def ctr_iv(salt: bytes, seq: int) -> bytes:
    """haicrypt's hcrypt_SetCtrIV: the packet index (the sequence number,
    big-endian) at bytes 10-13, XORed with the salt's first 14 bytes; the
    last two bytes are the block counter, from 0."""
    iv = bytearray(salt[:14]) + b"\x00\x00"
    for i, byte in enumerate(struct.pack(">I", seq)):
        iv[10 + i] ^= byte
    return bytes(iv)


def aes_ctr(key: bytes, salt: bytes, seq: int, payload: bytes) -> bytes:
    """Encrypt or decrypt (the same in CTR mode) one data packet's payload."""
    transform = Cipher(algorithms.AES(key), modes.CTR(ctr_iv(salt, seq))).encryptor()
    return transform.update(payload) + transform.finalize()


def wrap_key_material(
    passphrase: str, even: bytes | None, odd: bytes | None, salt: bytes | None = None
) -> SrtKeyMaterial:
    """What a sender puts in its KMREQ for these keys (one or both)."""
    keys = [k for k in (even, odd) if k is not None]
    if not keys or len({len(k) for k in keys}) != 1 or len(keys[0]) not in KEY_SIZES_BYTES:
        raise ValueError("give an even key, an odd key or both, of one size: 16, 24 or 32 bytes")
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    flag = SrtKeyFlag.BOTH if len(keys) == 2 else (SrtKeyFlag.EVEN if even is not None else SrtKeyFlag.ODD)
    kek = derive_kek(passphrase, salt, len(keys[0]))
    return SrtKeyMaterial(flag, len(keys[0]), salt, aes_key_wrap(kek, b"".join(keys)))


class SrtDecryptionFailed(SrtProtocolError):
    """The key material does not open with our passphrase (BADSECRET)."""


@dataclass(slots=True)
class SrtCryptoContext:
    """The keys of one direction of a connection, as the KMREQs set them."""

    passphrase: str
    even: tuple[bytes, bytes] | None = None  # (salt, SEK)
    odd: tuple[bytes, bytes] | None = None
    current: SrtKeyFlag = SrtKeyFlag.EVEN  # the key we send with

    def install(self, material: SrtKeyMaterial) -> None:
        """Unwrap and keep the key(s) of a KMREQ; `SrtDecryptionFailed` if
        the passphrase does not open them."""
        kek = derive_kek(self.passphrase, material.salt, material.key_bytes)
        try:
            keys = aes_key_unwrap(kek, material.wrapped)
        except InvalidUnwrap:
            raise SrtDecryptionFailed("key material does not unwrap with our passphrase") from None
        if material.keys == SrtKeyFlag.BOTH:
            # A sender announces its next key this way before it switches.
            self.even = (material.salt, keys[: material.key_bytes])
            self.odd = (material.salt, keys[material.key_bytes :])
        elif material.keys == SrtKeyFlag.EVEN:
            self.even = (material.salt, keys)
            self.current = SrtKeyFlag.EVEN
        else:
            self.odd = (material.salt, keys)
            self.current = SrtKeyFlag.ODD

    def encrypt(self, seq: int, payload: bytes) -> tuple[SrtKeyFlag, bytes]:
        """The payload under the current key, and which key that is (for the
        KK field). HSv5: both directions use the caller's keys."""
        salt, key = self.even if self.current == SrtKeyFlag.EVEN else self.odd
        return self.current, aes_ctr(key, salt, seq, payload)

    def decrypt(self, key: SrtKeyFlag, seq: int, payload: bytes) -> bytes | None:
        """The clear payload, or None if we hold no such key."""
        entry = self.even if key == SrtKeyFlag.EVEN else self.odd if key == SrtKeyFlag.ODD else None
        if entry is None:
            return None
        return aes_ctr(entry[1], entry[0], seq, payload)
