"""What the Go live page is given (issue 17): the signed WHIP URL of one
stream of an ingest domain, sent to the domain's name or to the media node's
address with `domain=` (domains/direct.py, as the player's URLs are), for
static/js/golive.js to publish the browser's camera or screen to."""

from __future__ import annotations

from urllib.parse import urlencode

from django.urls import reverse

from domains.direct import via_media_host
from domains.services import GeneratedUrls


def publish_target(urls: GeneratedUrls, media_host: str) -> dict:
    """The page's configuration. `whip` is the generator's WHIP URL, so its
    auth_key is exactly the RTMP and artc:// URLs' one (signed over
    /{app}/{stream} with the ingest domain's key); on an IP media host it
    names the ingest domain with `domain=`, as the player's WHEP URL names
    the streaming domain. `player` opens the built-in player of the same
    stream on the associated streaming domain, None without one."""
    player = None
    if urls.streaming_domain:
        query = urlencode({"domain": urls.streaming_domain, "app": urls.app, "stream": urls.stream})
        player = f"{reverse('player')}?{query}"
    return {
        "ingest_domain": urls.ingest_domain,
        "streaming_domain": urls.streaming_domain,
        "stream": f"/{urls.app}/{urls.stream}",
        "expires_at": urls.expires_at,
        "whip": via_media_host(urls.ingest["whip"], media_host, urls.ingest_domain),
        "player": player,
    }
