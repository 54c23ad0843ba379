import pytest

from domains.models import Domain
from tests.pagesupport import add_ingest, assert_field_error, assert_login_redirect, page

pytestmark = pytest.mark.django_db

VALID = {"domain_type": "ingest", "domain_name": "push.example.com", "region": "global", "live_center": "cn-shanghai"}


def test_it_requires_login(client):
    assert_login_redirect(client.get("/domains/add/"), "/domains/add/")
    assert_login_redirect(client.post("/domains/add/", VALID), "/domains/add/")
    assert not Domain.objects.exists()


def test_it_shows_the_form(client, owner):
    client.force_login(owner)
    body = page(client.get("/domains/add/"))
    for name in ("domain_type", "domain_name", "region", "live_center"):
        assert f'name="{name}"' in body
    assert 'id="id_domain_type_0"' in body and 'value="ingest"' in body and 'value="streaming"' in body
    assert "cannot be changed later" in body
    # Live centers are labelled with their cities.
    assert "China (Beijing) — cn-beijing" in body
    assert "Germany (Frankfurt) — eu-central-1" in body
    assert 'value="overseas"' in body and "Outside Chinese mainland" in body


def test_it_adds_a_domain_and_goes_to_its_cname_guide(client, owner):
    client.force_login(owner)
    r = client.post("/domains/add/", VALID)
    assert r.status_code == 302
    assert r["Location"] == "/domains/push.example.com/cname/"
    domain = Domain.objects.get()
    assert (domain.owner, domain.domain_type, domain.region, domain.live_center) == (
        owner,
        "ingest",
        "global",
        "cn-shanghai",
    )
    r = client.get(r["Location"])
    assert "Added push.example.com" in page(r)


def test_it_adds_an_internationalised_name(client, owner):
    client.force_login(owner)
    r = client.post("/domains/add/", {**VALID, "domain_type": "streaming", "domain_name": "直播.例子.中国"})
    domain = Domain.objects.get()
    assert domain.domain_name.startswith("xn--")
    assert r["Location"] == f"/domains/{domain.domain_name}/cname/"
    assert domain.rts_enabled


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("domain_name", "*.example.com", "domain name must not be a wildcard"),
        ("domain_name", "", "domain name is required"),
        ("domain_name", "http://live.example.com/", "without scheme, port or path"),
        ("domain_name", "localhost", "at least two labels"),
        ("domain_type", "", "domain type is required"),
        ("domain_type", "relay", "domain type must be one of the listed choices"),
        ("region", "moon", "acceleration region must be one of the listed choices"),
        ("live_center", "cn-mars", "live center must be one of the listed choices"),
    ],
)
def test_it_names_the_field_of_bad_input_and_saves_nothing(client, owner, field, value, words):
    client.force_login(owner)
    r = client.post("/domains/add/", {**VALID, field: value})
    assert_field_error(r, "form", field, words)
    assert not Domain.objects.exists()


def test_it_refuses_a_name_another_operator_has(client, owner, outsider):
    add_ingest(outsider, "push.example.com")
    client.force_login(owner)
    r = client.post("/domains/add/", VALID)
    assert_field_error(r, "form", "domain_name", "the specified domain already exists")
    assert not Domain.objects.filter(owner=owner).exists()


def test_it_refuses_a_domain_past_the_limit(client, owner, settings):
    settings.LIVECENTER_MAX_DOMAINS_PER_OPERATOR = 1
    add_ingest(owner, "first.example.com")
    client.force_login(owner)
    r = client.post("/domains/add/", VALID)
    assert_field_error(r, "form", "domain_name", "you have reached the limit of 1 domains")
    assert "1 of 1 domains" in page(r)
    assert Domain.objects.count() == 1


def test_it_keeps_what_was_typed_after_an_error(client, owner):
    client.force_login(owner)
    r = client.post("/domains/add/", {**VALID, "domain_type": ""})
    assert 'value="push.example.com"' in page(r)


def icp_state(body: str) -> bool:
    """True when the page says an ICP filing is required."""
    required = body.split('id="icp-required"')[1].split(">")[0]
    not_required = body.split('id="icp-not-required"')[1].split(">")[0]
    assert ("hidden" in required) != ("hidden" in not_required)
    return "hidden" not in required


@pytest.mark.parametrize(
    ("region", "live_center", "required"),
    [
        ("mainland", "cn-beijing", True),
        ("global", "ap-southeast-1", True),
        ("overseas", "cn-shenzhen", True),
        ("overseas", "ap-southeast-1", False),
        ("overseas", "eu-central-1", False),
    ],
)
def test_it_says_whether_an_icp_filing_is_needed(client, owner, region, live_center, required):
    client.force_login(owner)
    # A re-rendered form (here: no domain type) states the rule for what was chosen.
    r = client.post("/domains/add/", {**VALID, "domain_type": "", "region": region, "live_center": live_center})
    assert icp_state(page(r)) is required


def test_it_says_an_icp_filing_is_needed_for_the_initial_choice(client, owner):
    client.force_login(owner)
    assert icp_state(page(client.get("/domains/add/"))) is True


def test_it_gives_the_script_the_mainland_live_centers(client, owner):
    client.force_login(owner)
    body = page(client.get("/domains/add/"))
    assert 'data-mainland-live-centers="cn-beijing cn-qingdao cn-shanghai cn-shenzhen"' in body
    assert 'data-icp-free-region="overseas"' in body
    assert "/static/js/icp.js" in body
