"""Login throttling, per account name and per client address.

Every password check (console login page, admin login, API token endpoint)
goes through `begin_login`, which counts the attempt as a failure before the
password is checked, in one transaction on the row of the account and the row
of the address: so parallel attempts cannot slip past the limit, and a
process that dies mid-check has counted it. `login_succeeded` then clears the
account's row and takes the attempt back from the address's.

After LIVECENTER_LOGIN_ACCOUNT_FAILURES failures of one account name (or
LIVECENTER_LOGIN_ADDRESS_FAILURES from one address) with no quiet window of
LIVECENTER_LOGIN_WINDOW_SECONDS between them, that name (address) is locked
for LIVECENTER_LOGIN_LOCK_SECONDS, then twice as long at each further lock,
up to LIVECENTER_LOGIN_LOCK_MAX_SECONDS. While locked, every attempt is
refused before the password is looked at, the right one included; refused
attempts do not lengthen the lock. The rows live in the database, so every
console process shares them; `manage.py unlock_login` clears them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import LoginThrottle, ThrottleScope

MAX_KEY_CHARS = 255


class LoginThrottled(Exception):
    """Refused without checking the password: the account name or the
    address is locked for `retry_after_seconds` more."""

    def __init__(self, scope: str, retry_after_seconds: int):
        self.scope = scope
        self.retry_after_seconds = retry_after_seconds
        what = "for this account" if scope == ThrottleScope.ACCOUNT else "from your address"
        super().__init__(
            f"too many failed logins {what}: logins are refused for {_duration(retry_after_seconds)}, "
            "even with the right password; try again then"
        )


@dataclass(frozen=True)
class LoginAttempt:
    account_key: str
    address_key: str
    # The address row as it was before this attempt, and the lock this
    # attempt set on it (None if it set none): a success undoes that lock.
    address_before: tuple[int, int, dt.datetime | None]
    address_locked_by_attempt: dt.datetime | None


def account_key(username: str) -> str:
    return username.strip().casefold()[:MAX_KEY_CHARS]


def address_key(address: str | None) -> str:
    """A client's address as counted: an IPv6 client by its /64 (one
    subscriber's allocation), an IPv4 client by its address."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return (address or "unknown")[:MAX_KEY_CHARS]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def client_address(request) -> str:
    """The peer's address. X-Forwarded-For is not read: any client can write
    it; behind a reverse proxy every client counts as the proxy's address."""
    return address_key(request.META.get("REMOTE_ADDR") if request is not None else None)


def lock_seconds(lockouts: int) -> float:
    base = settings.LIVECENTER_LOGIN_LOCK_SECONDS
    return min(base * 2 ** max(lockouts - 1, 0), settings.LIVECENTER_LOGIN_LOCK_MAX_SECONDS)


def begin_login(username: str, address: str, now: dt.datetime | None = None) -> LoginAttempt:
    """Counts an attempt for `username` from `address` (an address_key), or
    raises LoginThrottled if either is locked."""
    now = now or timezone.now()
    window = dt.timedelta(seconds=settings.LIVECENTER_LOGIN_WINDOW_SECONDS)
    limits = {
        ThrottleScope.ACCOUNT: (account_key(username), settings.LIVECENTER_LOGIN_ACCOUNT_FAILURES),
        ThrottleScope.ADDRESS: (address, settings.LIVECENTER_LOGIN_ADDRESS_FAILURES),
    }
    LoginThrottle.objects.filter(expires_at__lt=now).delete()
    with transaction.atomic():
        rows = {}
        for scope, (key, _) in limits.items():
            row, created = LoginThrottle.objects.select_for_update().get_or_create(
                scope=scope, key=key, defaults={"expires_at": now + window, "last_attempt_at": now}
            )
            if not created and row.expires_at <= now:
                row.failures, row.lockouts, row.locked_until = 0, 0, None
            rows[scope] = row
        for scope in (ThrottleScope.ACCOUNT, ThrottleScope.ADDRESS):
            row = rows[scope]
            if row.locked_until is not None and row.locked_until > now:
                raise LoginThrottled(scope, math.ceil((row.locked_until - now).total_seconds()))
        address_row = rows[ThrottleScope.ADDRESS]
        address_before = (address_row.failures, address_row.lockouts, address_row.locked_until)
        for scope, (_, limit) in limits.items():
            row = rows[scope]
            row.failures += 1
            if row.failures >= limit:
                row.lockouts += 1
                row.failures = 0
                row.locked_until = now + dt.timedelta(seconds=lock_seconds(row.lockouts))
            row.last_attempt_at = now
            row.expires_at = max(now, row.locked_until or now) + window
            row.save()
    locked_now = address_row.locked_until if address_row.locked_until != address_before[2] else None
    return LoginAttempt(rows[ThrottleScope.ACCOUNT].key, address_row.key, address_before, locked_now)


def login_succeeded(attempt: LoginAttempt) -> None:
    """The password was right: the account starts afresh, and the attempt
    no longer counts against the address."""
    with transaction.atomic():
        LoginThrottle.objects.filter(scope=ThrottleScope.ACCOUNT, key=attempt.account_key).delete()
        row = (
            LoginThrottle.objects.select_for_update()
            .filter(scope=ThrottleScope.ADDRESS, key=attempt.address_key)
            .first()
        )
        if row is None:
            return
        if attempt.address_locked_by_attempt is not None and row.locked_until == attempt.address_locked_by_attempt:
            row.failures, row.lockouts, row.locked_until = attempt.address_before
        elif row.failures > 0:
            row.failures -= 1
        row.save()


def unlock(*, username: str | None = None, address: str | None = None) -> int:
    """Forgets the failures and locks of an account name or an address (the
    operator's `manage.py unlock_login`); returns how many rows went."""
    rows = LoginThrottle.objects.none()
    if username is not None:
        rows = rows | LoginThrottle.objects.filter(scope=ThrottleScope.ACCOUNT, key=account_key(username))
    if address is not None:
        rows = rows | LoginThrottle.objects.filter(scope=ThrottleScope.ADDRESS, key=address_key(address))
    return rows.delete()[0]


def _duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
