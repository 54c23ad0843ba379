"""What the web player is given: the signed playback URLs of one stream, in
the order the player tries them, sent to the media host the console is
configured with (LIVECENTER_PLAYER_MEDIA_HOST)."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from domains.services import GeneratedUrls

# ?protocol= values: "auto" tries them all, lowest latency first (player.js).
PROTOCOLS = ("auto", "rts", "flv", "llhls", "hls")
PROTOCOL_LABELS = {
    "auto": "Automatic (lowest latency)",
    "rts": "RTS (WebRTC)",
    "flv": "HTTP-FLV",
    "llhls": "LL-HLS",
    "hls": "HLS",
}


def via_media_host(url: str, host: str, domain: str | None) -> str:
    """`url` sent to `host` (same scheme and port) with `domain=` naming the
    domain it was made for, as the media node accepts on an IP host; `url`
    itself when `host` is empty, and for HTTPS: the node picks the
    certificate by the name the browser asks for, and the browser checks
    the certificate against it, so an HTTPS URL keeps its domain."""
    parts = urlsplit(url)
    if not host or not domain or parts.scheme == "https":
        return url
    netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    query = "&".join(q for q in (parts.query, urlencode({"domain": domain})) if q)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def player_sources(urls: GeneratedUrls, media_host: str, rts_enabled: bool = True) -> dict:
    """The player's configuration: one URL per protocol. LL-HLS and HLS share
    the playlist URL; hls.js asks for the low-latency form (`_HLS_msn`)
    itself in low-latency mode. `rts` is the WHEP URL, None where the
    streaming domain has RTS off (the player then starts with HTTP-FLV)."""
    playback = urls.playback

    def local(key: str) -> str | None:
        return via_media_host(playback[key], media_host, urls.streaming_domain) if key in playback else None

    return {
        "streaming_domain": urls.streaming_domain,
        "stream": f"/{urls.app}/{urls.stream}" + (f"_{urls.template}" if urls.template else ""),
        "expires_at": urls.expires_at,
        "rts": local("whep") if rts_enabled else None,
        "flv": local("flv"),
        "llhls": local("m3u8"),
        "hls": local("m3u8"),
    }
