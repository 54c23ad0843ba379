"""The CNAME lookup against a real DNS server on loopback (no mocks)."""

import socket

from domains.lib.dnscheck import lookup_cname, make_resolver


def test_it_finds_the_expected_cname(dns_server):
    dns_server.clear()
    dns_server.set_cname("play.example.com", "play.example.com.cname.test")
    result = lookup_cname("play.example.com", "play.example.com.cname.test", make_resolver(dns_server.address, 2))
    assert result.configured
    assert result.found == ["play.example.com.cname.test"]


def test_it_reports_another_cname(dns_server):
    dns_server.clear()
    dns_server.set_cname("play.example.com", "elsewhere.example.net")
    result = lookup_cname("play.example.com", "play.example.com.cname.test", make_resolver(dns_server.address, 2))
    assert not result.configured
    assert result.detail == "play.example.com is a CNAME for elsewhere.example.net, not play.example.com.cname.test"


def test_it_reports_addresses_when_there_is_no_cname(dns_server):
    dns_server.clear()
    dns_server.set_a("play.example.com", "192.0.2.7")
    result = lookup_cname("play.example.com", "x.cname.test", make_resolver(dns_server.address, 2))
    assert not result.configured
    assert result.found == ["192.0.2.7"]
    assert "has no CNAME record; it resolves to 192.0.2.7" in result.detail


def test_it_reports_nxdomain(dns_server):
    dns_server.clear()
    result = lookup_cname("nothing.example.com", "x.cname.test", make_resolver(dns_server.address, 2))
    assert not result.configured
    assert "does not exist in DNS" in result.detail


def test_it_reports_a_silent_server():
    # A UDP socket that never answers.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        result = lookup_cname("play.example.com", "x.cname.test", make_resolver(address, 0.3))
    finally:
        silent.close()
    assert not result.configured
    assert "did not answer within 0.3 s" in result.detail
