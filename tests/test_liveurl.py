"""Live URLs (livecenter/media/liveurl.py): every form DESIGN.md names is
written as specified, verifies with the signer, and reads back to the same
parts; and the reasons for what is not one of ours."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, urlsplit

import pytest

from livecenter.media.liveurl import (
    MAX_STREAMID_CHARS,
    MAX_URL_CHARS,
    LiveUrlError,
    Ports,
    SignedHost,
    SrtStreamId,
    ingest_urls,
    parse_live_url,
    parse_srt_streamid,
    playback_urls,
)
from livecenter.media.signing import verify

PUSH = SignedHost("push.example.com", "pushKey123", 3600)
PLAY = SignedHost("play.example.com", "playKey123", 3600)


def test_it_reads_every_generated_url_back():
    ingest = ingest_urls(PUSH, "live", "cam1", 2_000_000_000, Ports())
    playback = playback_urls(PLAY, "live", "cam1", None, 2_000_000_000, Ports())
    expected = {
        ingest["rtmp"]: ("rtmp", "push.example.com", "/live/cam1", None),
        ingest["srt"]: ("srt", "push.example.com", "/live/cam1", "publish"),
        ingest["rts"]: ("rts", "push.example.com", "/live/cam1", None),
        ingest["whip"]: ("whip", "push.example.com", "/live/cam1", None),
        playback["rtmp"]: ("rtmp", "play.example.com", "/live/cam1", None),
        playback["flv"]: ("flv", "play.example.com", "/live/cam1.flv", None),
        playback["m3u8"]: ("hls", "play.example.com", "/live/cam1.m3u8", None),
        playback["rts"]: ("rts", "play.example.com", "/live/cam1", None),
        playback["whep"]: ("rts", "play.example.com", "/live/cam1", None),
        playback["srt"]: ("srt", "play.example.com", "/live/cam1", "request"),
    }
    assert set(expected) == set(ingest.values()) | set(playback.values())
    for url, (protocol, host, uri, srt_mode) in expected.items():
        parsed = parse_live_url(url)
        assert (parsed.protocol, parsed.host, parsed.signed_uri, parsed.srt_mode) == (protocol, host, uri, srt_mode)
        assert (parsed.app, parsed.stream) == ("live", "cam1")
        assert parsed.auth_key and parsed.auth_key.startswith("1999996400-0-0-")


def test_a_domain_with_https_on_gets_https_and_rtmps_urls_that_read_back_the_same():
    ports = Ports(https=8443, rtmps=1936)
    secure = SignedHost("play.example.com", "playKey123", 3600, https=True)
    plain = playback_urls(PLAY, "live", "cam1", None, 2_000_000_000, ports)
    urls = playback_urls(secure, "live", "cam1", None, 2_000_000_000, ports)
    assert urls["flv"] == plain["flv"].replace("http://play.example.com:8080", "https://play.example.com:8443")
    assert urls["whep"] == plain["whep"].replace("http://play.example.com:8080", "https://play.example.com:8443")
    assert urls["rtmp"] == plain["rtmp"].replace("rtmp://play.example.com:1935", "rtmps://play.example.com:1936")
    assert (urls["srt"], urls["rts"]) == (plain["srt"], plain["rts"])  # no TLS form
    for key in plain:
        assert parse_live_url(urls[key]) == dataclasses.replace(parse_live_url(plain[key]), url=urls[key])
    push = ingest_urls(SignedHost("push.example.com", "pushKey123", 3600, https=True), "live", "cam1", 2_000_000_000,
                       ports)  # fmt: skip
    assert push["rtmp"].startswith("rtmps://push.example.com:1936/live/cam1?auth_key=")
    assert push["whip"] == "https://push.example.com:8443/live/cam1.whip?" + urlsplit(push["rtmp"]).query


def test_an_srt_url_without_a_mode_reads_as_a_request_to_play():
    # libsrt's access-control convention: m= defaults to request.
    parsed = parse_live_url("srt://play.example.com:1105?streamid=#!::h=play.example.com,r=/live/cam1")
    assert (parsed.protocol, parsed.srt_mode) == ("srt", "request")


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
        ("push.example.com/live/cam1", "the scheme must be rtmp, rtmps, http, https, artc or srt, not 'none'"),
        ("rtmp://push.example.com:99999/live/cam1", "the URL does not parse: Port out of range"),
        ("rtmp://push.example.com/live/cam1/extra", "the path must be /{app}/{stream}, not '/live/cam1/extra'"),
        ("rtmp://push.example.com/li%20ve/cam1", "the app name 'li ve' must be 1-255 letters"),
        ("https://play.example.com/live/cam1", "an HTTP URL must end in .flv (HTTP-FLV), .m3u8 (HLS), .whep"),
        ("srt://push.example.com:1105?streamid=cam1", "an SRT URL carries the stream in streamid=#!::h="),
        ("rtmp://x/" + "a" * MAX_URL_CHARS, f"the URL is longer than {MAX_URL_CHARS} characters"),
    ],
)
def test_it_says_why_a_url_is_not_one_of_ours(url, reason):
    with pytest.raises(LiveUrlError) as error:
        parse_live_url(url)
    assert str(error.value).startswith(reason)


# Writing: exactly DESIGN.md's formats, each verifying with the signer.

EXPIRES = 1_800_000_000
INGEST = SignedHost("push.example.com", "ingestkey1", 1440 * 60)
PLAY_600 = SignedHost("play.example.com", "playkey123", 600)


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
    # WHIP (RFC 9725) on the HTTP port, the same token: RTS is signed over the bare path.
    assert urls["whip"] == "http://push.example.com:8080/live/cam1.whip?auth_key=" + token_of(urls["rtmp"])
    assert verify("/live/cam1", token_of(urls["rtmp"]), ["ingestkey1"], 1440 * 60, now=EXPIRES).ok
    assert not verify("/live/cam1", token_of(urls["rtmp"]), ["ingestkey1"], 1440 * 60, now=EXPIRES + 1).ok


def test_it_builds_the_playback_formats_with_each_uri_signed():
    urls = playback_urls(PLAY_600, "live", "cam1", None, EXPIRES, Ports())
    assert urlsplit(urls["flv"])[:3] == ("http", "play.example.com:8080", "/live/cam1.flv")
    assert urlsplit(urls["m3u8"])[:3] == ("http", "play.example.com:8080", "/live/cam1.m3u8")
    assert urlsplit(urls["whep"])[:3] == ("http", "play.example.com:8080", "/live/cam1.whep")
    assert urls["rtmp"].startswith("rtmp://play.example.com:1935/live/cam1?auth_key=")
    assert urls["rts"].startswith("artc://play.example.com/live/cam1?auth_key=")
    assert urls["srt"] == (
        "srt://play.example.com:1105?streamid=#!::h=play.example.com,r=/live/cam1?auth_key="
        + token_of(urls["rtmp"])
        + ",m=request"
    )
    for kind, uri in [
        ("rtmp", "/live/cam1"),
        ("flv", "/live/cam1.flv"),
        ("m3u8", "/live/cam1.m3u8"),
        ("rts", "/live/cam1"),
        ("whep", "/live/cam1"),
    ]:
        assert verify(uri, token_of(urls[kind]), ["playkey123"], 600, now=EXPIRES).ok, kind
    sid = parse_srt_streamid(urls["srt"].partition("streamid=")[2])
    assert (sid.host, sid.app, sid.stream, sid.mode) == ("play.example.com", "live", "cam1", "request")
    assert verify(sid.signed_uri, sid.auth_key, ["playkey123"], 600, now=EXPIRES).ok
    assert not verify(sid.signed_uri, sid.auth_key, ["ingestkey1"], 600, now=EXPIRES).ok


def test_it_names_the_transcoded_stream():
    urls = playback_urls(PLAY_600, "live", "cam1", "lld", EXPIRES, Ports(rtmp=11935, http=18080))
    assert urlsplit(urls["flv"]).path == "/live/cam1_lld.flv"
    assert urlsplit(urls["flv"]).port == 18080
    assert urls["rtmp"].startswith("rtmp://play.example.com:11935/live/cam1_lld?")
    assert verify("/live/cam1_lld.flv", token_of(urls["flv"]), ["playkey123"], 600, now=EXPIRES).ok
    sid = parse_srt_streamid(urls["srt"].partition("streamid=")[2])
    assert (sid.stream, sid.signed_uri) == ("cam1_lld", "/live/cam1_lld")
    assert verify(sid.signed_uri, sid.auth_key, ["playkey123"], 600, now=EXPIRES).ok


def test_it_puts_the_whip_url_on_the_configured_http_port():
    urls = ingest_urls(INGEST, "live", "cam1", EXPIRES, Ports(http=18080))
    assert urlsplit(urls["whip"])[:3] == ("http", "push.example.com:18080", "/live/cam1.whip")
    unsigned = ingest_urls(SignedHost("push.example.com", None, 600), "live", "cam1", EXPIRES, Ports())
    assert unsigned["whip"] == "http://push.example.com:8080/live/cam1.whip"


def test_it_leaves_auth_key_off_when_signing_is_off():
    urls = playback_urls(SignedHost("play.example.com", None, 600), "live", "cam1", None, EXPIRES, Ports())
    assert urls["flv"] == "http://play.example.com:8080/live/cam1.flv"
    assert urls["rts"] == "artc://play.example.com/live/cam1"
    assert urls["srt"] == "srt://play.example.com:1105?streamid=#!::h=play.example.com,r=/live/cam1,m=request"


# The SRT stream ID: what SRT ingest reads from SRTO_STREAMID.


def test_the_srt_stream_id_round_trips():
    written = SrtStreamId("push.example.com", "live", "cam1", "1700000000-0-0-abc", "publish")
    assert str(written) == "#!::h=push.example.com,r=/live/cam1?auth_key=1700000000-0-0-abc,m=publish"
    assert parse_srt_streamid(str(written)) == written
    unsigned = SrtStreamId("push.example.com", "live", "cam1")
    assert parse_srt_streamid(str(unsigned)) == unsigned and unsigned.auth_key is None


def test_the_srt_stream_id_keeps_the_resources_other_parameters():
    # A node's token between nodes (edge.py): encoded so that "," and "=" stay the stream ID's.
    written = SrtStreamId(
        "push.example.com", "live", "cam1", None, "publish", (("lc_node", "edge a"), ("lc_relay", "1-a,b"))
    )
    assert str(written) == "#!::h=push.example.com,r=/live/cam1?lc_node=edge+a&lc_relay=1-a%2Cb,m=publish"
    read = parse_srt_streamid(str(written))
    assert read == written and read.query == {"lc_node": "edge a", "lc_relay": "1-a,b"}
    signed = parse_srt_streamid("#!::r=/live/cam1?x=1&auth_key=1-0-0-ab,m=publish")
    assert signed.auth_key == "1-0-0-ab" and signed.params == (("x", "1"),)
    assert signed.query == {"auth_key": "1-0-0-ab", "x": "1"}


def test_the_generated_srt_url_carries_a_stream_id_that_verifies():
    url = ingest_urls(INGEST, "live", "cam1", EXPIRES, Ports())["srt"]
    sid = parse_srt_streamid(url.partition("streamid=")[2])
    assert (sid.host, sid.app, sid.stream, sid.mode) == ("push.example.com", "live", "cam1", "publish")
    assert verify(sid.signed_uri, sid.auth_key, ["ingestkey1"], 1440 * 60, now=EXPIRES).ok


def test_the_srt_stream_id_ignores_unknown_keys_and_defaults_to_request():
    sid = parse_srt_streamid("#!::u=alice,r=/live/cam1,h=Push.Example.com")
    assert (sid.host, sid.app, sid.stream, sid.mode) == ("push.example.com", "live", "cam1", "request")


@pytest.mark.parametrize(
    ("streamid", "reason"),
    [
        ("live/cam1", "an SRT stream ID must be #!::"),
        ("#!::h=x,m=publish", "the SRT stream ID has no r="),
        ("#!::r=/live/cam1,m=play", "the SRT mode m='play' must be publish or request"),
        ("#!::r=/live/cam1,r=/live/cam2", "the SRT stream ID names 'r' twice"),
        ("#!::r=/live/cam1,junk", "the SRT stream ID item 'junk' is not key=value"),
        ("#!::r=/live/cam 1", "the stream name 'cam 1' must be"),
        ("#!::r=/live/cam1/x", "the path must be /{app}/{stream}"),
        ("#!::r=/live/" + "a" * MAX_STREAMID_CHARS, f"the SRT stream ID is longer than {MAX_STREAMID_CHARS}"),
    ],
)
def test_it_says_why_a_stream_id_is_not_one_of_ours(streamid, reason):
    with pytest.raises(LiveUrlError) as error:
        parse_srt_streamid(streamid)
    assert str(error.value).startswith(reason)
