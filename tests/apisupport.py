"""Helpers shared by the REST API tests (tests/test_api_*.py)."""

from __future__ import annotations

from urllib.parse import quote

from rest_framework.test import APIClient

from domains import services


def client_for(user=None) -> APIClient:
    """An API client logged in as `user` (session auth), or anonymous."""
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def domain_url(name: str, part: str = "") -> str:
    path = f"/api/v1/domains/{quote(name)}/"
    return f"{path}{part}/" if part else path


def add_ingest(owner, name: str = "push.example.com", live_center: str = "ap-southeast-1"):
    return services.add_domain(owner, name, "ingest", "overseas", live_center)


def add_streaming(owner, name: str = "play.example.com", live_center: str = "ap-southeast-1"):
    return services.add_domain(owner, name, "streaming", "overseas", live_center)
