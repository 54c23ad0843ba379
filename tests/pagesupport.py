"""Helpers shared by the console page tests (tests/test_pages_*.py)."""

from __future__ import annotations

from urllib.parse import quote

from django.utils.html import escape

from domains import services


def add_ingest(owner, name: str = "push.example.com", live_center: str = "cn-shanghai", region: str = "global"):
    return services.add_domain(owner, name, "ingest", region, live_center)


def add_streaming(owner, name: str = "play.example.com", live_center: str = "cn-shanghai", region: str = "global"):
    return services.add_domain(owner, name, "streaming", region, live_center)


def page(response) -> str:
    return response.content.decode()


def assert_field_error(response, form_name: str, field: str, words: str) -> None:
    """The page re-rendered its form with an error on `field` whose message
    contains `words`, and shows that message."""
    assert response.status_code == 200
    form = response.context[form_name]
    messages = form.errors.get(field, [])
    assert any(words in m for m in messages), f"{field} errors: {messages}"
    assert escape(words) in page(response)


def assert_login_redirect(response, path: str) -> None:
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={quote(path, safe='/')}"
