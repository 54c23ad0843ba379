"""Encrypt secrets at rest (signing keys, certificate private keys).

Fernet (AES-128-CBC with HMAC-SHA256) under a key derived from the configured
secret by HKDF, so the raw secret is never used as the cipher key.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ("InvalidToken", "decrypt", "encrypt")


@lru_cache(maxsize=4)
def _fernet(secret: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"livecenter secrets at rest").derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(secret: str, plaintext: str) -> str:
    return _fernet(secret).encrypt(plaintext.encode()).decode("ascii")


def decrypt(secret: str, token: str) -> str:
    return _fernet(secret).decrypt(token.encode("ascii")).decode()
