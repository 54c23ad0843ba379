"""Reading an ingest or playback URL back into its parts (the troubleshooting
tool). Pure: no database, no clock. The forms are DESIGN.md's "Addresses",
the ones domains/lib/liveurls.py builds."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from domains.lib.liveurls import NAME_RE
from livecenter.media.admission import domain_of, is_ip_literal

# Long enough for any URL the URL generator makes; longer is not ours.
MAX_URL_CHARS = 4096
HTTP_SUFFIXES = {".flv": "flv", ".m3u8": "hls", ".whep": "rts"}
SCHEME_PROTOCOLS = {"rtmp": "rtmp", "artc": "rts", "srt": "srt"}


class LiveUrlError(ValueError):
    """The URL is not one of ours; the message says why, for a person."""


@dataclass(frozen=True)
class LiveUrl:
    url: str
    protocol: str  # "rtmp", "flv", "hls", "rts", "srt"
    host: str  # the domain the URL names (the `domain=` fallback applied)
    app: str
    stream: str
    signed_uri: str  # the path the Type A signature covers
    auth_key: str | None

    @property
    def names_ip_only(self) -> bool:
        """The host is an address and no `domain=` names the domain."""
        return is_ip_literal(self.host) or self.host in ("localhost", "")

    @property
    def stream_path(self) -> str:
        return f"{self.app}/{self.stream}"


def _path_parts(path: str, url: str) -> tuple[str, str]:
    parts = [p for p in path.split("/") if p]
    if len(parts) != 2:
        raise LiveUrlError(f"the path must be /{{app}}/{{stream}}, not {path or '/'!r}")
    app, stream = (unquote(p) for p in parts)
    for label, value in (("app", app), ("stream", stream)):
        if not NAME_RE.match(value):
            raise LiveUrlError(f"the {label} name {value!r} must be 1-255 letters, digits, '_' or '-'")
    return app, stream


def _srt(url: str) -> tuple[str, str, dict[str, str]]:
    # srt://host:port?streamid=#!::h={domain},r=/{app}/{stream}?auth_key=…,m=publish
    # The "#" would start a fragment in any other URL: take streamid as written.
    _, found, streamid = url.partition("streamid=")
    streamid = unquote(streamid) if found else ""
    if not streamid.startswith("#!::"):
        raise LiveUrlError("an SRT URL carries the stream in streamid=#!::h=…,r=/{app}/{stream}?auth_key=…,m=publish")
    fields = dict(item.split("=", 1) for item in streamid[4:].split(",") if "=" in item)
    resource = fields.get("r", "")
    path, _, inner = resource.partition("?")
    inner_query = dict(parse_qsl(inner, keep_blank_values=True))
    return fields.get("h", ""), path, inner_query


def parse_live_url(url: str) -> LiveUrl:
    url = (url or "").strip()
    if not url:
        raise LiveUrlError("the URL is empty")
    if len(url) > MAX_URL_CHARS:
        raise LiveUrlError(f"the URL is longer than {MAX_URL_CHARS} characters")
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
            raise LiveUrlError("an HTTP URL must end in .flv (HTTP-FLV), .m3u8 (HLS) or .whep (RTS)")
        protocol = HTTP_SUFFIXES[suffix]
        app, stream = _path_parts(path[: -len(suffix)], url)
        # RTS is signed over the bare path; FLV and HLS over the path with its suffix.
        signed = f"/{app}/{stream}" if protocol == "rts" else f"/{app}/{stream}{suffix}"
    elif scheme == "srt":
        protocol = "srt"
        host_field, path, query = _srt(url)
        hostname = host_field or hostname
        app, stream = _path_parts(path, url)
        signed = f"/{app}/{stream}"
    elif scheme in SCHEME_PROTOCOLS:
        protocol = SCHEME_PROTOCOLS[scheme]
        app, stream = _path_parts(path, url)
        signed = f"/{app}/{stream}"
    else:
        raise LiveUrlError(f"the scheme must be rtmp, http, https, artc or srt, not {scheme or 'none'!r}")
    host = domain_of(hostname, query)
    return LiveUrl(url, protocol, host, app, stream, signed, query.get("auth_key"))
