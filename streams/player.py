"""What the web player is given: the signed playback URLs of one stream, in
the order the player tries them, sent to the domain's name or to the media
node's address with `domain=` (domains/direct.py: LIVECENTER_PLAYER_MEDIA_HOST)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from domains.direct import media_host, via_media_host
from domains.models import Domain
from domains.services import GeneratedUrls
from livecenter.media.liveurl import LiveUrlError, parse_live_url

__all__ = ["PROTOCOLS", "PROTOCOL_LABELS", "pasted_sources", "player_sources", "via_media_host"]

# ?protocol= values: "auto" tries them all, lowest latency first (player.js).
PROTOCOLS = ("auto", "rts", "flv", "llhls", "hls")
PROTOCOL_LABELS = {
    "auto": "Automatic (lowest latency)",
    "rts": "RTS (WebRTC)",
    "flv": "HTTP-FLV",
    "llhls": "LL-HLS",
    "hls": "HLS",
}


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


# A pasted URL's protocol (liveurl.parse_live_url) -> the player's rungs it feeds.
PASTED_RUNGS = {"flv": ("flv",), "hls": ("llhls", "hls"), "rts": ("rts",)}


def pasted_sources(url: str, domains, request_host: str | None = None) -> dict:
    """The player's configuration for a pasted playback URL (`?url=`): an
    HTTP-FLV, HLS or WHEP URL of one of `domains` (the operator's), played
    as it is; where it names the domain itself and the domain has no DNS
    here, sent to the node's address with `domain=` as generated URLs are
    (domains/direct.py). ValidationError on the `url` field otherwise."""
    try:
        parsed = parse_live_url(url.strip())
    except LiveUrlError as exc:
        raise ValidationError({"url": f"url: {exc}"}) from None
    scheme = urlsplit(parsed.url).scheme.lower()
    if scheme not in ("http", "https") or parsed.protocol not in PASTED_RUNGS:
        raise ValidationError(
            {
                "url": "url must be an HTTP-FLV (.flv), HLS (.m3u8) or WHEP (.whep) playback URL; the browser plays"
                " no RTMP, SRT or artc:// URL"
            }  # fmt: skip
        )
    domain = domains.filter(domain_name=parsed.host).first()
    if domain is None:
        raise ValidationError({"url": f"url: {parsed.host or 'its host'} is not one of your domains"})
    if not domain.is_streaming:
        raise ValidationError({"url": f"url: {parsed.host} is an ingest domain; paste a streaming domain's URL"})
    playable = parsed.url
    if (urlsplit(playable).hostname or "").rstrip(".").lower() == domain.domain_name:
        playable = via_media_host(playable, media_host(domain, request_host), domain.domain_name)
    sources = {
        "streaming_domain": domain.domain_name,
        "stream": f"/{parsed.app}/{parsed.stream}",
        "expires_at": None,
        "rts": None,
        "flv": None,
        "llhls": None,
        "hls": None,
        "protocol": "auto",
        "hls_encryption": "AES-128" if domain.hls_encrypts(parsed.app) else None,
        "pasted": True,
    }
    for rung in PASTED_RUNGS[parsed.protocol]:
        sources[rung] = playable
    return sources


def live_choices(sessions, domains: list[Domain]) -> list[dict]:
    """The operator's live streams as the player lists them: each with the
    streaming domain it plays on (None where its ingest domain has none)."""
    streaming = {}
    for domain in domains:
        ingest = domain.effective_ingest_domain() if domain.is_streaming else None
        if ingest is not None and domain.main_domain_id is None:
            streaming[ingest.domain_name] = domain.domain_name
    return [
        {
            "ingest_domain": s.domain_name,
            "streaming_domain": streaming.get(s.domain_name),
            "app": s.app,
            "stream": s.stream,
            "started_at": s.started_at,
        }
        for s in sessions
    ]
