import pytest

from domains.lib.hostnames import HostnameError, display_name, normalize_domain_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("live.example.com", "live.example.com"),
        ("  Live.EXAMPLE.com. ", "live.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.c-d.example", "a-b.c-d.example"),
    ],
)
def test_it_normalises(raw, expected):
    assert normalize_domain_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "enter a domain name"),
        ("*.example.com", "wildcard"),
        ("live.*.example.com", "wildcard"),
        ("http://live.example.com", "without scheme"),
        ("live.example.com:1935", "without scheme, port"),
        ("localhost", "at least two labels"),
        ("10.0.0.1", "IP address"),
        ("-live.example.com", "label '-live'"),
        ("live_.example.com", "label 'live_'"),
        ("a..example.com", "label ''"),
        ("x" * 64 + ".example.com", "1-63"),
        (("a" * 60 + ".") * 5 + "com", "at most 253"),
        ("xn--zz.example", "not valid punycode"),
    ],
)
def test_it_refuses_with_the_reason(raw, reason):
    with pytest.raises(HostnameError, match=None) as info:
        normalize_domain_name(raw)
    assert reason in str(info.value)


def test_it_displays_the_unicode_form():
    assert display_name("xn--bcher-kva.example") == "bücher.example"
    assert display_name("live.example.com") == "live.example.com"
