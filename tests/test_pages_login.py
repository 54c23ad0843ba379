import pytest

pytestmark = pytest.mark.django_db


def test_it_shows_the_login_form(client):
    r = client.get("/accounts/login/")
    assert r.status_code == 200
    body = r.content.decode()
    assert 'id="login-form"' in body
    assert 'name="username"' in body and 'id="id_username"' in body
    assert 'name="password"' in body and 'id="id_password"' in body


def test_it_logs_in_and_lands_on_the_domain_list(client, owner):
    r = client.post("/accounts/login/", {"username": "owner", "password": "owner-pass-123"})
    assert r.status_code == 302
    assert r["Location"] == "/domains/"
    r = client.get("/domains/")
    assert 'id="nav-user">owner<' in r.content.decode()


def test_it_returns_to_the_page_asked_for(client, owner):
    r = client.post(
        "/accounts/login/", {"username": "owner", "password": "owner-pass-123", "next": "/tools/url-generator/"}
    )
    assert r["Location"] == "/tools/url-generator/"


def test_it_refuses_a_wrong_password(client, owner):
    r = client.post("/accounts/login/", {"username": "owner", "password": "wrong"})
    assert r.status_code == 200
    assert "user name or password is wrong" in r.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_logs_out_with_a_post_from_the_nav(client, owner):
    client.force_login(owner)
    body = client.get("/domains/").content.decode()
    assert 'id="logout-form"' in body and 'action="/accounts/logout/"' in body
    r = client.post("/accounts/logout/")
    assert r.status_code == 302
    assert client.get("/domains/").status_code == 302


def test_it_does_not_log_out_on_get(client, owner):
    client.force_login(owner)
    assert client.get("/accounts/logout/").status_code == 405
    assert client.get("/domains/").status_code == 200


def test_it_links_the_console_parts_in_the_nav(client, owner):
    client.force_login(owner)
    body = client.get("/domains/").content.decode()
    for href in ('href="/domains/"', 'href="/tools/url-generator/"', 'href="/api/v1/docs/"'):
        assert href in body


def test_it_names_the_missing_fields(client):
    body = client.post("/accounts/login/", {"username": "", "password": ""}).content.decode()
    assert "enter your user name" in body and "enter your password" in body
