"""HLS and LL-HLS served by the media node on real sockets: ffmpeg publishes,
ffprobe decodes through the signed playlist, tokens guard the segments."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from urllib.parse import urljoin

import pytest

from livecenter.media.signing import sign
from tests.mediasupport import PLAY, PLAY_KEY, NodeThread, probe_packets, start_publisher

pytestmark = pytest.mark.media


@pytest.fixture
def media():
    node = NodeThread(play_wait_seconds=3).start()
    yield node
    node.stop()


def m3u8_url(media, key=PLAY_KEY, ts=None, extra="") -> str:
    token = sign("/live/cam1.m3u8", key, int(time.time() if ts is None else ts))
    return f"{media.http}/live/cam1.m3u8?auth_key={token}&domain={PLAY}{extra}"


def fetch(url: str, timeout: float = 15) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def publishing(media):
    publisher = start_publisher(media.publish_url(), seconds=30, size="640x360")
    assert media.wait_for(lambda: media.node.hub.is_live(media.node.hub.live_keys()[0]) if media.node.hub.live_keys()
                          else False), publisher.stop()  # fmt: skip
    yield media
    publisher.stop()


def test_it_serves_a_low_latency_playlist_whose_segments_decode(publishing):
    media = publishing
    status, headers, body = fetch(m3u8_url(media))
    assert status == 200, body
    assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert headers["Access-Control-Allow-Origin"] == "*"
    text = body.decode()
    for tag in ("#EXTM3U", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:", "#EXT-X-PROGRAM-DATE-TIME:",
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES", "#EXT-X-PART-INF:PART-TARGET=", "#EXT-X-PART:",
                "#EXT-X-PRELOAD-HINT:TYPE=PART"):  # fmt: skip
        assert tag in text, tag
    # RFC 8216bis 4.4.3.8's SHOULD: three part targets, so a late part is not a stall.
    part_target = float(re.search(r"PART-TARGET=([\d.]+)", text).group(1))
    hold_back = float(re.search(r"PART-HOLD-BACK=([\d.]+)", text).group(1))
    assert hold_back == pytest.approx(3 * part_target, abs=0.002)
    segment = re.search(r"^(cam1/seg_\d+\.ts\?token=\S+)$", text, re.M).group(1)
    status, headers, data = fetch(urljoin(m3u8_url(media), segment))
    assert status == 200 and headers["Content-Type"] == "video/mp2t"
    assert data[0] == 0x47 and len(data) % 188 == 0
    packets = probe_packets(m3u8_url(media), seconds=4)
    times = [float(p["dts_time"]) for p in packets]
    assert len(times) >= 60
    assert all(b > a for a, b in zip(times, times[1:], strict=False)), "timestamps not increasing"
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 0.2


def test_it_blocks_a_playlist_reload_until_the_segment_exists(publishing):
    media = publishing
    text = fetch(m3u8_url(media))[2].decode()
    last = max(int(n) for n in re.findall(r"cam1/seg_(\d+)\.ts", text))
    started = time.monotonic()
    status, _, body = fetch(m3u8_url(media, extra=f"&_HLS_msn={last + 1}&_HLS_part=0"))
    assert status == 200, body
    assert f"cam1/part_{last + 1}_0.ts" in body.decode()
    assert time.monotonic() - started < 3
    assert fetch(m3u8_url(media, extra="&_HLS_part=1"))[0] == 400


def test_it_holds_a_preload_hint_request_until_the_part_is_complete(publishing):
    media = publishing
    text = fetch(m3u8_url(media))[2].decode()
    hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', text).group(1)
    status, _, data = fetch(urljoin(m3u8_url(media), hint))
    assert status == 200 and data[0] == 0x47


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [("unsigned", 403, "no auth_key"), ("expired", 403, "expired timestamp"), ("wrong-key", 403, "invalid md5hash")],
)
def test_it_checks_the_playlist_signature_on_every_request(publishing, case, status, reason):
    media = publishing
    url = {
        "unsigned": f"{media.http}/live/cam1.m3u8?domain={PLAY}",
        "expired": m3u8_url(media, ts=time.time() - 7200),
        "wrong-key": m3u8_url(media, key="otherKey99"),
    }[case]
    code, headers, _ = fetch(url)
    assert (code, headers["X-LiveCenter-Error"]) == (status, reason)


def test_it_refuses_a_segment_without_a_valid_token(publishing):
    media = publishing
    text = fetch(m3u8_url(media))[2].decode()
    segment = re.search(r"^(cam1/seg_\d+\.ts)\?token=(\S+)$", text, re.M)
    base = urljoin(m3u8_url(media), segment.group(1))
    code, headers, _ = fetch(base)
    assert (code, headers["X-LiveCenter-Error"]) == (403, "no token")
    tampered = segment.group(2)[:-1] + ("0" if segment.group(2)[-1] != "0" else "1")
    code, headers, _ = fetch(f"{base}?token={tampered}")
    assert (code, headers["X-LiveCenter-Error"]) == (403, "invalid token")
    assert fetch(f"{base}?token={segment.group(2)}")[0] == 200


def test_it_answers_404_for_a_stream_that_is_not_live(media):
    token = sign("/live/nobody.m3u8", PLAY_KEY, int(time.time()))
    code, headers, _ = fetch(f"{media.http}/live/nobody.m3u8?auth_key={token}&domain={PLAY}")
    assert (code, headers["X-LiveCenter-Error"]) == (404, "stream is not live")


def test_it_marks_a_publisher_reconnect_with_a_discontinuity(media):
    first = start_publisher(media.publish_url(), seconds=4, size="640x360")
    try:
        assert media.wait_for(lambda: bool(media.node.hub.live_keys()))
        assert fetch(m3u8_url(media))[0] == 200  # packaging starts with the first request
        first.process.wait(30)
        second = start_publisher(media.publish_url(), seconds=15, size="640x360")
        try:
            deadline = time.monotonic() + 20
            text = ""
            while time.monotonic() < deadline and "#EXT-X-DISCONTINUITY" not in text:
                text = fetch(m3u8_url(media))[2].decode()
                time.sleep(0.5)
            assert "#EXT-X-DISCONTINUITY" in text, text
        finally:
            second.stop()
    finally:
        first.stop()


def test_it_answers_404_for_media_of_a_stream_not_being_packaged(media):
    code, headers, _ = fetch(f"{media.http}/live/cam1/seg_3.ts?token=1-00000000000000000000000000000000")
    assert (code, headers["X-LiveCenter-Error"]) == (404, "stream is not being packaged")


def test_it_reports_the_other_renditions_of_a_stream(media):
    # A transcode publishes `cam1_lld` back into the node like any publisher
    # (issue 7); here ffmpeg stands in for it.
    publishers = [
        start_publisher(media.publish_url(stream=name), seconds=30, size="320x180") for name in ("cam1", "cam1_lld")
    ]
    try:
        assert media.wait_for(lambda: len(media.node.hub.live_keys()) == 2)
        token = sign("/live/cam1_lld.m3u8", PLAY_KEY, int(time.time()))
        rendition = f"{media.http}/live/cam1_lld.m3u8?auth_key={token}&domain={PLAY}"
        assert fetch(rendition)[0] == 200
        source_text = fetch(m3u8_url(media))[2].decode()
        report = re.search(r'^#EXT-X-RENDITION-REPORT:URI="cam1_lld\.m3u8",LAST-MSN=(\d+),LAST-PART=(\d+)$',
                           source_text, re.M)  # fmt: skip
        assert report, source_text
        rendition_text = fetch(rendition)[2].decode()
        assert re.search(r'^#EXT-X-RENDITION-REPORT:URI="cam1\.m3u8",LAST-MSN=\d+,LAST-PART=\d+$', rendition_text, re.M)
        # The report names a part the rendition's playlist lists.
        msn, part = report.groups()
        assert f"cam1_lld/part_{msn}_{part}.ts" in fetch(rendition + f"&_HLS_msn={msn}&_HLS_part={part}")[2].decode()
    finally:
        for publisher in publishers:
            publisher.stop()
