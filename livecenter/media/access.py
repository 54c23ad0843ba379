"""A domain's access lists (issue 16; ApsaraVideo Live's "Access control":
`ip_allow_list_set` / `ip_black_list_set`, `referer_white_list_set` /
`referer_black_list_set`).

Each list is off, an allow list or a deny list, never both (as ApsaraVideo
Live's are mutually exclusive). The IP list holds IPv4 and IPv6 networks
and single addresses and applies to every protocol, publishing on an ingest
domain and playing on a streaming domain; the Referer list holds exact
hosts and `*.example.com` wildcards and applies where the request has a
Referer, HTTP (HTTP-FLV, HLS, WHEP). An allow list may take an empty
Referer (a player app, a player opened from a bookmark) or not.

Pure: the console validates what an operator types with `parse_ip_entries`
and `parse_referer_entries` (whose errors name the entry), stores the
normalised entries, and the node's policy builds an `AccessPolicy` from
them; admission asks `refusal()` at each session start (each HLS request).
The reasons are the `X-LiveCenter-Error` of a 403 and the INFO line; a
Referer is named by its host alone (a page URL may carry anyone's tokens).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

# Entries per list. Every session start (and every HLS request) walks the
# list, so it stays short; 100 covers an operator's offices, studios and
# partner sites. A longer list is a firewall's job, not a CDN rule's.
MAX_IP_ENTRIES = 100
MAX_REFERER_ENTRIES = 100
# A Referer entry is a hostname (RFC 1035 2.3.4), or `*.` and one.
MAX_REFERER_ENTRY_CHARS = 2 + 253
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class AccessMode(StrEnum):
    OFF = "off"
    ALLOW = "allow"
    DENY = "deny"


class AccessListError(ValueError):
    """An entry (or a list) an operator cannot save; the message names it and the fix."""


def _ip_entry(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise AccessListError(
            f"{text!r} is not an IP address or network: write 203.0.113.7, 203.0.113.0/24 or 2001:db8::/32"
        ) from None
    raise AccessListError(f"{text!r} has bits set past its prefix length: did you mean {network}?")


def parse_ip_entries(entries: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The entries in normal form (`10.0.0.0/8`, `203.0.113.7`, `2001:db8::/32`),
    duplicates dropped, order kept. Raises AccessListError naming the first bad entry."""
    seen: dict[str, None] = {}
    for raw in entries:
        text = str(raw).strip()
        if not text:
            continue
        network = _ip_entry(text)
        single = network.prefixlen == network.max_prefixlen
        seen[str(network.network_address) if single else str(network)] = None
    if len(seen) > MAX_IP_ENTRIES:
        raise AccessListError(f"at most {MAX_IP_ENTRIES} addresses or networks, not {len(seen)}")
    return tuple(seen)


def _hostname(text: str) -> str:
    """`text` as a lower-case ASCII hostname, or raise AccessListError."""
    name = text.rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise AccessListError(f"{text!r} is not a valid internationalised host name") from None
    try:
        return str(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        pass
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL_RE.match(label) for label in labels):
        raise AccessListError(
            f"{text!r} is not a host name: write the host alone (player.example.com or *.example.com),"
            " without scheme, port or path"
        )
    return name


def parse_referer_entries(entries: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Hosts (`example.com`, an IP address) and wildcards (`*.example.com`:
    any name under example.com, not example.com itself) in lower-case ASCII,
    duplicates dropped, order kept. Raises AccessListError naming the first bad entry."""
    seen: dict[str, None] = {}
    for raw in entries:
        text = str(raw).strip()
        if not text:
            continue
        if len(text) > MAX_REFERER_ENTRY_CHARS:
            raise AccessListError(f"{text[:40]!r}… is longer than {MAX_REFERER_ENTRY_CHARS} characters")
        wildcard = text.startswith("*.")
        host = _hostname(text[2:] if wildcard else text)
        if wildcard and (_address(host) is not None or "." not in host):
            raise AccessListError(f"{text!r}: a wildcard is `*.` and a domain name, such as *.example.com")
        seen[f"*.{host}" if wildcard else host] = None
    if len(seen) > MAX_REFERER_ENTRIES:
        raise AccessListError(f"at most {MAX_REFERER_ENTRIES} hosts, not {len(seen)}")
    return tuple(seen)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client's address; an IPv4-mapped IPv6 one (a dual-stack socket's) as IPv4."""
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_of(peer: str) -> str:
    """The address of a `host:port` peer (listener.peer_name: `[::1]:5000` for IPv6)."""
    host = peer.rpartition(":")[0] if ":" in peer else peer
    return host.strip("[]")


@dataclass(frozen=True, slots=True)
class IpAccessList:
    mode: AccessMode
    entries: tuple[str, ...]  # parse_ip_entries' normal form
    # (version, network as an int, mask) of each entry: a test is two integer operations.
    _networks: tuple[tuple[int, int, int], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        networks = [ipaddress.ip_network(entry) for entry in self.entries]
        packed = tuple((n.version, int(n.network_address), int(n.netmask)) for n in networks)
        object.__setattr__(self, "_networks", packed)

    def contains(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        version, value = address.version, int(address)
        return any(v == version and value & mask == net for v, net, mask in self._networks)

    def refusal(self, client_address: str) -> str | None:
        address = _address(client_address)
        listed = address is not None and self.contains(address)
        shown = str(address) if address is not None else client_address
        if self.mode is AccessMode.DENY and listed:
            return f"address {shown} is on the domain's deny list"
        if self.mode is AccessMode.ALLOW and not listed:
            return f"address {shown} is not on the domain's allow list"
        return None


def referer_host(referer: str) -> str:
    """The host a Referer names, lower-case; "" when it names none."""
    try:
        host = urlsplit(referer.strip()).hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".")


@dataclass(frozen=True, slots=True)
class RefererAccessList:
    mode: AccessMode
    entries: tuple[str, ...]  # parse_referer_entries' normal form
    allow_empty: bool = False  # an allow list: a request without a Referer is admitted

    def matches(self, host: str) -> bool:
        for entry in self.entries:
            if entry.startswith("*."):
                if host.endswith(entry[1:]):
                    return True
            elif host == entry:
                return True
        return False

    def refusal(self, referer: str | None) -> str | None:
        """`referer` is the header's value, None (or "") when the request has none."""
        if not referer or not referer.strip():
            if self.mode is AccessMode.ALLOW and not self.allow_empty:
                return "empty Referer is not on the domain's allow list"
            return None
        host = referer_host(referer)
        listed = bool(host) and self.matches(host)
        shown = host or "(no host)"
        if self.mode is AccessMode.DENY and listed:
            return f"Referer {shown} is on the domain's deny list"
        if self.mode is AccessMode.ALLOW and not listed:
            return f"Referer {shown} is not on the domain's allow list"
        return None


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """A domain's lists; None where a list is off."""

    ip: IpAccessList | None = None
    referer: RefererAccessList | None = None

    @classmethod
    def build(
        cls,
        ip_mode: str,
        ip_entries: tuple[str, ...] | list[str],
        referer_mode: str = AccessMode.OFF,
        referer_entries: tuple[str, ...] | list[str] = (),
        referer_allow_empty: bool = False,
    ) -> AccessPolicy:
        """From what the console stores (already validated)."""
        ip = None if ip_mode == AccessMode.OFF else IpAccessList(AccessMode(ip_mode), tuple(ip_entries))
        referer = None
        if referer_mode != AccessMode.OFF:
            referer = RefererAccessList(AccessMode(referer_mode), tuple(referer_entries), referer_allow_empty)
        return cls(ip, referer)

    def refusal(self, client_address: str, referer: str | None = None, has_referer: bool = False) -> str | None:
        """Why a client at `client_address` is refused, or None. `has_referer`:
        the request is one that carries a Referer (HTTP); RTMP and SRT have none,
        so the Referer list does not apply to them."""
        if self.ip is not None:
            reason = self.ip.refusal(client_address)
            if reason:
                return reason
        if self.referer is not None and has_referer:
            return self.referer.refusal(referer)
        return None


NO_ACCESS_LISTS = AccessPolicy()

_REFUSAL_RE = re.compile(r"^(address|Referer|empty Referer) .*(is|is not) on the domain's (allow|deny) list$")


def is_access_refusal(reason: str) -> bool:
    """Whether a refusal's reason is one of this module's (for protocols that code refusals: SRT's 1403)."""
    return _REFUSAL_RE.match(reason) is not None


def tengine_error(reason: str) -> str | None:
    """The CDN's `X-Tengine-Error` for an access refusal (reference/aliyun_spec.md
    1.3), for tools written against ApsaraVideo Live; None for other reasons."""
    match = _REFUSAL_RE.match(reason)
    if match is None:
        return None
    if match[1] == "address":
        return "denied by IP ACL = blacklist" if match[3] == "deny" else "denied by IP ACL = not in whitelist"
    return "denied by Referer ACL"
