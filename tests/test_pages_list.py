import pytest

from domains import services
from tests.pagesupport import add_ingest, add_streaming, assert_login_redirect, page

pytestmark = pytest.mark.django_db


def test_it_requires_login(client):
    assert_login_redirect(client.get("/domains/"), "/domains/")


def test_it_lists_only_the_operators_own_domains(client, owner, outsider):
    add_ingest(owner, "push.example.com")
    add_ingest(outsider, "theirs.example.net")
    client.force_login(owner)
    r = client.get("/domains/")
    assert r.status_code == 200
    body = page(r)
    assert 'data-domain="push.example.com"' in body
    assert "theirs.example.net" not in body


def test_it_shows_the_quota(client, owner, settings):
    settings.LIVECENTER_MAX_DOMAINS_PER_OPERATOR = 7
    add_ingest(owner)
    add_streaming(owner)
    client.force_login(owner)
    assert "2 of 7 domains" in page(client.get("/domains/"))


def test_it_shows_an_empty_state_with_the_add_link(client, owner):
    client.force_login(owner)
    body = page(client.get("/domains/"))
    assert 'id="no-domains"' in body
    assert 'href="/domains/add/"' in body
    assert "0 of 20 domains" in body


def test_it_shows_each_domains_settings(client, owner, certificate_factory):
    ingest = add_ingest(owner, "push.example.com", live_center="cn-beijing", region="mainland")
    streaming = add_streaming(owner, "play.example.com", live_center="cn-beijing", region="mainland")
    services.associate_ingest(streaming, ingest.domain_name)
    cert, key = certificate_factory(["play.example.com"])
    uploaded = services.upload_certificate(streaming, cert, key)
    client.force_login(owner)
    body = page(client.get("/domains/"))
    assert "Ingest domain" in body and "Streaming domain" in body
    assert "Configuring" in body  # status before the CNAME is verified
    assert "Pending configuration" in body
    assert 'href="/domains/play.example.com/cname/"' in body  # CNAME status links to the guide
    assert "Chinese mainland" in body
    assert "China (Beijing)" in body
    assert 'ingest: <a href="/domains/push.example.com/">push.example.com</a>' in body
    assert 'streaming: <a href="/domains/play.example.com/">play.example.com</a>' in body
    assert f'expires <time datetime="{uploaded.not_after:%Y-%m-%dT%H:%M:%S}Z" class="utc">' in body


def test_it_shows_a_sub_streaming_domain_as_sub_of_its_main(client, owner):
    main = add_streaming(owner, "play.example.com")
    sub = add_streaming(owner, "play2.example.com")
    services.bind_main_domain(sub, main.domain_name)
    client.force_login(owner)
    assert 'sub of <a href="/domains/play.example.com/">play.example.com</a>' in page(client.get("/domains/"))


def test_it_shows_internationalised_names_in_unicode(client, owner):
    add_ingest(owner, "直播.例子.中国")
    client.force_login(owner)
    body = page(client.get("/domains/"))
    assert "直播.例子.中国" in body
    assert 'data-domain="xn--' in body


def test_it_offers_details_disable_and_delete(client, owner):
    domain = add_streaming(owner)
    services.set_switches(domain, enabled=False)
    add_ingest(owner)
    client.force_login(owner)
    body = page(client.get("/domains/"))
    assert 'href="/domains/push.example.com/"' in body
    assert 'action="/domains/push.example.com/disable/"' in body
    assert 'action="/domains/play.example.com/enable/"' in body
    assert "Offline" in body
    assert 'href="/domains/push.example.com/delete/"' in body


def test_it_shows_rts_only_for_streaming_domains(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    row = page(client.get("/domains/")).split('data-domain="play.example.com"')[1].split("</tr>")[0]
    assert "<td>on</td>" in row


def test_it_reads_the_list_in_a_fixed_number_of_queries(client, owner, django_assert_max_num_queries):
    for n in range(4):
        ingest = add_ingest(owner, f"push{n}.example.com")
        streaming = add_streaming(owner, f"play{n}.example.com")
        services.associate_ingest(streaming, ingest.domain_name)
        services.bind_main_domain(add_streaming(owner, f"sub{n}.example.com"), streaming.domain_name)
    client.force_login(owner)
    # Session, user, the domains with their associations and certificates.
    with django_assert_max_num_queries(4):
        assert client.get("/domains/").status_code == 200
