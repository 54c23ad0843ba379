"""livecenter/media/access.py: a domain's IP and Referer lists, pure."""

import pytest

from livecenter.media.access import (
    MAX_IP_ENTRIES,
    MAX_REFERER_ENTRIES,
    NO_ACCESS_LISTS,
    AccessListError,
    AccessPolicy,
    address_of,
    is_access_refusal,
    parse_ip_entries,
    parse_referer_entries,
    tengine_error,
)


def ip_list(mode: str, *entries: str) -> AccessPolicy:
    return AccessPolicy.build(mode, parse_ip_entries(entries))


def referer_list(mode: str, *entries: str, allow_empty: bool = False) -> AccessPolicy:
    return AccessPolicy.build("off", (), mode, parse_referer_entries(entries), allow_empty)


# --- IP lists ---------------------------------------------------------------------


def test_it_normalises_ip_entries_and_drops_duplicates_keeping_order():
    entries = [" 10.0.0.0/8 ", "203.0.113.7/32", "2001:DB8::/32", "", "203.0.113.7", "::1"]
    assert parse_ip_entries(entries) == ("10.0.0.0/8", "203.0.113.7", "2001:db8::/32", "::1")


@pytest.mark.parametrize(
    "entry, message",
    [
        ("10.0.0.1/8", "'10.0.0.1/8' has bits set past its prefix length: did you mean 10.0.0.0/8?"),
        ("2001:db8::1/32", "did you mean 2001:db8::/32?"),
        ("1.2.3.4/33", "'1.2.3.4/33' is not an IP address or network"),
        ("256.1.1.1", "'256.1.1.1' is not an IP address or network"),
        ("example.com", "'example.com' is not an IP address or network: write 203.0.113.7"),
        ("10.0.0.0-10.0.0.9", "'10.0.0.0-10.0.0.9' is not an IP address or network"),
    ],
)
def test_it_names_a_bad_ip_entry(entry, message):
    with pytest.raises(AccessListError) as caught:
        parse_ip_entries(["192.0.2.1", entry])
    assert message in str(caught.value)


def test_it_takes_the_most_ip_entries_and_refuses_one_more():
    entries = [f"10.0.{i // 256}.{i % 256}" for i in range(MAX_IP_ENTRIES)]
    assert len(parse_ip_entries(entries)) == MAX_IP_ENTRIES
    with pytest.raises(AccessListError, match=f"at most {MAX_IP_ENTRIES} addresses or networks, not 101"):
        parse_ip_entries([*entries, "192.0.2.1"])


def test_a_deny_list_refuses_what_is_on_it_and_admits_the_rest():
    policy = ip_list("deny", "127.0.0.2", "10.0.0.0/8", "2001:db8::/32")
    assert policy.refusal("127.0.0.2") == "address 127.0.0.2 is on the domain's deny list"
    assert policy.refusal("10.200.1.1") == "address 10.200.1.1 is on the domain's deny list"
    assert policy.refusal("2001:db8:ffff::9") == "address 2001:db8:ffff::9 is on the domain's deny list"
    assert policy.refusal("127.0.0.3") is None
    assert policy.refusal("2001:db9::1") is None


def test_an_allow_list_admits_only_what_is_on_it():
    policy = ip_list("allow", "127.0.0.2", "192.0.2.0/24")
    assert policy.refusal("127.0.0.2") is None
    assert policy.refusal("192.0.2.255") is None
    assert policy.refusal("127.0.0.3") == "address 127.0.0.3 is not on the domain's allow list"
    assert policy.refusal("::1") == "address ::1 is not on the domain's allow list"


def test_it_matches_an_ipv4_mapped_address_as_ipv4():
    # A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
    policy = ip_list("deny", "192.0.2.0/24")
    assert policy.refusal("::ffff:192.0.2.9") == "address 192.0.2.9 is on the domain's deny list"


def test_an_ipv4_network_never_matches_an_ipv6_address_with_the_same_bits():
    policy = ip_list("deny", "0.0.0.0/0")
    assert policy.refusal("::1") is None
    assert policy.refusal("203.0.113.1") is not None


def test_an_allow_list_refuses_an_address_it_cannot_read():
    assert ip_list("allow", "127.0.0.1").refusal("?") == "address ? is not on the domain's allow list"
    assert ip_list("deny", "127.0.0.1").refusal("?") is None


def test_it_reads_the_address_of_a_peer():
    assert address_of("127.0.0.2:5000") == "127.0.0.2"
    assert address_of("[2001:db8::1]:5000") == "2001:db8::1"


# --- Referer lists --------------------------------------------------------------------


def test_it_normalises_referer_entries():
    entries = ["Player.Example.COM", "*.example.org", "例え.jp", "192.0.2.1", "player.example.com.", ""]
    assert parse_referer_entries(entries) == (
        "player.example.com",
        "*.example.org",
        "xn--r8jz45g.jp",
        "192.0.2.1",
    )


@pytest.mark.parametrize(
    "entry, message",
    [
        ("https://example.com/", "is not a host name: write the host alone"),
        ("example.com:8080", "is not a host name"),
        ("exa mple.com", "is not a host name"),
        ("a*.example.com", "is not a host name"),
        ("*.com", "a wildcard is `*.` and a domain name"),
        ("*.192.0.2.1", "a wildcard is `*.` and a domain name"),
        ("*", "is not a host name"),
        ("x" * 256, "is longer than 255 characters"),
    ],
)
def test_it_names_a_bad_referer_entry(entry, message):
    with pytest.raises(AccessListError) as caught:
        parse_referer_entries(["ok.example.com", entry])
    assert message in str(caught.value)
    assert entry[:40] in str(caught.value)


def test_it_takes_the_most_referer_entries_and_refuses_one_more():
    entries = [f"h{i}.example.com" for i in range(MAX_REFERER_ENTRIES)]
    assert len(parse_referer_entries(entries)) == MAX_REFERER_ENTRIES
    with pytest.raises(AccessListError, match=f"at most {MAX_REFERER_ENTRIES} hosts, not 101"):
        parse_referer_entries([*entries, "one.more.example"])


def test_a_wildcard_matches_names_under_the_domain_only():
    policy = referer_list("allow", "*.example.com")
    assert policy.refusal("127.0.0.1", "https://a.example.com/watch", True) is None
    assert policy.refusal("127.0.0.1", "https://a.b.example.com:8443/x?y", True) is None
    assert policy.refusal("127.0.0.1", "https://example.com/", True) == (
        "Referer example.com is not on the domain's allow list"
    )
    assert policy.refusal("127.0.0.1", "https://badexample.com/", True) is not None


def test_an_exact_host_matches_that_host_only():
    policy = referer_list("deny", "evil.example")
    assert policy.refusal("127.0.0.1", "http://evil.example/page", True) == (
        "Referer evil.example is on the domain's deny list"
    )
    assert policy.refusal("127.0.0.1", "http://EVIL.example./page", True) is not None
    assert policy.refusal("127.0.0.1", "http://www.evil.example/", True) is None


def test_an_allow_list_takes_an_empty_referer_only_when_told():
    strict = referer_list("allow", "player.example.com")
    lenient = referer_list("allow", "player.example.com", allow_empty=True)
    for empty in (None, "", "  "):
        assert strict.refusal("127.0.0.1", empty, True) == "empty Referer is not on the domain's allow list"
        assert lenient.refusal("127.0.0.1", empty, True) is None
    assert referer_list("deny", "evil.example").refusal("127.0.0.1", None, True) is None


def test_a_referer_without_a_host_is_not_on_any_list():
    policy = referer_list("allow", "player.example.com")
    assert policy.refusal("127.0.0.1", "not a url", True) == "Referer (no host) is not on the domain's allow list"
    assert referer_list("deny", "player.example.com").refusal("127.0.0.1", "not a url", True) is None


def test_the_referer_list_does_not_apply_where_the_protocol_has_no_referer():
    # RTMP and SRT carry no Referer: an allow list without "allow empty" must not refuse them all.
    assert referer_list("allow", "player.example.com").refusal("127.0.0.1", None, has_referer=False) is None


def test_the_ip_list_is_asked_before_the_referer_list():
    policy = AccessPolicy.build("deny", ("127.0.0.2",), "deny", ("evil.example",))
    assert policy.refusal("127.0.0.2", "http://evil.example/", True) == "address 127.0.0.2 is on the domain's deny list"
    assert (
        policy.refusal("127.0.0.3", "http://evil.example/", True) == "Referer evil.example is on the domain's deny list"
    )


def test_no_lists_admit_everyone():
    assert NO_ACCESS_LISTS.refusal("203.0.113.9", "http://anything.example/", True) is None
    assert AccessPolicy.build("off", (), "off", ()) == NO_ACCESS_LISTS


# --- reasons ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason, tengine",
    [
        ("address 127.0.0.2 is on the domain's deny list", "denied by IP ACL = blacklist"),
        ("address 127.0.0.2 is not on the domain's allow list", "denied by IP ACL = not in whitelist"),
        ("Referer evil.example is on the domain's deny list", "denied by Referer ACL"),
        ("Referer evil.example is not on the domain's allow list", "denied by Referer ACL"),
        ("empty Referer is not on the domain's allow list", "denied by Referer ACL"),
    ],
)
def test_it_knows_its_refusals_and_their_cdn_header(reason, tengine):
    assert is_access_refusal(reason)
    assert tengine_error(reason) == tengine


@pytest.mark.parametrize("reason", ["invalid md5hash", "stream is forbidden", "media node at capacity"])
def test_other_refusals_are_not_access_refusals(reason):
    assert not is_access_refusal(reason)
    assert tengine_error(reason) is None
