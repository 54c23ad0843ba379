"""AES-128 encryption of HLS media (RFC 8216 4.3.2.4 and 5.2).

A packaged stream of a domain with HLS encryption on is encrypted whole,
segment by segment: AES-128 in CBC mode with PKCS7 padding, a key that
changes every N segments, and the IV taken from the segment's Media Sequence
Number (RFC 8216 5.2: the big-endian sequence number in 16 bytes, what a
client uses when EXT-X-KEY has no IV attribute, so the playlist needs one
EXT-X-KEY per key, not one per segment).

An LL-HLS part is its own CBC stream, with its own padding, under its parent
segment's key and IV: EXT-X-PART has no key or IV attribute (RFC 8216bis
4.4.4.9), so the EXT-X-KEY in effect for the parent is the part's, and hls.js
(1.7, demux/transmuxer.ts push: Decrypter.decrypt then flush) decrypts each
part's bytes on their own with the fragment's key and IV and strips the
padding. So a segment's bytes are not the concatenation of its parts' bytes,
as they are in clear; each has its own URI.

`HlsKeyring` makes the keys (random, from the caller's source: os.urandom
on a node) and forgets them when told, so that a key lives as long as the
media it opens. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

AES_128_KEY_BYTES = 16
AES_BLOCK_BYTES = 16
# ApsaraVideo Live's and most packagers' default; 1 changes the key with
# every segment (a request per segment more for every viewer).
DEFAULT_KEY_ROTATION_SEGMENTS = 10
MIN_KEY_ROTATION_SEGMENTS = 1
# A key per 1,000 one-second segments is a key every quarter of an hour:
# past that, rotation protects nothing a longer period would.
MAX_KEY_ROTATION_SEGMENTS = 1000
KEY_FILE_SUFFIX = ".key"
# Keys kept before the oldest one the held media needs: a player that loaded
# a playlist a moment before the oldest segment left may still ask for it.
KEY_MARGIN_KEYS = 1


def check_key_rotation_segments(value: int) -> int:
    if not (isinstance(value, int) and MIN_KEY_ROTATION_SEGMENTS <= value <= MAX_KEY_ROTATION_SEGMENTS):
        raise ValueError(f"key rotation must be {MIN_KEY_ROTATION_SEGMENTS}-{MAX_KEY_ROTATION_SEGMENTS} segments")
    return value


def sequence_iv(msn: int) -> bytes:
    """RFC 8216 5.2: the Media Sequence Number as a 128-bit big-endian integer."""
    return msn.to_bytes(AES_BLOCK_BYTES, "big")


def encrypt_aes128(key: bytes, iv: bytes, data: bytes) -> bytes:
    """`data` padded (PKCS7) and encrypted with AES-128-CBC."""
    padder = padding.PKCS7(AES_BLOCK_BYTES * 8).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()


def decrypt_aes128(key: bytes, iv: bytes, data: bytes) -> bytes:
    """The inverse of encrypt_aes128. Raises ValueError for data that is not
    whole blocks or whose padding is wrong (the wrong key, most likely)."""
    if len(data) % AES_BLOCK_BYTES:
        raise ValueError("AES-128-CBC data must be whole 16-byte blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(AES_BLOCK_BYTES * 8).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def key_tag(uri: str) -> str:
    """The EXT-X-KEY line for a key at `uri`, the IV left to the sequence number."""
    return f'#EXT-X-KEY:METHOD=AES-128,URI="{uri}"'


def key_file_name(key_id: int) -> str:
    return f"key_{key_id}{KEY_FILE_SUFFIX}"


class HlsKeyring:
    """The keys of one packaged stream, by id: key `i` encrypts segments
    `first_msn + i*N` to `first_msn + (i+1)*N - 1`."""

    def __init__(self, rotation_segments: int, first_msn: int, random_bytes: Callable[[int], bytes]) -> None:
        self.rotation_segments = check_key_rotation_segments(rotation_segments)
        self.first_msn = first_msn
        self._random_bytes = random_bytes
        self._keys: dict[int, bytes] = {}

    def __repr__(self) -> str:  # keys never in a log line
        return f"HlsKeyring(rotation_segments={self.rotation_segments}, keys={sorted(self._keys)})"

    def key_id(self, msn: int) -> int:
        return (msn - self.first_msn) // self.rotation_segments

    def key_for(self, msn: int) -> tuple[int, bytes]:
        """(id, key) for segment `msn`, making the key on first use."""
        key_id = self.key_id(msn)
        key = self._keys.get(key_id)
        if key is None:
            key = self._keys[key_id] = self._random_bytes(AES_128_KEY_BYTES)
            if len(key) != AES_128_KEY_BYTES:
                raise ValueError("the key source must give 16 bytes")
        return key_id, key

    def get(self, key_id: int) -> bytes | None:
        return self._keys.get(key_id)

    def keep_from(self, msn: int) -> None:
        """Destroy the keys older than segment `msn`'s, less KEY_MARGIN_KEYS."""
        oldest = self.key_id(msn) - KEY_MARGIN_KEYS
        for key_id in [k for k in self._keys if k < oldest]:
            del self._keys[key_id]

    @property
    def key_ids(self) -> list[int]:
        return sorted(self._keys)


def encrypt_vod_playlist(text: str, key_uri: str) -> tuple[str, list[tuple[str, int]]]:
    """An HLS VOD playlist in clear (a recording's) made to name one key:
    the EXT-X-KEY before its first segment; and each segment's URI with its
    Media Sequence Number, the IV to encrypt it with (RFC 8216 5.2; the
    sequence starts at EXT-X-MEDIA-SEQUENCE, 0 without it, 4.3.3.2). Raises
    ValueError for a playlist that is already encrypted."""
    lines = text.splitlines()
    msn = 0
    segments: list[tuple[str, int]] = []
    out: list[str] = []
    keyed = False
    for line in lines:
        if line.startswith("#EXT-X-KEY:"):
            raise ValueError("the playlist is already encrypted")
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.partition(":")[2])
        if not keyed and (line.startswith("#EXTINF:") or (line and not line.startswith("#"))):
            out.append(key_tag(key_uri))
            keyed = True
        if line and not line.startswith("#"):
            segments.append((line, msn))
            msn += 1
        out.append(line)
    return "\n".join(out) + "\n", segments
