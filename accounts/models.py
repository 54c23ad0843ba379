from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

# 20 random bytes as 40 hex digits: the form DRF's tokens had, so old keys
# and new ones look alike to their users.
API_TOKEN_BYTES = 20


class ThrottleScope(models.TextChoices):
    ACCOUNT = "account", "account"
    ADDRESS = "address", "address"


class LoginThrottle(models.Model):
    """Failed logins of one account name or one client address, shared by
    every console process through the database (accounts/throttle.py)."""

    scope = models.CharField(max_length=16, choices=ThrottleScope.choices)
    # The user name as typed (case-folded), or the client address (an IPv6
    # client's /64). Unknown names are counted like known ones.
    key = models.CharField(max_length=255)
    # Attempts since the last lock (or since the row was made) that did not succeed.
    failures = models.PositiveIntegerField(default=0)
    # Locks in a row: each one lasts twice as long as the one before.
    lockouts = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(default=timezone.now)
    # The row is forgotten (counter and lock history) after this: a quiet
    # window past the last attempt and the end of the last lock.
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="accounts_throttle_scope_key")]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"


class ApiToken(models.Model):
    """A user's API token (`Authorization: Token <key>`). Only the SHA-256 of
    the key is stored: the key is shown once, when it is made. Keys are 160
    random bits, so a plain hash cannot be reversed by guessing."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_token")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"API token of {self.user}"

    @staticmethod
    def digest_of(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    @classmethod
    def issue(cls, user) -> tuple[ApiToken, str]:
        """A new key for `user`, replacing any key they had; returns the row
        and the key, which is not kept anywhere."""
        key = secrets.token_hex(API_TOKEN_BYTES)
        token, _ = cls.objects.update_or_create(
            user=user, defaults={"digest": cls.digest_of(key), "created_at": timezone.now()}
        )
        return token, key
