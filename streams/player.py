"""What the web player is given: the signed playback URLs of one stream, in
the order the player tries them, sent to the domain's name or to the media
node's address with `domain=` (domains/direct.py: LIVECENTER_PLAYER_MEDIA_HOST)."""

from __future__ import annotations

from domains.direct import via_media_host
from domains.services import GeneratedUrls

__all__ = ["PROTOCOLS", "PROTOCOL_LABELS", "player_sources", "via_media_host"]

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
