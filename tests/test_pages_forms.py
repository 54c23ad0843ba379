"""What every console form does (issue 19, finding 7): the confirmation
says what changed, a form re-rendered after an error keeps what was typed
(never a secret) and shows all its errors at once; 404 and 500 pages are
the console's own. And one time format across the console (finding 5)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import RequestFactory

from callbacks.models import CallbackConfig
from domains.models import Domain
from livecenter.middleware import server_error
from livecenter.templatetags.console import utc
from tests.pagesupport import add_ingest, add_streaming, page

pytestmark = pytest.mark.django_db


def field_errors(response) -> dict[str, list[str]]:
    """Each field's errors as the page shows them."""
    shown: dict[str, list[str]] = {}
    for field, message in re.findall(r'class="invalid-feedback d-block field-error" data-field="(\w+)">([^<]*)<',
                                     page(response)):  # fmt: skip
        shown.setdefault(field, []).append(message)
    return shown


def test_it_says_what_changed(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    response = client.post("/domains/play.example.com/rts/", {"rts_enabled": "on"}, follow=True)
    assert "HTML5 auto-transcoding turned off for play.example.com." in page(response)
    assert not Domain.objects.get().html5_transcode
    response = client.post("/domains/play.example.com/rts/", {"rts_enabled": "on"}, follow=True)
    assert "Nothing changed for play.example.com." in page(response)


def test_it_shows_every_error_of_a_form_at_once_and_keeps_the_input_but_not_the_keys(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    data = {"enabled": "on", "primary_key": "Good4Primary", "secondary_key": "bad!", "validity_minutes": "0"}
    response = client.post("/domains/push.example.com/url-signing/", data)
    assert response.status_code == 200
    errors = field_errors(response)
    assert errors == {
        "secondary_key": ["secondary key must be 6-32 letters or digits"],
        "validity_minutes": ["validity period must be at least 1 minute"],
    }, errors
    body = page(response)
    assert 'name="validity_minutes" value="0"' in body  # kept
    assert "Good4Primary" not in body and "bad!" not in body  # keys never come back
    domain = Domain.objects.get()
    assert domain.auth_primary_key != "Good4Primary" and domain.auth_validity_minutes == 1440  # nothing saved


def test_it_shows_the_add_domain_errors_together_and_keeps_the_name(client, owner):
    client.force_login(owner)
    data = {"domain_name": "*.wild.example.com", "region": "global", "live_center": "cn-shanghai"}
    response = client.post("/domains/add/", data)
    errors = field_errors(response)
    assert set(errors) == {"domain_type", "domain_name"}, errors
    assert "domain type is required" in errors["domain_type"]
    assert "wildcard" in errors["domain_name"][0]
    assert 'value="*.wild.example.com"' in page(response)
    assert not Domain.objects.exists()


def test_it_keeps_the_srt_latency_but_never_the_passphrase(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    response = client.post("/domains/push.example.com/srt/", {"srt_latency_ms": "5", "srt_passphrase": "x"})
    errors = field_errors(response)
    assert set(errors) == {"srt_latency_ms", "srt_passphrase"}, errors
    body = page(response)
    assert 'name="srt_latency_ms" value="5"' in body
    assert 'name="srt_passphrase" autocomplete="off"' in body and 'name="srt_passphrase" value' not in body


def test_it_shows_every_callbacks_error_and_never_the_secret(client, owner):
    add_ingest(owner)
    client.force_login(owner)
    data = {"url": "ftp://example.com/hook", "secret": " short", "publish_hook_url": "",
            "publish_hook_timeout_ms": "2000"}  # fmt: skip
    response = client.post("/domains/push.example.com/callbacks/", data)
    errors = field_errors(response)
    assert set(errors) == {"url", "secret"}, errors
    body = page(response)
    assert 'value="ftp://example.com/hook"' in body  # kept
    assert " short" not in body.replace("&#x27;", "'")
    assert not CallbackConfig.objects.exists()


def test_the_404_page_is_styled_and_says_where(client, owner, settings):
    settings.DEBUG = False
    client.force_login(owner)
    response = client.get("/domains/nobody.example.com/")
    assert response.status_code == 404
    body = page(response)
    assert 'id="error-page" data-status="404"' in body
    assert "/static/vendor/bootstrap/css/bootstrap.min.css" in body and 'id="nav-user">owner<' in body
    assert "<code>/domains/nobody.example.com/</code>" in body


def test_the_500_page_is_styled(settings):
    settings.DEBUG = False
    response = server_error(RequestFactory().get("/domains/"))
    assert response.status_code == 500
    body = page(response)
    assert 'id="error-page" data-status="500"' in body
    assert "/static/vendor/bootstrap/css/bootstrap.min.css" in body


def test_times_show_in_utc_with_the_moment_for_local_time():
    moment = dt.datetime(2026, 12, 5, 13, 3, 12, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    expected = '<time datetime="2026-12-05T05:03:12Z" class="utc">2026-12-05 05:03:12 UTC</time>'
    assert utc(moment) == expected
    assert utc(moment.astimezone(dt.UTC).replace(tzinfo=None)) == expected  # naive: stored UTC
    assert utc(moment.timestamp()) == expected  # Unix seconds
    assert utc(None) == "" and utc("") == ""


def test_every_page_uses_the_one_time_format(client, owner):
    push = add_ingest(owner)
    client.force_login(owner)
    for url in ["/domains/", f"/domains/{push.domain_name}/", f"/domains/{push.domain_name}/url-signing/"]:
        body = page(client.get(url))
        assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" class="utc">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d '
                         r"UTC</time>", body), url  # fmt: skip
        assert "/static/js/console.js" in body


@pytest.mark.parametrize(
    ("url", "data", "expected"),
    [
        (
            "/domains/push.example.com/url-signing/",
            {"enabled": "on", "primary_key": "bad!", "secondary_key": "", "validity_minutes": ""},
            {"validity_minutes": "validity period is required", "primary_key": "primary key must be"},
        ),
        (
            "/domains/push.example.com/srt/",
            {"srt_latency_ms": "", "srt_passphrase": "short"},
            {"srt_latency_ms": "SRT latency is required", "srt_passphrase": "SRT passphrase must be"},
        ),
        (
            "/domains/push.example.com/callbacks/",
            {"url": "ftp://example.com/hook", "secret": "x", "publish_hook_url": "", "publish_hook_timeout_ms": ""},
            {"publish_hook_timeout_ms": "is required", "url": "must start with http", "secret": "secret must be"},
        ),
    ],
)
def test_a_form_error_of_its_own_comes_with_the_services_errors(client, owner, url, data, expected):
    """A required field left empty and a value the service refuses are
    reported together, so a secret is typed once more, not once per mistake."""
    add_ingest(owner)
    client.force_login(owner)
    response = client.post(url, data)
    errors = field_errors(response)
    assert set(errors) == set(expected), errors
    for field, words in expected.items():
        assert any(words in message for message in errors[field]), (field, errors[field])
