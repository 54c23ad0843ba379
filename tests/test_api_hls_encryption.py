"""HLS encryption of a streaming domain in the domain API (/api/v1/domains/{name}/)."""

import pytest
from asgiref.sync import async_to_sync

from domains import services
from domains.models import Domain
from nodes.bridge import DatabasePolicy
from tests.apisupport import add_ingest, add_streaming, client_for, domain_url

pytestmark = pytest.mark.django_db

URL = domain_url("play.example.com")
ROTATION = "hls_key_rotation_segments"
RANGE_ERROR = "key rotation must be a whole number of segments, 1-1000"


@pytest.fixture
def domain(owner):
    return add_streaming(owner)


def stored(name: str = "play.example.com") -> Domain:
    return Domain.objects.get(domain_name=name)


def test_it_shows_encryption_off_with_a_period_of_ten_for_a_new_streaming_domain(owner, domain):
    body = client_for(owner).get(URL).json()
    assert (body["hls_encryption"], body["hls_key_rotation_segments"], body["hls_encryption_apps"]) == (False, 10, [])


def test_it_shows_no_hls_encryption_for_an_ingest_domain(owner):
    add_ingest(owner)
    body = client_for(owner).get(domain_url("push.example.com")).json()
    assert (body["hls_encryption"], body["hls_key_rotation_segments"], body["hls_encryption_apps"]) == (None,) * 3


def test_it_switches_encryption_on_for_some_apps_and_the_node_sees_it(owner, domain):
    response = client_for(owner).patch(
        URL, {"hls_encryption": True, "hls_key_rotation_segments": 3, "hls_encryption_apps": ["live", "vip"]},
        format="json",
    )  # fmt: skip
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["hls_encryption"], body["hls_key_rotation_segments"], body["hls_encryption_apps"]) == (
        True, 3, ["live", "vip"],
    )  # fmt: skip
    got = async_to_sync(DatabasePolicy().domain_config)("play.example.com")
    assert (got.hls_key_period("live"), got.hls_key_period("vip"), got.hls_key_period("other")) == (3, 3, 0)
    client_for(owner).patch(URL, {"hls_encryption_apps": []}, format="json")
    assert stored().hls_encrypts("other")


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({ROTATION: 0}, ROTATION, RANGE_ERROR),
        ({ROTATION: 1001}, ROTATION, RANGE_ERROR),
        ({ROTATION: "ten"}, ROTATION, "key rotation must be a whole number of segments"),
        ({"hls_encryption_apps": ["live", "no spaces"]}, "hls_encryption_apps", "app name 'no spaces' must be"),
        ({"hls_encryption_apps": [f"a{i}" for i in range(51)]}, "hls_encryption_apps", "at most 50 apps"),
    ],
)  # fmt: skip
def test_it_refuses_bad_settings_and_keeps_the_old_ones(owner, domain, body, field, message):
    response = client_for(owner).patch(URL, {"hls_encryption": True, **body}, format="json")
    assert response.status_code == 400
    assert message in response.json()[field][0]
    after = stored()
    assert (after.hls_encryption, after.hls_key_rotation_segments, after.hls_encryption_apps) == (False, 10, "")


def test_it_refuses_hls_encryption_on_an_ingest_domain(owner):
    add_ingest(owner)
    response = client_for(owner).patch(domain_url("push.example.com"), {"hls_encryption": True}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "hls_encryption": ["hls_encryption applies only to streaming domains: viewers play HLS from them"]
    }
    assert not stored("push.example.com").hls_encryption


def test_it_refuses_an_outsider(owner, outsider, domain):
    response = client_for(outsider).patch(URL, {"hls_encryption": True}, format="json")
    assert response.status_code == 404
    assert not stored().hls_encryption


def test_the_service_keeps_what_it_is_not_given(owner, domain):
    services.configure_hls_encryption(domain, enabled=True, key_rotation_segments=4, apps=["live"])
    services.configure_hls_encryption(domain, enabled=False)
    after = stored()
    assert (after.hls_encryption, after.hls_key_rotation_segments, after.hls_encryption_app_list) == (
        False,
        4,
        ["live"],
    )
