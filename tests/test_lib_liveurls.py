"""Generated URLs are exactly DESIGN.md's formats and verify with the signer."""

from urllib.parse import parse_qs, urlsplit

from domains.lib.liveurls import Ports, SignedHost, ingest_urls, playback_urls
from livecenter.media.signing import verify

EXPIRES = 1_800_000_000
INGEST = SignedHost("push.example.com", "ingestkey1", 1440 * 60)
PLAY = SignedHost("play.example.com", "playkey123", 600)


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["auth_key"][0]


def test_it_builds_the_ingest_formats():
    urls = ingest_urls(INGEST, "live", "cam1", EXPIRES, Ports())
    ts = EXPIRES - 1440 * 60
    assert urls["rtmp"].startswith(f"rtmp://push.example.com:1935/live/cam1?auth_key={ts}-0-0-")
    assert urls["rts"] == "artc://push.example.com/live/cam1?auth_key=" + token_of(urls["rtmp"])
    assert urls["srt"] == (
        "srt://push.example.com:1105?streamid=#!::h=push.example.com,r=/live/cam1?auth_key="
        + token_of(urls["rtmp"])
        + ",m=publish"
    )
    assert verify("/live/cam1", token_of(urls["rtmp"]), ["ingestkey1"], 1440 * 60, now=EXPIRES).ok
    assert not verify("/live/cam1", token_of(urls["rtmp"]), ["ingestkey1"], 1440 * 60, now=EXPIRES + 1).ok


def test_it_builds_the_playback_formats_with_each_uri_signed():
    urls = playback_urls(PLAY, "live", "cam1", None, EXPIRES, Ports())
    assert urlsplit(urls["flv"])[:3] == ("http", "play.example.com:8080", "/live/cam1.flv")
    assert urlsplit(urls["m3u8"])[:3] == ("http", "play.example.com:8080", "/live/cam1.m3u8")
    assert urlsplit(urls["whep"])[:3] == ("http", "play.example.com:8080", "/live/cam1.whep")
    assert urls["rtmp"].startswith("rtmp://play.example.com:1935/live/cam1?auth_key=")
    assert urls["rts"].startswith("artc://play.example.com/live/cam1?auth_key=")
    for kind, uri in [
        ("rtmp", "/live/cam1"),
        ("flv", "/live/cam1.flv"),
        ("m3u8", "/live/cam1.m3u8"),
        ("rts", "/live/cam1"),
        ("whep", "/live/cam1"),
    ]:
        assert verify(uri, token_of(urls[kind]), ["playkey123"], 600, now=EXPIRES).ok, kind


def test_it_names_the_transcoded_stream():
    urls = playback_urls(PLAY, "live", "cam1", "lld", EXPIRES, Ports(rtmp=11935, http=18080))
    assert urlsplit(urls["flv"]).path == "/live/cam1_lld.flv"
    assert urlsplit(urls["flv"]).port == 18080
    assert urls["rtmp"].startswith("rtmp://play.example.com:11935/live/cam1_lld?")
    assert verify("/live/cam1_lld.flv", token_of(urls["flv"]), ["playkey123"], 600, now=EXPIRES).ok


def test_it_leaves_auth_key_off_when_signing_is_off():
    urls = playback_urls(SignedHost("play.example.com", None, 600), "live", "cam1", None, EXPIRES, Ports())
    assert urls["flv"] == "http://play.example.com:8080/live/cam1.flv"
    assert urls["rts"] == "artc://play.example.com/live/cam1"
