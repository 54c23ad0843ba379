"""The console workflow end to end in headless Chromium (Debian's, driven by
Playwright): log in, add an ingest and a streaming domain, verify a CNAME
against the loopback DNS server, associate the domains, upload a certificate
made in the test, set signing keys, generate URLs, and check that the
generated RTMP and FLV URLs verify with the signing function."""

from __future__ import annotations

import os
import shutil
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connections

from domains.models import Domain
from livecenter.media.signing import verify

# Playwright's sync API runs an event loop in this thread; the ORM calls the
# test makes between page actions are safe (one thread, one connection).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
    assert not errors, f"JavaScript errors: {errors}"


def add_domain(page, base: str, kind: str, name: str) -> None:
    page.goto(f"{base}/domains/add/")
    page.check("#id_domain_type_0" if kind == "ingest" else "#id_domain_type_1")
    page.fill("#id_domain_name", name)
    page.select_option("#id_region", "overseas")
    page.select_option("#id_live_center", "ap-southeast-1")
    # Outside the mainland with a live center outside it: no ICP filing.
    assert page.is_visible("#icp-not-required") and not page.is_visible("#icp-required")
    page.select_option("#id_region", "mainland")
    assert page.is_visible("#icp-required")
    page.select_option("#id_region", "overseas")
    page.click("#add-domain-submit")
    page.wait_for_url(f"**/domains/{name}/cname/")


def token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["auth_key"][0]


def test_it_runs_the_console_workflow(page, live_server, owner, loopback_dns, certificate_factory):
    base = live_server.url
    page.goto(f"{base}/domains/")
    page.wait_for_url("**/accounts/login/**")
    page.fill("#id_username", "owner")
    page.fill("#id_password", "owner-pass-123")
    page.click("#login-button")
    page.wait_for_url("**/domains/")
    assert page.inner_text("#nav-user") == "owner"

    add_domain(page, base, "ingest", "push.e2e.example")
    add_domain(page, base, "streaming", "play.e2e.example")

    # CNAME: pending until the record exists on the (real, loopback) DNS server.
    cname = page.inner_text("#cname-value")
    assert cname == Domain.objects.get(domain_name="play.e2e.example").cname
    page.click("#cname-verify")
    page.wait_for_selector("#cname-found")
    assert page.inner_text("#cname-status") == "Pending configuration"
    assert "does not exist in DNS" in page.inner_text("#cname-found")
    loopback_dns.set_cname("play.e2e.example", cname)
    page.click("#cname-verify")
    page.wait_for_function("document.querySelector('#cname-status').innerText === 'Configured'")
    assert cname in page.inner_text("#cname-found")

    # Associate the streaming domain with the ingest domain.
    page.goto(f"{base}/domains/play.e2e.example/mapping/")
    page.select_option("#id_ingest_domain", "push.e2e.example")
    page.click("#associate-submit")
    page.wait_for_selector("#messages .alert-success")
    assert Domain.objects.get(domain_name="play.e2e.example").ingest_domain.domain_name == "push.e2e.example"

    # A certificate made here, for the streaming domain.
    cert_pem, key_pem = certificate_factory(["play.e2e.example"])
    page.goto(f"{base}/domains/play.e2e.example/certificate/")
    page.fill("#id_certificate", cert_pem)
    page.fill("#id_private_key", key_pem)
    page.click("#certificate-submit")
    page.wait_for_selector("#certificate-sans")
    assert "play.e2e.example" in page.inner_text("#certificate-sans")
    content = page.content()
    assert not any(line in content for line in key_pem.splitlines()[1:-1]), "the private key is shown"

    # Signing keys of our own on both domains; shown masked afterwards.
    for name, primary, secondary in [
        ("push.e2e.example", "PushKey2026", "PushOld2025"),
        ("play.e2e.example", "PlayKey2026", ""),
    ]:
        page.goto(f"{base}/domains/{name}/url-signing/")
        page.fill("#id_primary_key", primary)
        if secondary:
            page.fill("#id_secondary_key", secondary)
        page.fill("#id_validity_minutes", "60")
        page.click("#url-signing-submit")
        page.wait_for_selector("#messages .alert-success")
        assert page.inner_text("#primary-key-masked") == "********"
        assert page.inner_text("#primary-key-set-at").startswith("set ")
        assert primary not in page.content()

    # Generate URLs from the ingest domain.
    page.goto(f"{base}/tools/url-generator/?domain=push.e2e.example")
    page.fill("#id_app", "live")
    page.fill("#id_stream", "cam1")
    page.click("#url-generator-submit")
    page.wait_for_selector("#url-playback-flv")
    rtmp = page.input_value("#url-ingest-rtmp")
    flv = page.input_value("#url-playback-flv")
    now = time.time()
    assert rtmp.startswith("rtmp://push.e2e.example:1935/live/cam1?auth_key=")
    # The certificate uploaded above turned HTTPS on for the streaming domain.
    assert flv.startswith("https://play.e2e.example:443/live/cam1.flv?auth_key=")
    assert verify("/live/cam1", token(rtmp), ["PushKey2026"], 3600, now=now).ok
    assert verify("/live/cam1.flv", token(flv), ["PlayKey2026"], 3600, now=now).ok
    # Signed with the ingest domain's key, the FLV URL is refused: keys are per domain.
    assert not verify("/live/cam1.flv", token(flv), ["PushKey2026"], 3600, now=now).ok

    # The Copy button puts the URL on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page.click('[data-copy-target="url-playback-flv"]')
    assert page.evaluate("navigator.clipboard.readText()") == flv

    page.click("#logout-button")
    page.wait_for_url("**/accounts/login/")
    # The ORM calls above ran inside Playwright's greenlet, on a connection of
    # that context; close it there so PostgreSQL can drop the test database.
    connections.close_all()
