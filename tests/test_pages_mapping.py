import pytest

from domains import services
from domains.models import Domain
from tests.pagesupport import add_ingest, add_streaming, assert_field_error, assert_login_redirect, page

pytestmark = pytest.mark.django_db

URL = "/domains/play.example.com/mapping/"


def streaming_of(name="play.example.com"):
    return Domain.objects.get(domain_name=name)


def test_it_requires_login(client, owner):
    add_streaming(owner)
    assert_login_redirect(client.get(URL), URL)
    assert_login_redirect(client.post(URL + "associate/", {"ingest_domain": "x.example.com"}), URL + "associate/")


def test_it_is_a_404_for_an_outsider(client, owner, outsider):
    add_streaming(owner)
    add_ingest(owner)
    add_ingest(outsider, "theirs.example.net")
    client.force_login(outsider)
    assert client.get(URL).status_code == 404
    for action, data in (
        ("associate/", {"ingest_domain": "theirs.example.net"}),
        ("bind/", {"main_domain": "x.example.com"}),
        ("clear/", {}),
    ):
        assert client.post(URL + action, data).status_code == 404
    assert streaming_of().ingest_domain is None


def test_it_offers_the_operators_own_ingest_domains(client, owner, outsider):
    add_streaming(owner)
    add_ingest(owner, "push.example.com")
    add_ingest(outsider, "theirs.example.net")
    client.force_login(owner)
    r = client.get(URL)
    assert r.status_code == 200
    body = page(r)
    assert 'id="associate-form"' in body and 'name="ingest_domain"' in body
    assert '<option value="push.example.com">push.example.com (China (Shanghai))</option>' in body
    assert "theirs.example.net" not in body
    assert "not associated with an ingest domain" in body


def test_it_associates_with_an_ingest_domain(client, owner):
    add_streaming(owner)
    ingest = add_ingest(owner)
    client.force_login(owner)
    r = client.post(URL + "associate/", {"ingest_domain": "push.example.com"})
    assert r["Location"] == URL
    assert streaming_of().ingest_domain == ingest
    body = page(client.get(URL))
    assert "Associated play.example.com with ingest domain push.example.com" in body
    assert 'id="mapping-clear-form"' in body


def test_it_refuses_an_ingest_domain_in_another_live_center(client, owner):
    add_streaming(owner, live_center="cn-shanghai")
    add_ingest(owner, "push.example.com", live_center="cn-beijing")
    client.force_login(owner)
    r = client.post(URL + "associate/", {"ingest_domain": "push.example.com"})
    assert_field_error(r, "associate_form", "ingest_domain", "associated domains must share a live center")
    assert streaming_of().ingest_domain is None


def test_it_refuses_an_outsiders_ingest_domain(client, owner, outsider):
    add_streaming(owner)
    add_ingest(outsider, "theirs.example.net")
    client.force_login(owner)
    r = client.post(URL + "associate/", {"ingest_domain": "theirs.example.net"})
    assert_field_error(r, "associate_form", "ingest_domain", "ingest domain must be one of the listed choices")
    assert streaming_of().ingest_domain is None


def test_it_requires_an_ingest_domain(client, owner):
    add_streaming(owner)
    add_ingest(owner)
    client.force_login(owner)
    r = client.post(URL + "associate/", {"ingest_domain": ""})
    assert_field_error(r, "associate_form", "ingest_domain", "ingest domain is required")


def test_it_refuses_an_ingest_domain_already_taken(client, owner):
    add_streaming(owner)
    other = add_streaming(owner, "other.example.com")
    add_ingest(owner)
    services.associate_ingest(other, "push.example.com")
    client.force_login(owner)
    r = client.post(URL + "associate/", {"ingest_domain": "push.example.com"})
    assert_field_error(r, "associate_form", "ingest_domain", "is already associated with other.example.com")
    assert streaming_of().ingest_domain is None


def test_it_binds_a_sub_streaming_domain(client, owner):
    add_streaming(owner, "play.example.com")
    main = add_streaming(owner, "main.example.com")
    client.force_login(owner)
    r = client.post(URL + "bind/", {"main_domain": "main.example.com"})
    assert r["Location"] == URL
    assert streaming_of().main_domain == main
    body = page(client.get(URL))
    assert "is a sub-streaming domain of" in body
    # The main domain lists its subs.
    main_page = page(client.get("/domains/main.example.com/mapping/"))
    assert 'id="sub-domains"' in main_page and "play.example.com" in main_page


def test_it_refuses_to_bind_across_live_centers(client, owner):
    add_streaming(owner, "play.example.com", live_center="cn-shanghai")
    add_streaming(owner, "main.example.com", live_center="cn-beijing")
    client.force_login(owner)
    r = client.post(URL + "bind/", {"main_domain": "main.example.com"})
    assert_field_error(r, "bind_form", "main_domain", "bound domains must share a live center")
    assert streaming_of().main_domain is None


def test_it_refuses_to_bind_a_domain_that_is_associated(client, owner):
    add_streaming(owner, "play.example.com")
    add_streaming(owner, "main.example.com")
    add_ingest(owner)
    services.associate_ingest(streaming_of(), "push.example.com")
    client.force_login(owner)
    r = client.post(URL + "bind/", {"main_domain": "main.example.com"})
    assert_field_error(r, "bind_form", "main_domain", "remove that association first")
    assert streaming_of().main_domain is None


def test_it_does_not_offer_the_domain_itself_as_its_main(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    body = page(client.get(URL))
    assert 'id="no-main-domains"' in body
    r = client.post(URL + "bind/", {"main_domain": "play.example.com"})
    assert_field_error(r, "bind_form", "main_domain", "main streaming domain must be one of the listed choices")


def test_it_removes_the_association(client, owner):
    add_streaming(owner)
    add_ingest(owner)
    services.associate_ingest(streaming_of(), "push.example.com")
    client.force_login(owner)
    r = client.post(URL + "clear/")
    assert r["Location"] == URL
    assert streaming_of().ingest_domain is None
    assert "Removed the association" in page(client.get(URL))


def test_it_says_when_there_is_nothing_to_remove(client, owner):
    add_streaming(owner)
    client.force_login(owner)
    client.post(URL + "clear/")
    assert "has no association to remove" in page(client.get(URL))


def test_it_shows_an_ingest_domain_its_streaming_domain(client, owner):
    streaming = add_streaming(owner)
    add_ingest(owner)
    services.associate_ingest(streaming, "push.example.com")
    sub = add_streaming(owner, "play2.example.com")
    services.bind_main_domain(sub, "play.example.com")
    client.force_login(owner)
    r = client.get("/domains/push.example.com/mapping/")
    assert r.status_code == 200
    body = page(r)
    assert 'play on\n      <a href="/domains/play.example.com/mapping/">play.example.com</a>' in body
    assert "play2.example.com" in body
    assert 'id="associate-form"' not in body


def test_it_refuses_to_associate_an_ingest_domain(client, owner):
    add_ingest(owner)
    add_ingest(owner, "push2.example.com")
    client.force_login(owner)
    r = client.post("/domains/push.example.com/mapping/associate/", {"ingest_domain": "push2.example.com"})
    assert r.status_code == 200
    assert "only a streaming domain can be associated" in page(r)
    assert not Domain.objects.filter(ingest_domain__isnull=False).exists()
