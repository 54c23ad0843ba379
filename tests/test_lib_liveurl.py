"""Reading ingest and playback URLs back (monitoring/lib/liveurl.py): every
form the URL generator makes, and the reasons for what is not one."""

from __future__ import annotations

import pytest

from domains.lib.liveurls import Ports, SignedHost, ingest_urls, playback_urls
from monitoring.lib.liveurl import MAX_URL_CHARS, LiveUrlError, parse_live_url

PUSH = SignedHost("push.example.com", "pushKey123", 3600)
PLAY = SignedHost("play.example.com", "playKey123", 3600)


def test_it_reads_every_generated_url_back():
    ingest = ingest_urls(PUSH, "live", "cam1", 2_000_000_000, Ports())
    playback = playback_urls(PLAY, "live", "cam1", None, 2_000_000_000, Ports())
    expected = {
        ingest["rtmp"]: ("rtmp", "push.example.com", "/live/cam1"),
        ingest["srt"]: ("srt", "push.example.com", "/live/cam1"),
        ingest["rts"]: ("rts", "push.example.com", "/live/cam1"),
        playback["rtmp"]: ("rtmp", "play.example.com", "/live/cam1"),
        playback["flv"]: ("flv", "play.example.com", "/live/cam1.flv"),
        playback["m3u8"]: ("hls", "play.example.com", "/live/cam1.m3u8"),
        playback["whep"]: ("rts", "play.example.com", "/live/cam1"),
    }
    for url, (protocol, host, uri) in expected.items():
        parsed = parse_live_url(url)
        assert (parsed.protocol, parsed.host, parsed.signed_uri) == (protocol, host, uri), url
        assert (parsed.app, parsed.stream) == ("live", "cam1")
        assert parsed.auth_key and parsed.auth_key.startswith("1999996400-0-0-")


def test_it_takes_the_domain_parameter_on_an_ip_address():
    parsed = parse_live_url("rtmp://127.0.0.1:1935/live/cam1?auth_key=k&domain=Push.Example.com")
    assert parsed.host == "push.example.com" and not parsed.names_ip_only
    bare = parse_live_url("http://127.0.0.1:8080/live/cam1.flv")
    assert bare.names_ip_only and bare.auth_key is None


def test_it_reads_a_transcoded_stream_name():
    assert parse_live_url("http://play.example.com/live/cam1_hd.m3u8").stream == "cam1_hd"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "the URL is empty"),
        ("push.example.com/live/cam1", "the scheme must be rtmp, http, https, artc or srt, not 'none'"),
        ("rtmp://push.example.com:99999/live/cam1", "the URL does not parse: Port out of range"),
        ("rtmp://push.example.com/live/cam1/extra", "the path must be /{app}/{stream}, not '/live/cam1/extra'"),
        ("rtmp://push.example.com/li%20ve/cam1", "the app name 'li ve' must be 1-255 letters"),
        ("https://play.example.com/live/cam1", "an HTTP URL must end in .flv (HTTP-FLV), .m3u8 (HLS) or .whep (RTS)"),
        ("srt://push.example.com:1105?streamid=cam1", "an SRT URL carries the stream in streamid=#!::h="),
        ("rtmp://x/" + "a" * MAX_URL_CHARS, f"the URL is longer than {MAX_URL_CHARS} characters"),
    ],
)
def test_it_says_why_a_url_is_not_one_of_ours(url, reason):
    with pytest.raises(LiveUrlError) as error:
        parse_live_url(url)
    assert str(error.value).startswith(reason)
