"""Look up a domain's CNAME over real DNS (dnspython), for the CNAME check."""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.resolver


@dataclass(frozen=True)
class CnameLookup:
    configured: bool
    found: list[str] = field(default_factory=list)  # CNAME targets, or A/AAAA addresses when there is no CNAME
    detail: str = ""  # what was found, in words


def make_resolver(address: str, timeout_seconds: float) -> dns.resolver.Resolver:
    """A resolver for `host[:port]`, or the system's when address is empty."""
    if not address:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        host, port = address, 53
        if address.count(":") == 1:  # host:port; a bare IPv6 address has several colons
            host, port_text = address.rsplit(":", 1)
            port = int(port_text)
        elif address.startswith("[") and "]:" in address:
            host, port_text = address[1:].split("]:", 1)
            port = int(port_text)
        resolver.nameservers = [host]
        resolver.port = port
    resolver.timeout = timeout_seconds
    resolver.lifetime = timeout_seconds
    # The answer must be current: a cached "pending" would hide a fix.
    resolver.cache = None
    return resolver


def _addresses(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            found += [r.to_text() for r in resolver.resolve(name, rdtype, raise_on_no_answer=False)]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers, dns.exception.Timeout):
            pass
    return found


def lookup_cname(domain_name: str, expected_target: str, resolver: dns.resolver.Resolver) -> CnameLookup:
    expected = dns.name.from_text(expected_target)
    try:
        answer = resolver.resolve(domain_name, "CNAME")
    except dns.resolver.NXDOMAIN:
        return CnameLookup(False, [], f"{domain_name} does not exist in DNS (NXDOMAIN)")
    except dns.resolver.NoAnswer:
        addresses = _addresses(resolver, domain_name)
        if addresses:
            return CnameLookup(
                False, addresses, f"{domain_name} has no CNAME record; it resolves to {', '.join(addresses)}"
            )
        return CnameLookup(False, [], f"{domain_name} has no CNAME record")
    except dns.resolver.NoNameservers:
        return CnameLookup(False, [], "the DNS server refused or failed the query (SERVFAIL)")
    except dns.exception.Timeout:
        return CnameLookup(False, [], f"the DNS server did not answer within {resolver.lifetime:g} s")
    targets = [r.target for r in answer]
    texts = [t.to_text(omit_final_dot=True) for t in targets]
    if expected in targets:
        return CnameLookup(True, texts, f"{domain_name} is a CNAME for {', '.join(texts)}")
    return CnameLookup(False, texts, f"{domain_name} is a CNAME for {', '.join(texts)}, not {expected_target}")
