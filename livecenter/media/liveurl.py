"""Every live URL form of DESIGN.md ("Addresses"), written and read back.

One module for both directions so the console's URL generator, the
troubleshooting tool and the engine's SRT ingest agree on each form:
RTMP, HTTP-FLV, HLS, RTS (WHEP and `artc://`) and the SRT stream ID
(`#!::h={domain},r=/{app}/{stream}?auth_key=…,m=publish`, or `m=request` to
play). Pure: the caller passes the domains' keys, the expiry time and the
ports; no clock, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from .admission import MAX_NAME_CHARS, domain_of, is_ip_literal
from .signing import sign

NAME_RE = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_NAME_CHARS}}}$")
NAME_RULE = f"1-{MAX_NAME_CHARS} letters, digits, '_' or '-'"
TEMPLATE_RE = re.compile(r"^[A-Za-z0-9-]{1,32}$")
# Long enough for any URL the URL generator makes; longer is not ours.
MAX_URL_CHARS = 4096
# libsrt caps SRTO_STREAMID at 512 characters.
MAX_STREAMID_CHARS = 512
SRT_MODES = ("publish", "request")
HTTP_SUFFIXES = {".flv": "flv", ".m3u8": "hls", ".whep": "rts", ".whip": "whip"}
SCHEME_PROTOCOLS = {"rtmp": "rtmp", "rtmps": "rtmp", "artc": "rts", "srt": "srt"}


class LiveUrlError(ValueError):
    """The URL is not one of ours; the message says why, for a person."""


# ---------------------------------------------------------------- writing


@dataclass(frozen=True)
class SignedHost:
    """A domain as the URL builder needs it."""

    host: str
    key: str | None  # None when URL signing is off for the domain
    validity_seconds: int
    # HTTPS on (issue 15): https:// and rtmps:// on the TLS ports, and the
    # WHEP URL with them.
    https: bool = False


@dataclass(frozen=True)
class Ports:
    rtmp: int = 1935
    http: int = 8080
    srt: int = 1105
    https: int = 443
    rtmps: int = 1936


def _rtmp_base(target: SignedHost, ports: Ports) -> str:
    if target.https:
        return f"rtmps://{target.host}:{ports.rtmps}"
    return f"rtmp://{target.host}:{ports.rtmp}"


def _auth_query(target: SignedHost, uri: str, expires_at: int, rand: str) -> str:
    if target.key is None:
        return ""
    # The URL stays valid until timestamp + validity, so the timestamp that
    # makes it expire at `expires_at` is expires_at - validity.
    timestamp = max(0, expires_at - target.validity_seconds)
    return "auth_key=" + sign(uri, target.key, timestamp, rand=rand)


def _with_query(url: str, query: str) -> str:
    return f"{url}?{query}" if query else url


@dataclass(frozen=True)
class SrtStreamId:
    """The SRT access-control stream ID of DESIGN.md: the domain, the
    resource `/{app}/{stream}` with its token, and the mode. `params` are
    the resource's other query parameters (a node's token between nodes of
    the cluster: edge.py), in their order."""

    host: str
    app: str
    stream: str
    auth_key: str | None = None
    mode: str = "publish"
    params: tuple[tuple[str, str], ...] = ()

    @property
    def query(self) -> dict[str, str]:
        """The resource's query: `auth_key` and `params`."""
        return {**({"auth_key": self.auth_key} if self.auth_key else {}), **dict(self.params)}

    @property
    def resource(self) -> str:
        auth = f"auth_key={self.auth_key}" if self.auth_key else ""
        query = "&".join(part for part in (auth, urlencode(self.params)) if part)
        return _with_query(f"/{self.app}/{self.stream}", query)

    @property
    def signed_uri(self) -> str:
        # SRT is signed over the bare path; `m=` is not part of what is signed
        # (reference/aliyun_spec.md 2).
        return f"/{self.app}/{self.stream}"

    def __str__(self) -> str:
        return f"#!::h={self.host},r={self.resource},m={self.mode}"


def ingest_urls(target: SignedHost, app: str, stream: str, expires_at: int, ports: Ports, rand: str = "0") -> dict:
    """The publish URLs of one stream: RTMP(S), SRT, RTS as `artc://` and RTS
    as WHIP (RFC 9725, issue 17). Every form carries the one token signed
    over `/{app}/{stream}` (DESIGN.md, URL signing); the WHIP URL is on the
    HTTP port, or the HTTPS one where the domain has HTTPS on, by the same
    rule as the playback WHEP URL."""
    path = f"/{app}/{stream}"
    auth = _auth_query(target, path, expires_at, rand)
    h = target.host
    streamid = SrtStreamId(h, app, stream, auth.removeprefix("auth_key=") or None, "publish")
    base = f"https://{h}:{ports.https}{path}" if target.https else f"http://{h}:{ports.http}{path}"
    return {
        "rtmp": _with_query(f"{_rtmp_base(target, ports)}{path}", auth),
        "srt": f"srt://{h}:{ports.srt}?streamid={streamid}",
        "rts": _with_query(f"artc://{h}{path}", auth),
        "whip": _with_query(f"{base}.whip", auth),
    }


def playback_urls(
    target: SignedHost,
    app: str,
    stream: str,
    template: str | None,
    expires_at: int,
    ports: Ports,
    rand: str = "0",
) -> dict:
    name = f"{stream}_{template}" if template else stream
    path = f"/{app}/{name}"
    h = target.host
    base = f"https://{h}:{ports.https}{path}" if target.https else f"http://{h}:{ports.http}{path}"
    # RTS and SRT are signed over the bare path, so the WHEP URL and the SRT
    # stream ID carry the same token as the artc:// form (DESIGN.md, URL signing).
    rts_auth = _auth_query(target, path, expires_at, rand)
    streamid = SrtStreamId(h, app, name, rts_auth.removeprefix("auth_key=") or None, "request")
    return {
        "rtmp": _with_query(f"{_rtmp_base(target, ports)}{path}", rts_auth),
        "flv": _with_query(f"{base}.flv", _auth_query(target, f"{path}.flv", expires_at, rand)),
        "m3u8": _with_query(f"{base}.m3u8", _auth_query(target, f"{path}.m3u8", expires_at, rand)),
        "rts": _with_query(f"artc://{h}{path}", rts_auth),
        "whep": _with_query(f"{base}.whep", rts_auth),
        "srt": f"srt://{h}:{ports.srt}?streamid={streamid}",
    }


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class LiveUrl:
    url: str
    protocol: str  # "rtmp", "flv", "hls", "rts", "whip" (RTS ingest over HTTP), "srt"
    host: str  # the domain the URL names (the `domain=` fallback applied)
    app: str
    stream: str
    signed_uri: str  # the path the Type A signature covers
    auth_key: str | None
    # SRT only: the stream ID's m=, "publish" or "request" (to play; what
    # libsrt callers mean when they leave m= out). None for other protocols.
    srt_mode: str | None = None

    @property
    def names_ip_only(self) -> bool:
        """The host is an address and no `domain=` names the domain."""
        return is_ip_literal(self.host) or self.host in ("localhost", "")

    @property
    def stream_path(self) -> str:
        return f"{self.app}/{self.stream}"


def _path_parts(path: str) -> tuple[str, str]:
    parts = [p for p in path.split("/") if p]
    if len(parts) != 2:
        raise LiveUrlError(f"the path must be /{{app}}/{{stream}}, not {path or '/'!r}")
    app, stream = (unquote(p) for p in parts)
    for label, value in (("app", app), ("stream", stream)):
        if not NAME_RE.match(value):
            raise LiveUrlError(f"the {label} name {value!r} must be {NAME_RULE}")
    return app, stream


def parse_srt_streamid(streamid: str) -> SrtStreamId:
    """Read `#!::h=…,r=/{app}/{stream}?auth_key=…,m=publish` as a libsrt
    caller sets it (SRTO_STREAMID). Keys other than h, r and m are ignored,
    as the SRT access-control convention allows; a repeated key is refused."""
    if len(streamid) > MAX_STREAMID_CHARS:
        raise LiveUrlError(f"the SRT stream ID is longer than {MAX_STREAMID_CHARS} characters")
    if not streamid.startswith("#!::"):
        raise LiveUrlError("an SRT stream ID must be #!::h={domain},r=/{app}/{stream}?auth_key=…,m=publish")
    fields: dict[str, str] = {}
    for item in streamid[4:].split(","):
        key, found, value = item.partition("=")
        if not found:
            raise LiveUrlError(f"the SRT stream ID item {item!r} is not key=value")
        if key in fields:
            raise LiveUrlError(f"the SRT stream ID names {key!r} twice")
        fields[key] = value
    if "r" not in fields:
        raise LiveUrlError("the SRT stream ID has no r=/{app}/{stream}")
    mode = fields.get("m", "request")
    if mode not in SRT_MODES:
        raise LiveUrlError(f"the SRT mode m={mode!r} must be publish or request")
    path, _, inner = fields["r"].partition("?")
    app, stream = _path_parts(path)
    items = parse_qsl(inner, keep_blank_values=True)
    params = tuple((key, value) for key, value in items if key != "auth_key")
    return SrtStreamId(fields.get("h", "").lower(), app, stream, dict(items).get("auth_key"), mode, params)


def _srt(url: str) -> tuple[str, SrtStreamId]:
    # The "#" would start a fragment in any other URL: take streamid as written.
    head, found, streamid = url.partition("streamid=")
    if not found:
        raise LiveUrlError("an SRT URL carries the stream in streamid=#!::h=…,r=/{app}/{stream}?auth_key=…,m=publish")
    streamid = unquote(streamid)
    if not streamid.startswith("#!::"):
        raise LiveUrlError("an SRT URL carries the stream in streamid=#!::h=…,r=/{app}/{stream}?auth_key=…,m=publish")
    return head, parse_srt_streamid(streamid)


def parse_live_url(url: str) -> LiveUrl:
    url = (url or "").strip()
    if not url:
        raise LiveUrlError("the URL is empty")
    if len(url) > MAX_URL_CHARS:
        raise LiveUrlError(f"the URL is longer than {MAX_URL_CHARS} characters")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "srt":
        head, sid = _srt(url)
        try:
            hostname = urlsplit(head.rstrip("?&")).hostname or ""
        except ValueError as exc:
            raise LiveUrlError(f"the URL does not parse: {exc}") from None
        host = domain_of(sid.host or hostname, {})
        return LiveUrl(url, "srt", host, sid.app, sid.stream, sid.signed_uri, sid.auth_key, sid.mode)
    try:
        parts = urlsplit(url)
        hostname = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise LiveUrlError(f"the URL does not parse: {exc}") from None
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    path = parts.path
    if scheme in ("http", "https"):
        suffix = next((s for s in HTTP_SUFFIXES if path.endswith(s)), None)
        if suffix is None:
            raise LiveUrlError("an HTTP URL must end in .flv (HTTP-FLV), .m3u8 (HLS), .whep (RTS) or .whip (WHIP)")
        protocol = HTTP_SUFFIXES[suffix]
        app, stream = _path_parts(path[: -len(suffix)])
        # RTS (WHEP and WHIP) is signed over the bare path; FLV and HLS over the path with its suffix.
        signed = f"/{app}/{stream}" if protocol in ("rts", "whip") else f"/{app}/{stream}{suffix}"
    elif scheme in SCHEME_PROTOCOLS:
        protocol = SCHEME_PROTOCOLS[scheme]
        app, stream = _path_parts(path)
        signed = f"/{app}/{stream}"
    else:
        raise LiveUrlError(f"the scheme must be rtmp, rtmps, http, https, artc or srt, not {scheme or 'none'!r}")
    host = domain_of(hostname, query)
    return LiveUrl(url, protocol, host, app, stream, signed, query.get("auth_key"))
