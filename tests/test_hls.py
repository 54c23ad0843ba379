"""The HLS / LL-HLS packager (livecenter/media/hls.py).

Media is made by the ffmpeg CLI and fed as the hub feeds it; ffprobe judges
the segments, and the playlists are checked against the rules of RFC 8216
and draft-pantos-hls-rfc8216bis (the sections are named where they apply).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livecenter.media import hls
from livecenter.media.flv import (
    AUDIO,
    VIDEO,
    audio_is_sequence_header,
    video_is_keyframe,
    video_is_sequence_header,
)
from livecenter.media.hls import (
    MAX_SEGMENT_DURATION_MS,
    HlsPackager,
    HlsPartCompleted,
    HlsSegmentCompleted,
    MediaRef,
    Readiness,
    decide_blocking_reload,
    parse_media_uri,
)
from livecenter.media.mpegts import TsMuxError
from tests.test_mpegts import check_continuity, ffmpeg_decode_errors, ffmpeg_flv, flv_tags, ts_packets

START = 1_700_000_000.0  # the wall clock at the stream's timestamp 0
FIRST = hls.FIRST_MEDIA_SEQUENCE


def feed(packager: HlsPackager, tags, offset_ms: int = 0, after=None, wall_offset_s: float = 0.0) -> list:
    """Push FLV tags as the hub does: it classifies each body, and an audio
    frame is a keyframe only in a stream without video. Each comes in at
    START plus its timestamp plus `wall_offset_s` of wall-clock time."""
    events, has_video = [], False
    for tag in tags:
        body, timestamp = tag.body, tag.timestamp + offset_ms
        if tag.tag_type == VIDEO:
            header = video_is_sequence_header(body)
            keyframe = not header and video_is_keyframe(body)
            has_video = True
            kind = "video"
        elif tag.tag_type == AUDIO:
            header = audio_is_sequence_header(body)
            keyframe = not header and not has_video
            kind = "audio"
        else:
            continue
        new = packager.push(kind, timestamp, body, keyframe, header, START + wall_offset_s + timestamp / 1000)
        events += new
        if after is not None and new:
            after(new)
    return events


class Playlist:
    """A media playlist read the way a player reads it."""

    def __init__(self, text: str) -> None:
        assert text.endswith("\n")
        self.lines = text.splitlines()
        assert self.lines[0] == "#EXTM3U"
        self.tags: dict[str, str] = {}
        self.segments: list[dict] = []
        self.preload_hint = None
        self.reports = []
        pending: dict = {"parts": [], "discontinuity": False}
        for line in self.lines[1:]:
            name, _, value = line.partition(":")
            if line.startswith("#EXT-X-PART:"):
                attrs = dict(re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', value))
                pending["parts"].append(
                    {
                        "duration": float(attrs["DURATION"]),
                        "uri": attrs["URI"].strip('"'),
                        "independent": attrs.get("INDEPENDENT") == "YES",
                    }
                )
            elif name == "#EXT-X-DISCONTINUITY":
                pending["discontinuity"] = True
            elif name == "#EXT-X-PROGRAM-DATE-TIME":
                pending["date"] = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            elif name == "#EXTINF":
                pending["duration"] = float(value.rstrip(","))
            elif name == "#EXT-X-PRELOAD-HINT":
                self.preload_hint = value
            elif name == "#EXT-X-RENDITION-REPORT":
                self.reports.append(value)
            elif line.startswith("#"):
                self.tags[name] = value
            else:
                pending["uri"] = line
                self.segments.append(pending)
                pending = {"parts": [], "discontinuity": False}
        self.open = pending if pending["parts"] or "date" in pending else None

    @property
    def media_sequence(self) -> int:
        return int(self.tags["#EXT-X-MEDIA-SEQUENCE"])

    @property
    def target_duration(self) -> int:
        return int(self.tags["#EXT-X-TARGETDURATION"])

    def server_control(self) -> dict[str, str]:
        return dict(item.split("=") for item in self.tags["#EXT-X-SERVER-CONTROL"].split(","))

    @property
    def part_target(self) -> float:
        return float(self.tags["#EXT-X-PART-INF"].split("=")[1])


def check_playlist_rules(playlist: Playlist) -> None:
    """What RFC 8216 and 8216bis require of any live media playlist."""
    for segment in playlist.segments:
        # RFC 8216 4.3.3.1: EXTINF rounded to the nearest integer <= TARGETDURATION.
        assert int(segment["duration"] + 0.5) <= playlist.target_duration
        assert re.fullmatch(r"\d+\.\d{3}", f"{segment['duration']:.3f}")
    for earlier, later in zip(playlist.segments, playlist.segments[1:], strict=False):
        if not later["discontinuity"]:
            assert later["date"] == pytest.approx(earlier["date"] + earlier["duration"], abs=0.0015)
    if "#EXT-X-PART-INF" not in playlist.tags:
        assert playlist.tags["#EXT-X-VERSION"] == "3"
        assert not any(s["parts"] for s in playlist.segments) and playlist.preload_hint is None
        return
    assert playlist.tags["#EXT-X-VERSION"] == "9"
    control = playlist.server_control()
    assert control["CAN-BLOCK-RELOAD"] == "YES"
    # 8216bis 4.4.3.8: PART-HOLD-BACK MUST be at least two part targets.
    assert float(control["PART-HOLD-BACK"]) >= 2 * playlist.part_target - 1e-9
    with_parts = [*(s for s in playlist.segments if s["parts"]), *([playlist.open] if playlist.open else [])]
    for segment in with_parts:
        parts = segment["parts"]
        assert parts[0]["independent"]
        for index, part in enumerate(parts):
            # 8216bis 4.4.4.9: at most the part target; at least 85% of it
            # except independent parts and the last part of a segment.
            assert part["duration"] <= playlist.part_target
            if index not in (0, len(parts) - 1) and not part["independent"]:
                assert part["duration"] >= 0.85 * playlist.part_target
        if "duration" in segment:
            assert sum(p["duration"] for p in parts) == pytest.approx(segment["duration"], abs=0.0005)
    # Parts are listed for the last segments only, and for every one after the first listed.
    listed = [bool(s["parts"]) for s in playlist.segments]
    assert listed == sorted(listed)


def hinted(playlist: Playlist) -> MediaRef:
    match = re.fullmatch(r'TYPE=PART,URI="(?:[^"/]*/)?([^"?]*)(?:\?[^"]*)?"', playlist.preload_hint)
    return parse_media_uri(match[1])


def segment_probe(path) -> list[list[str]]:
    """ffprobe's video packets: [pts, dts, flags]."""
    cmd = ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=pts,dts,flags"]
    out = subprocess.run([*cmd, "-of", "csv=p=0", str(path)], capture_output=True, check=True, timeout=60).stdout
    return [line.split(",")[:3] for line in out.decode().split()]


def packaged(bframes: int = 0, seconds: float = 6, **options) -> tuple[HlsPackager, list]:
    packager = HlsPackager(window_segments=options.pop("window_segments", 10), **options)
    events = feed(packager, flv_tags(ffmpeg_flv(seconds=seconds, bframes=bframes)))
    return packager, events


# --- segments -------------------------------------------------------------------------


def keyframe_times(tags) -> list[int]:
    return [t.timestamp for t in tags if t.tag_type == VIDEO and t.body[1] == 1 and video_is_keyframe(t.body)]


@pytest.mark.parametrize("bframes", [0, 2])
def test_it_cuts_decodable_segments_at_keyframes_with_continuous_timestamps(tmp_path, bframes):
    packager, events = packaged(bframes=bframes)
    tags = flv_tags(ffmpeg_flv(seconds=6, bframes=bframes))
    keys = keyframe_times(tags)  # 1 s GOPs (x264 may add one at the very end)
    msns = [e.msn for e in events if isinstance(e, HlsSegmentCompleted)]
    assert msns == list(range(FIRST, FIRST + len(keys) - 1))  # the last keyframe opened the last segment
    playlist = Playlist(packager.playlist())
    whole = b""
    for index, (msn, entry) in enumerate(zip(msns, playlist.segments, strict=True)):
        data = packager.segment(msn)
        path = tmp_path / f"seg_{msn}.ts"
        path.write_bytes(data)
        assert ffmpeg_decode_errors(path) == ""
        packets = segment_probe(path)
        assert packets[0][2].startswith("K")  # a segment starts with a keyframe
        assert sum(p[2].startswith("K") for p in packets) == 1
        assert int(packets[0][1]) == keys[index] * 90
        # EXTINF is the media: from this keyframe to the next, one frame per 1/30 s.
        assert entry["duration"] == (keys[index + 1] - keys[index]) / 1000
        assert entry["duration"] == pytest.approx(len(packets) / 30, abs=1 / 30)
        whole += data
    path = tmp_path / "all.ts"
    path.write_bytes(whole)
    assert ffmpeg_decode_errors(path) == ""
    check_continuity(whole)
    packets = segment_probe(path)
    frames = [t for t in tags if t.tag_type == VIDEO and t.body[1] == 1 and keys[0] <= t.timestamp < keys[-1]]
    assert len(packets) == len(frames)
    dts = [int(p[1]) for p in packets]
    assert all(2970 <= b - a <= 3060 for a, b in zip(dts, dts[1:], strict=False))
    pts = sorted(int(p[0]) for p in packets)
    assert (pts != dts) == bool(bframes)
    assert all(2970 <= b - a <= 3060 for a, b in zip(pts, pts[1:], strict=False))


def test_it_renders_a_plain_playlist_that_slides():
    packager = HlsPackager(window_segments=3, uri_prefix="cam1/")
    snapshots = []
    feed(
        packager,
        flv_tags(ffmpeg_flv(seconds=6)),
        after=lambda events: (
            snapshots.append(Playlist(packager.playlist(token="9-ab")))
            if any(isinstance(e, HlsSegmentCompleted) for e in events)
            else None
        ),
    )
    sequences = [p.media_sequence for p in snapshots]
    assert sequences == [FIRST, FIRST, FIRST, FIRST + 1, FIRST + 2]
    for playlist in snapshots:
        check_playlist_rules(playlist)
        assert playlist.target_duration == 1
        assert len(playlist.segments) == min(3, len(playlist.segments))
        assert "#EXT-X-DISCONTINUITY-SEQUENCE" not in playlist.tags
    last = snapshots[-1]
    assert [s["uri"] for s in last.segments] == [f"cam1/seg_{FIRST + n}.ts?token=9-ab" for n in (2, 3, 4)]
    assert last.segments[0]["date"] == pytest.approx(START + 2.0, abs=0.05)
    assert "#EXT-X-PART:" not in packager.playlist()


def test_it_holds_the_window_and_a_few_segments_only():
    packager = HlsPackager(window_segments=3, retained_segments=1)
    feed(packager, flv_tags(ffmpeg_flv(seconds=6)))
    assert packager.segment(FIRST) is None
    assert packager.part(FIRST, 0) is None
    assert packager.segment(FIRST + 1) is not None  # left the playlist, still fetchable
    held = [packager.segment(n) is not None for n in range(FIRST + 1, FIRST + 6)]
    assert held == [True, True, True, True, False]
    assert Playlist(packager.playlist()).media_sequence == FIRST + 2


def test_a_burst_of_media_stays_listed_for_the_windows_span_of_wall_clock_time():
    """Segments cut faster than they play (a backlog after a stall) leave
    the playlist by wall-clock time, not by count, within what is retained."""
    tags = flv_tags(ffmpeg_flv(seconds=8))

    def burst(packager, tags, at: float) -> None:  # every frame comes in at the same instant
        has_video = False
        for tag in tags:
            if tag.tag_type not in (VIDEO, AUDIO):
                continue
            kind = "video" if tag.tag_type == VIDEO else "audio"
            has_video |= kind == "video"
            header = video_is_sequence_header(tag.body) if kind == "video" else audio_is_sequence_header(tag.body)
            keyframe = not header and (video_is_keyframe(tag.body) if kind == "video" else not has_video)
            packager.push(kind, tag.timestamp, tag.body, keyframe, header, at)

    packager = HlsPackager(window_segments=3, retained_segments=3)
    burst(packager, tags, START)
    # Seven segments cut at once: all six the packager holds stay listed.
    assert [s["uri"] for s in Playlist(packager.playlist()).segments] == [f"seg_{FIRST + n}.ts" for n in range(1, 7)]
    check_playlist_rules(Playlist(packager.playlist()))
    # On time (one segment a second), the window is its count again.
    paced = HlsPackager(window_segments=3, retained_segments=3)
    feed(paced, tags)
    assert len(Playlist(paced.playlist()).segments) == 3


def test_it_raises_the_target_duration_for_long_gops_and_keeps_it():
    packager = HlsPackager(target_duration_s=1)
    feed(packager, flv_tags(ffmpeg_flv(seconds=6, gop=75)))  # 2.5 s GOPs
    playlist = Playlist(packager.playlist())
    assert [s["duration"] for s in playlist.segments] == [2.5, 2.5]
    assert playlist.target_duration == 3  # 2.5 rounds to 3 (RFC 8216 4.3.3.1)
    check_playlist_rules(playlist)


def test_it_packages_audio_without_video():
    packager = HlsPackager()
    tags = [t for t in flv_tags(ffmpeg_flv(seconds=3)) if t.tag_type == AUDIO]
    events = feed(packager, tags)
    last_ms = tags[-1].timestamp  # a little past 3 s: the encoder's priming
    msns = [e.msn for e in events if isinstance(e, HlsSegmentCompleted)]
    assert msns == list(range(FIRST, FIRST + last_ms // 1000))
    playlist = Playlist(packager.playlist(low_latency=True))
    check_playlist_rules(playlist)
    # AAC frames are 1024 samples at 48 kHz: segments end at the one nearest 1 s.
    assert all(abs(s["duration"] - 1) <= 0.022 for s in playlist.segments)


# --- low-latency parts ------------------------------------------------------------------


@pytest.mark.parametrize("bframes", [0, 2])
def test_it_divides_a_30_fps_second_into_equal_parts_without_a_one_frame_tail(bframes):
    # 30 fps in whole milliseconds alternates 33 and 34 ms intervals; taking
    # the longer as the next one cut every part a frame early and left a
    # 33 ms part before each keyframe, on which hls.js stalled for seconds.
    packager, _ = packaged(bframes=bframes, part_duration_s=0.2)
    playlist = Playlist(packager.playlist(low_latency=True))
    check_playlist_rules(playlist)
    assert playlist.part_target == 0.201
    complete = [s for s in playlist.segments if s["parts"]]
    assert complete
    for segment in complete:
        assert [p["duration"] for p in segment["parts"]] == [0.2] * 5


@pytest.mark.parametrize("bframes", [0, 2])
def test_it_renders_ll_hls_parts_that_make_up_the_segments(bframes):
    packager, events = packaged(bframes=bframes, window_segments=4)
    playlist = Playlist(packager.playlist(low_latency=True, token="5-cd"))
    check_playlist_rules(playlist)
    assert playlist.part_target == 0.334
    assert playlist.server_control()["PART-HOLD-BACK"] == "1.002"
    # Parts for the segments within three target durations of the end, then the open one.
    assert [bool(s["parts"]) for s in playlist.segments] == [False, True, True, True]
    assert playlist.open is not None and playlist.open["parts"]
    for segment in playlist.segments[1:]:
        msn = parse_media_uri(segment["uri"].split("?")[0]).msn
        parts = [parse_media_uri(p["uri"].split("?")[0]) for p in segment["parts"]]
        assert parts == [MediaRef(msn, i) for i in range(len(parts))]
        assert b"".join(packager.part(msn, i) for i in range(len(parts))) == packager.segment(msn)
        for ref, part in zip(parts, segment["parts"], strict=True):
            first_video = next(p for p in ts_packets(packager.part(ref.msn, ref.part)) if p.pid == 0x100)
            assert first_video.random_access == part["independent"]
    # The preload hint names the part after the last one listed.
    last = parse_media_uri(playlist.open["parts"][-1]["uri"].split("?")[0])
    assert hinted(playlist) == MediaRef(last.msn, last.part + 1)
    assert packager.last_msn_part() == (last.msn, last.part)
    assert packager.part_status(last.msn, last.part + 1) is Readiness.WAIT
    assert packager.part_status(last.msn, last.part) is Readiness.READY
    assert packager.part_status(last.msn, last.part + 2) is Readiness.NOT_FOUND
    completed = [e for e in events if isinstance(e, HlsPartCompleted)]
    assert completed[-1] == HlsPartCompleted(last.msn, last.part)


def test_it_decodes_a_stream_joined_at_an_independent_part(tmp_path):
    packager, _ = packaged()
    path = tmp_path / "joined.ts"
    path.write_bytes(b"".join(packager.part(FIRST + 3, i) for i in range(3)) + packager.segment(FIRST + 4))
    assert ffmpeg_decode_errors(path) == ""
    assert len(segment_probe(path)) == 60


def test_it_lists_parts_during_the_first_segment_and_hints_the_first_part():
    packager = HlsPackager()
    playlist = Playlist(packager.playlist(low_latency=True))
    assert hinted(playlist) == MediaRef(FIRST, 0) and playlist.media_sequence == FIRST
    assert packager.part_status(FIRST, 0) is Readiness.WAIT
    feed(packager, flv_tags(ffmpeg_flv(seconds=3))[:50])  # about half a second
    playlist = Playlist(packager.playlist(low_latency=True))
    check_playlist_rules(playlist)
    assert not playlist.segments and len(playlist.open["parts"]) >= 1
    assert not packager.has_segments and packager.segment(FIRST) is None


def test_it_numbers_the_first_segment_one_not_zero():
    # hls.js 1.7 takes segment 0 for no segment while buffering its parts,
    # loads them again and appends the video a segment ahead of the audio:
    # the first viewer of a stream held about a second in (issue 12; hls.py,
    # FIRST_MEDIA_SEQUENCE).
    packager, _ = packaged(seconds=2)
    playlist = Playlist(packager.playlist(low_latency=True))
    assert playlist.media_sequence == 1
    first = playlist.segments[0]
    assert first["uri"] == "seg_1.ts" and first["parts"][0]["uri"] == "part_1_0.ts"
    assert packager.segment(0) is None and packager.part(0, 0) is None and packager.segment(1) is not None


def test_it_adds_rendition_reports():
    packager, _ = packaged(seconds=2)
    text = packager.playlist(low_latency=True, rendition_reports=[("../cam1_sd.m3u8", 1, 2)])
    assert text.endswith('#EXT-X-RENDITION-REPORT:URI="../cam1_sd.m3u8",LAST-MSN=1,LAST-PART=2\n')


def test_it_renders_a_playlist_once_per_state_and_again_after_each_frame():
    tags = flv_tags(ffmpeg_flv(seconds=3))
    packager = HlsPackager()
    feed(packager, tags[:60])
    first = packager.playlist(low_latency=True, token="5-cd")
    # The viewers woken by one part all get the rendering the first one made.
    assert packager.playlist(low_latency=True, token="5-cd") is first
    assert packager.playlist(low_latency=False, token="5-cd") != first
    assert packager.playlist(low_latency=True, token="6-ef") == first.replace("5-cd", "6-ef")
    feed(packager, tags[60:])
    after = packager.playlist(low_latency=True, token="5-cd")
    assert after != first
    assert after == HlsPackager._render(packager, True, "5-cd", ())
    packager.discontinuity()
    assert packager.playlist(low_latency=True, token="5-cd") == HlsPackager._render(packager, True, "5-cd", ())


# --- discontinuities --------------------------------------------------------------------


def test_it_marks_a_new_publisher_with_a_discontinuity_until_it_slides_out():
    packager = HlsPackager(window_segments=3)
    tags = flv_tags(ffmpeg_flv(seconds=3))
    feed(packager, tags)
    packager.discontinuity()
    playlist = Playlist(packager.playlist(low_latency=True))
    assert [s["duration"] for s in playlist.segments] == pytest.approx([1.0, 1.0, 1.0], abs=0.035)
    assert playlist.open is None and hinted(playlist) == MediaRef(FIRST + 3, 0)
    feed(packager, tags, wall_offset_s=3.5)  # the new publisher starts again at 0, half a second later
    playlist = Playlist(packager.playlist())
    check_playlist_rules(playlist)
    assert [s["discontinuity"] for s in playlist.segments] == [False, True, False]
    assert "#EXT-X-DISCONTINUITY-SEQUENCE" not in playlist.tags
    assert ts_packets(packager.segment(FIRST + 3))[0].continuity == 0  # counters restarted
    check_continuity(packager.segment(FIRST + 3) + packager.segment(FIRST + 4))
    feed(packager, tags, offset_ms=3000, wall_offset_s=3.5)
    playlist = Playlist(packager.playlist(low_latency=True))
    check_playlist_rules(playlist)
    assert playlist.media_sequence == FIRST + 5
    assert playlist.tags["#EXT-X-DISCONTINUITY-SEQUENCE"] == "1"
    assert not any(s["discontinuity"] for s in playlist.segments)


def test_it_never_ends_a_segment_at_zero_seconds():
    packager = HlsPackager()
    feed(packager, flv_tags(ffmpeg_flv(seconds=1))[:6])  # one keyframe only
    packager.discontinuity()
    assert Playlist(packager.playlist()).segments[0]["duration"] == 0.04


def test_it_ignores_a_discontinuity_before_any_media():
    packager = HlsPackager()
    packager.discontinuity()
    feed(packager, flv_tags(ffmpeg_flv(seconds=3)))
    assert not any(s["discontinuity"] for s in Playlist(packager.playlist()).segments)


# --- limits ------------------------------------------------------------------------------


def synthetic_frame(keyframe: bool) -> bytes:
    return (b"\x17" if keyframe else b"\x27") + b"\x01\x00\x00\x00" + b"\x00\x00\x00\x02" + b"\x65\x88"


@pytest.mark.parametrize(("last_ms", "cut"), [(MAX_SEGMENT_DURATION_MS - 1, False), (MAX_SEGMENT_DURATION_MS, True)])
def test_it_cuts_a_segment_without_keyframes_at_max_segment_duration_ms(last_ms, cut):
    packager = HlsPackager()
    header = next(t.body for t in flv_tags(ffmpeg_flv()) if t.tag_type == VIDEO)
    packager.push("video", 0, header, sequence_header=True)
    events = []
    for ms in [*range(0, MAX_SEGMENT_DURATION_MS - 40, 40), last_ms]:
        events += packager.push("video", ms, synthetic_frame(ms == 0), keyframe=ms == 0, wallclock=START)
    assert any(isinstance(e, HlsSegmentCompleted) for e in events) == cut


@pytest.mark.parametrize(("extra_bytes", "cut"), [(-1, False), (0, True)])
def test_it_cuts_a_segment_without_keyframes_at_max_segment_bytes(monkeypatch, extra_bytes, cut):
    packager = HlsPackager()
    header = next(t.body for t in flv_tags(ffmpeg_flv()) if t.tag_type == VIDEO)
    packager.push("video", 0, header, sequence_header=True)
    packager.push("video", 0, synthetic_frame(True), keyframe=True, wallclock=START)
    packager.push("video", 40, synthetic_frame(False), wallclock=START)
    # The open segment's size decides the cut before the next frame goes in.
    monkeypatch.setattr(hls, "MAX_SEGMENT_BYTES", len(packager._open.data) - extra_bytes)
    events = packager.push("video", 80, synthetic_frame(False), wallclock=START)
    assert (HlsSegmentCompleted(FIRST) in events) == cut


def test_it_refuses_bad_configuration():
    with pytest.raises(ValueError, match="target_duration_s must be an integer of at least 1"):
        HlsPackager(target_duration_s=0)
    with pytest.raises(ValueError, match="target_duration_s must be at most 10"):
        HlsPackager(target_duration_s=11)
    with pytest.raises(ValueError, match="part_duration_s must be 0.1-1.0"):
        HlsPackager(part_duration_s=0.05)
    with pytest.raises(ValueError, match="window_segments must be 3-100"):
        HlsPackager(window_segments=2)
    with pytest.raises(ValueError, match="part_hold_back_parts must be at least 2"):
        HlsPackager(part_hold_back_parts=1)


def test_it_holds_back_the_configured_number_of_parts():
    packager, _ = packaged(seconds=2, part_duration_s=0.2, part_hold_back_parts=2)
    assert Playlist(packager.playlist(low_latency=True)).server_control()["PART-HOLD-BACK"] == "0.402"


def test_it_says_when_the_open_segment_is_about_to_end():
    # The server answers a joining player after that end (hls_server.py,
    # JOIN_SEGMENT_END_MARGIN_MS): 1 s GOPs at 30 fps.
    packager = HlsPackager(part_duration_s=0.2)
    tags = flv_tags(ffmpeg_flv(seconds=3))
    seen = []

    def record(_events):
        seen.append((packager.building_part[0], packager.segment_ends_within(400)))

    assert not packager.segment_ends_within(400)  # nothing yet
    feed(packager, tags, after=record)
    # Within each segment after the first: False early, then True from 0.6 s on.
    by_msn: dict[int, list[bool]] = {}
    for msn, near in seen:
        by_msn.setdefault(msn, []).append(near)
    flags = by_msn[FIRST + 1]
    assert flags == sorted(flags) and flags[0] is False and flags[-1] is True
    assert flags.count(True) == 2  # parts ending at 0.8 and 1.0 s: the last two of five


def test_it_drops_a_bad_frame_and_stays_usable():
    packager = HlsPackager()
    tags = flv_tags(ffmpeg_flv(seconds=3))
    feed(packager, tags[:20])
    before = packager.playlist(low_latency=True)
    with pytest.raises(TsMuxError):
        packager.push("video", 2000, b"\x27\x01\x00\x00\x00\x00\x00\x00\x10\x41", wallclock=START)
    assert packager.playlist(low_latency=True) == before
    feed(packager, tags[20:])
    check_continuity(packager.segment(FIRST) + packager.segment(FIRST + 1))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(
        st.tuples(
            st.sampled_from(["video", "audio", "meta"]),
            st.integers(min_value=0, max_value=30_000),
            st.booleans(),
            st.one_of(st.binary(max_size=40), st.sampled_from([synthetic_frame(True), synthetic_frame(False)])),
        ),
        max_size=60,
    ),
    breaks=st.sets(st.integers(min_value=0, max_value=60), max_size=3),
)
def test_it_packages_any_frames_or_raises_the_typed_error(frames, breaks):
    packager = HlsPackager(window_segments=3, retained_segments=0)
    header = next(t.body for t in flv_tags(ffmpeg_flv()) if t.tag_type == VIDEO)
    audio = next(t.body for t in flv_tags(ffmpeg_flv()) if t.tag_type == AUDIO)
    packager.push("video", 0, header, sequence_header=True)
    packager.push("audio", 0, audio, sequence_header=True)
    for index, (kind, timestamp, keyframe, body) in enumerate(frames):
        if index in breaks:
            packager.discontinuity()
        try:
            packager.push(kind, timestamp, body, keyframe=keyframe, wallclock=START)
        except TsMuxError:
            pass
    for low_latency in (False, True):
        playlist = Playlist(packager.playlist(low_latency=low_latency))
        assert all(int(s["duration"] + 0.5) <= playlist.target_duration for s in playlist.segments)
    assert len(packager._segments) <= 3


# --- blocking playlist reload (8216bis 6.2.5.2) -----------------------------------------

EDGE = {"open_msn": 10, "open_parts": 2, "previous_parts": 3, "part_limit": 9}


@pytest.mark.parametrize(
    ("msn", "part", "readiness", "reason"),
    [
        (None, None, Readiness.READY, ""),
        ("9", None, Readiness.READY, ""),  # the last complete segment
        ("10", None, Readiness.WAIT, ""),  # the open one
        ("11", None, Readiness.WAIT, ""),
        ("12", None, Readiness.BAD_REQUEST, "_HLS_msn 12 is more than two segments past the last one"),
        ("5", "0", Readiness.READY, ""),
        ("9", "2", Readiness.READY, ""),
        ("9", "7", Readiness.READY, ""),  # a later part (of segment 10) exists
        ("10", "1", Readiness.READY, ""),
        ("10", "2", Readiness.WAIT, ""),  # the part being built: the preload hint
        ("10", "10", Readiness.WAIT, ""),
        ("10", "11", Readiness.BAD_REQUEST, "_HLS_part 11 is more than 9 parts ahead"),
        ("11", "0", Readiness.WAIT, ""),
        ("11", "8", Readiness.BAD_REQUEST, "_HLS_part 8 is more than 9 parts ahead"),
        (None, "1", Readiness.BAD_REQUEST, "_HLS_part without _HLS_msn"),
        ("-1", None, Readiness.BAD_REQUEST, "_HLS_msn must be a non-negative integer"),
        ("1e3", None, Readiness.BAD_REQUEST, "_HLS_msn must be a non-negative integer"),
        ("٣", None, Readiness.BAD_REQUEST, "_HLS_msn must be a non-negative integer"),
        ("9" * 19, None, Readiness.BAD_REQUEST, "_HLS_msn must be a non-negative integer"),
        ("10", "x", Readiness.BAD_REQUEST, "_HLS_part must be a non-negative integer"),
    ],
)
def test_it_decides_blocking_reloads(msn, part, readiness, reason):
    decision = decide_blocking_reload(msn, part, **EDGE)
    assert (decision.readiness, decision.reason) == (readiness, reason)


def test_it_waits_for_the_first_part_of_a_segment_after_the_last_part():
    edge = {**EDGE, "open_parts": 0}
    assert decide_blocking_reload("9", "3", **edge).readiness is Readiness.WAIT
    assert decide_blocking_reload("9", "2", **edge).readiness is Readiness.READY


def test_it_answers_a_blocked_reload_once_the_part_is_pushed():
    packager = HlsPackager()
    tags = flv_tags(ffmpeg_flv(seconds=3))
    assert packager.reload_decision(str(FIRST), "0").readiness is Readiness.WAIT
    assert packager.reload_decision(str(FIRST + 2), None).readiness is Readiness.BAD_REQUEST
    seen = []

    def after(events):
        seen.append((events, packager.reload_decision(str(FIRST + 1), "1").readiness))

    feed(packager, tags, after=after)
    first_ready = next(i for i, (_, r) in enumerate(seen) if r is Readiness.READY)
    assert HlsPartCompleted(FIRST + 1, 1) in seen[first_ready][0]
    assert all(r is Readiness.WAIT for _, r in seen[:first_ready])
    assert packager.blocking_timeout_s == 3


# --- URIs and tokens ---------------------------------------------------------------------


def test_it_reads_media_uris_back():
    assert parse_media_uri("seg_12.ts") == MediaRef(12)
    assert parse_media_uri("part_12_3.ts") == MediaRef(12, 3)
    for name in ("seg_.ts", "seg_1.m4s", "part_1.ts", "seg_-1.ts", "x/seg_1.ts", "seg_" + "1" * 19 + ".ts"):
        assert parse_media_uri(name) is None


# --- bad timestamps (issue 11) ---------------------------------------------------------------


def retimed(tags, timestamp) -> list:
    """The tags with `timestamp(tag.timestamp)` in place of their own."""
    return [dataclasses.replace(tag, timestamp=timestamp(tag.timestamp)) for tag in tags]


def media_tags(seconds: float = 6):
    tags = flv_tags(ffmpeg_flv(seconds=seconds))
    headers = [t for t in tags if t.tag_type != VIDEO or video_is_sequence_header(t.body)]
    headers = [t for t in headers if t.tag_type != AUDIO or audio_is_sequence_header(t.body)]
    return tags, [t for t in tags if t not in headers]


def test_it_goes_on_after_one_frame_stamped_near_2_to_the_32():
    packager = HlsPackager(window_segments=3, retained_segments=1)
    tags, media = media_tags()
    first_key = next(t for t in media if t.tag_type == VIDEO)
    feed(packager, [t for t in tags if t not in media])  # the sequence headers
    packager.push("video", 0xFFFF_FFF0, first_key.body, keyframe=True, wallclock=START)
    pushed = 0
    for round_ in range(5):  # 30 s of normal timestamps after the bad frame
        feed(packager, media, offset_ms=6000 * round_)
        pushed += sum(len(t.body) for t in media)
        playlist = Playlist(packager.playlist())
        check_playlist_rules(playlist)
    # The playlist slides with the media (it stayed at segment 0 for good) ...
    assert playlist.media_sequence >= 25, packager.playlist()
    assert sum(s["discontinuity"] for s in playlist.segments) <= 1
    assert all(0.9 <= s["duration"] <= 1.1 for s in playlist.segments)
    # ... and holds the window and the retained segment, not all it was sent.
    assert packager.held_bytes < pushed * 6 / 30


def test_it_reads_a_32_bit_wrap_as_a_discontinuity_and_goes_on():
    packager = HlsPackager(window_segments=3)
    tags, media = media_tags()
    start = 0xFFFF_FFFF - 2500  # wraps in the third second
    feed(packager, retimed(tags, lambda ts: (ts + start) & 0xFFFF_FFFF))
    feed(packager, retimed(media, lambda ts: (ts + start + 6000) & 0xFFFF_FFFF))
    playlist = Playlist(packager.playlist(low_latency=True))
    check_playlist_rules(playlist)
    assert playlist.media_sequence >= 6
    assert all(s["duration"] <= 1.1 for s in playlist.segments)


def test_it_marks_a_jump_back_of_5_s_as_a_discontinuity_and_does_not_stall():
    packager = HlsPackager(window_segments=6)
    tags, media = media_tags()
    feed(packager, tags, offset_ms=10_000)  # 10-16 s
    before = Playlist(packager.playlist()).segments[-1]["uri"]
    feed(packager, media[: len(media) // 3], offset_ms=11_000)  # back 5 s, 2 s of it
    playlist = Playlist(packager.playlist())
    check_playlist_rules(playlist)
    uris = [s["uri"] for s in playlist.segments]
    # The segment open at the jump ends there; the next starts the new timeline.
    ended, new = playlist.segments[uris.index(before) + 1], playlist.segments[uris.index(before) + 2 :]
    assert not ended["discontinuity"] and ended["duration"] <= 1.1
    # Clamped to the last time, these 2 s would have stayed in one open segment.
    assert new and new[0]["discontinuity"] and not any(s["discontinuity"] for s in new[1:])
    assert ts_packets(packager.segment(parse_media_uri(new[0]["uri"].split("?")[0]).msn))[0].continuity == 0


def test_it_cuts_on_bytes_with_a_frozen_clock_so_memory_stays_bounded(monkeypatch):
    monkeypatch.setattr(hls, "MAX_SEGMENT_BYTES", 20_000)
    packager = HlsPackager(window_segments=3, retained_segments=0)
    tags, media = media_tags()
    feed(packager, [t for t in tags if t not in media])
    video = [t for t in media if t.tag_type == VIDEO]
    audio = [t for t in media if t.tag_type == AUDIO]
    packager.push("video", 5000, video[0].body, keyframe=True, wallclock=START)
    pushed = 0
    for tag in video[1:] + video[1:]:  # every frame at the same time
        packager.push("video", 5000, tag.body, wallclock=START)
        pushed += len(tag.body)
    for tag in audio * 3:  # then audio only, while video stalls
        packager.push("audio", 5000, tag.body, wallclock=START)
        pushed += len(tag.body)
    assert pushed > 20 * 20_000
    assert packager.held_bytes <= 4 * (20_000 + max(len(t.body) for t in media) + 4096)
    # Cut at no keyframe, as at MAX_SEGMENT_DURATION_MS: a player joins late there.
    assert Playlist(packager.playlist()).media_sequence >= 15
