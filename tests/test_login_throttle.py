"""Console login throttling (issue 11, item 7): per account name and per
client address, in database rows every console process shares."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import throttle
from accounts.models import ApiToken, LoginThrottle
from tests.workersupport import ROOT, worker_env

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
TOKEN = "/api/v1/auth/token/"
RIGHT = {"username": "owner", "password": "owner-pass-123"}
WRONG = {"username": "owner", "password": "wrong"}


def post_login(client, data, address="198.51.100.7"):
    return client.post(LOGIN, data, REMOTE_ADDR=address)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_it_locks_an_account_after_five_failures_even_for_the_right_password(client, owner):
    for _ in range(5):
        r = post_login(client, WRONG)
        assert r.status_code == 200
        assert "user name or password is wrong" in r.content.decode()
    r = post_login(client, RIGHT)
    assert r.status_code == 429
    assert 0 < int(r["Retry-After"]) <= 60
    body = r.content.decode()
    assert "too many failed logins for this account" in body and "even with the right password" in body
    assert not logged_in(client)
    # From another address too: the lock is the account's.
    assert post_login(client, RIGHT, address="192.0.2.1").status_code == 429
    assert not logged_in(client)


def test_it_lets_the_right_password_in_once_the_lock_has_passed_and_clears_the_counter(client, owner):
    for _ in range(5):
        post_login(client, WRONG)
    LoginThrottle.objects.update(locked_until=timezone.now() - dt.timedelta(seconds=1))
    r = post_login(client, RIGHT)
    assert r.status_code == 302 and logged_in(client)
    assert not LoginThrottle.objects.filter(scope="account").exists()
    client.logout()
    # A success starts the account afresh: four more failures do not lock it.
    for _ in range(4):
        post_login(client, WRONG)
    assert post_login(client, RIGHT).status_code == 302


def test_it_doubles_each_further_lock_up_to_the_max(settings):
    settings.LIVECENTER_LOGIN_LOCK_SECONDS = 60
    settings.LIVECENTER_LOGIN_LOCK_MAX_SECONDS = 200
    now = timezone.now()
    locks = []
    for _ in range(3):
        for _ in range(5):
            try:
                throttle.begin_login("owner", "198.51.100.7", now=now)
            except throttle.LoginThrottled:
                pytest.fail("refused before the limit")
        with pytest.raises(throttle.LoginThrottled) as refused:
            throttle.begin_login("owner", "198.51.100.7", now=now)
        locks.append(refused.value.retry_after_seconds)
        now += dt.timedelta(seconds=refused.value.retry_after_seconds + 1)
    assert locks == [60, 120, 200]


def test_it_forgets_failures_after_a_quiet_window(settings):
    settings.LIVECENTER_LOGIN_WINDOW_SECONDS = 900
    now = timezone.now()
    for _ in range(4):
        throttle.begin_login("owner", "198.51.100.7", now=now)
    later = now + dt.timedelta(seconds=901)
    for _ in range(4):
        throttle.begin_login("owner", "198.51.100.7", now=later)  # not locked: the count started again
    assert LoginThrottle.objects.get(scope="account").failures == 4


def test_it_counts_names_that_do_not_exist_like_those_that_do(client):
    for _ in range(5):
        post_login(client, {"username": "nobody", "password": "x"})
    assert post_login(client, {"username": "nobody", "password": "x"}).status_code == 429


def test_it_locks_an_address_that_tries_many_accounts(client, owner):
    for i in range(20):
        assert post_login(client, {"username": f"user{i}", "password": "x"}).status_code == 200
    r = post_login(client, RIGHT)
    assert r.status_code == 429
    assert "too many failed logins from your address" in r.content.decode()
    assert not logged_in(client)
    # Another address is not affected.
    assert post_login(client, RIGHT, address="192.0.2.1").status_code == 302


def test_it_counts_an_ipv6_client_by_its_64():
    assert throttle.address_key("2001:db8:1:2:aaaa::1") == throttle.address_key("2001:db8:1:2:bbbb::9")
    assert throttle.address_key("2001:db8:1:3::1") != throttle.address_key("2001:db8:1:2::1")
    assert throttle.address_key("::ffff:192.0.2.5") == "192.0.2.5"
    assert throttle.address_key("192.0.2.5") == "192.0.2.5"


def test_it_does_not_let_parallel_attempts_past_the_limit():
    """Each attempt is counted before its password is checked: the sixth
    attempt begun before any of the first five ended is refused."""
    for _ in range(5):
        throttle.begin_login("owner", "198.51.100.7")  # five in flight, none finished
    with pytest.raises(throttle.LoginThrottled):
        throttle.begin_login("owner", "198.51.100.7")


def test_it_answers_429_on_the_token_endpoint(owner):
    client = APIClient(REMOTE_ADDR="198.51.100.7")
    for _ in range(5):
        r = client.post(TOKEN, WRONG, format="json")
        assert r.status_code == 400
        assert r.json() == {"detail": "user name or password is wrong; both are case-sensitive"}
    r = client.post(TOKEN, RIGHT, format="json")
    assert r.status_code == 429
    assert int(r["Retry-After"]) > 0
    assert r.json() == {
        "detail": "too many failed logins for this account: logins are refused for 1 minute, "
        "even with the right password; try again then"
    }
    assert not ApiToken.objects.exists()


def test_it_throttles_the_admin_login(client, owner):
    owner.is_staff = True
    owner.save()
    for _ in range(5):
        client.post("/admin/login/", WRONG, REMOTE_ADDR="198.51.100.7")
    r = client.post("/admin/login/", RIGHT, REMOTE_ADDR="198.51.100.7")
    assert "too many failed logins for this account" in r.content.decode()
    assert not logged_in(client)


def test_an_operator_unlocks_an_account_and_an_address(client, owner):
    for i in range(20):
        post_login(client, {"username": "owner" if i < 5 else f"user{i}", "password": "x"})
    out = io.StringIO()
    call_command("unlock_login", "--list", stdout=out)
    assert "account\towner\tlocked until" in out.getvalue()
    assert "address\t198.51.100.7\tlocked until" in out.getvalue()
    call_command("unlock_login", "owner", "--address", "198.51.100.7", stdout=out)
    assert "Unlocked account owner and address 198.51.100.7" in out.getvalue()
    assert post_login(client, RIGHT).status_code == 302


@pytest.mark.django_db(transaction=True)
def test_it_shares_the_lock_between_processes(client, owner, tmp_path):
    """Failures counted by another process (another console worker) lock
    the account here: the counter lives in the database."""
    script = (
        "import django; django.setup()\n"
        "from accounts import throttle\n"
        "for _ in range(5): throttle.begin_login('owner', '203.0.113.9')\n"
    )
    env = worker_env("unused", tmp_path)
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=120)
    r = post_login(client, RIGHT)
    assert r.status_code == 429
    assert not logged_in(client)
