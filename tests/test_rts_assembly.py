"""The WHIP publisher's frame assembly and timeline (livecenter/media/rts/
assembly.py), without sockets: frames leave at their marker, gaps are waited
for and then given up on (video waits for a keyframe), late packets are
ignored, sequence numbers wrap; RTP timestamps become the stream's ms and
the tracks are placed by their sender reports."""

from __future__ import annotations

import pytest

from livecenter.media.rts.assembly import FrameAssembler, TrackClock, align_tracks

KEY = b"K"


def video(max_packets=64, loss_wait_ms=100.0) -> FrameAssembler:
    return FrameAssembler(packet_is_frame=False, max_packets=max_packets, loss_wait_ms=loss_wait_ms,
                          is_keyframe=lambda data: data.startswith(KEY))  # fmt: skip


def frame_packets(first_seq: int, timestamp: int, parts: list[bytes]) -> list[tuple]:
    """(seq, timestamp, marker, starts_frame, data) for one frame's packets."""
    last = len(parts) - 1
    return [((first_seq + i) % 65536, timestamp, i == last, i == 0, part) for i, part in enumerate(parts)]


def feed(assembler, packets, now=0.0):
    out = []
    for packet in packets:
        out += assembler.add(*packet, now)
    return out


def test_a_frame_leaves_at_its_marker_not_at_the_next_frame():
    assembler = video()
    packets = frame_packets(10, 3000, [b"K1", b"a", b"b"])
    assert feed(assembler, packets[:2]) == []
    [frame] = feed(assembler, packets[2:])
    assert (frame.data, frame.rtp_timestamp, frame.keyframe) == (b"K1ab", 3000, True)


def test_reordered_packets_make_the_frame_once_all_are_there():
    assembler = video()
    a, b, c = frame_packets(10, 3000, [b"K1", b"a", b"b"])
    assert feed(assembler, [a, c]) == []
    assert [f.data for f in feed(assembler, [b])] == [b"K1ab"]


def test_video_waits_for_a_keyframe_first():
    assembler = video()
    out = feed(assembler, frame_packets(1, 0, [b"P0"]) + frame_packets(2, 3000, [b"K1", b"x"]))
    assert [f.data for f in out] == [b"K1x"]
    assert assembler.frames_skipped == 1


def test_a_gap_is_given_up_after_the_wait_and_video_resumes_at_a_keyframe():
    assembler = video(loss_wait_ms=100)
    feed(assembler, frame_packets(1, 0, [b"K0"]))
    lost_frame = frame_packets(2, 3000, [b"P1a", b"P1b"])
    after = frame_packets(4, 6000, [b"P2"]) + frame_packets(5, 9000, [b"K3"])
    assert feed(assembler, [lost_frame[1]] + after, now=0) == []  # the first packet of frame 1 never comes
    out = assembler.add(6, 12000, True, True, b"P4", 150.0)  # past the wait
    assert [f.data for f in out] == [b"K3", b"P4"], "the broken frame and the P-frame after it are dropped"
    assert assembler.frames_lost == 1
    assert assembler.frames_skipped == 1


def test_a_retransmission_in_time_repairs_the_gap():
    assembler = video(loss_wait_ms=100)
    feed(assembler, frame_packets(1, 0, [b"K0"]))
    a, b = frame_packets(2, 3000, [b"P1a", b"P1b"])
    assert feed(assembler, [b], now=0) == []
    assert [f.data for f in feed(assembler, [a], now=50)] == [b"P1aP1b"]
    assert assembler.frames_lost == 0


def test_late_duplicates_are_ignored():
    assembler = video()
    packets = frame_packets(1, 0, [b"K0"])
    feed(assembler, packets)
    assert feed(assembler, packets) == []
    assert assembler.packets_late == 1


def test_sequence_numbers_wrap():
    assembler = video()
    out = feed(assembler, frame_packets(65534, 0, [b"K0", b"a", b"b", b"c"]) + frame_packets(2, 3000, [b"P1"]))
    assert [f.data for f in out] == [b"K0abc", b"P1"]


def test_a_frame_without_a_marker_ends_where_the_next_timestamp_begins():
    assembler = video()
    out = feed(assembler, [(1, 0, False, True, b"K0"), (2, 3000, True, True, b"P1")])
    assert [f.data for f in out] == [b"K0", b"P1"]


def test_holding_more_than_the_limit_gives_the_gap_up_at_once():
    assembler = video(max_packets=4, loss_wait_ms=10_000)
    feed(assembler, frame_packets(1, 0, [b"K0"]))
    held = [(n, 3000 * n, True, True, b"K" if n == 6 else b"P") for n in range(3, 8)]  # seq 2 lost
    out = feed(assembler, held)
    assert [f.rtp_timestamp for f in out] == [18000, 21000]
    assert assembler.frames_lost == 1


def test_audio_packets_are_frames_and_a_gap_is_skipped_after_the_wait():
    assembler = FrameAssembler(packet_is_frame=True, max_packets=16, loss_wait_ms=60)
    assert [f.data for f in feed(assembler, [(1, 0, True, True, b"a"), (2, 960, False, True, b"b")])] == [b"a", b"b"]
    assert feed(assembler, [(4, 2880, False, True, b"d")], now=0) == []
    assert [f.data for f in assembler.add(5, 3840, False, True, b"e", 70.0)] == [b"d", b"e"]


def test_a_jump_in_sequence_numbers_starts_again():
    assembler = video()
    feed(assembler, frame_packets(1, 0, [b"K0"]))
    out = feed(assembler, frame_packets(40000, 3000, [b"P1"]) + frame_packets(40001, 6000, [b"K2"]))
    assert [f.data for f in out] == [b"K2"]


def test_a_track_clock_starts_at_its_arrival_and_unwraps():
    clock = TrackClock(90_000)
    assert clock.ms(2**32 - 9000, 500.0) == 500.0
    assert clock.ms(81000, 600.0) == pytest.approx(500.0 + 1000.0)  # across the wrap: 90,000 ticks on


def test_sender_reports_place_the_tracks_against_the_video():
    video_clock, audio_clock = TrackClock(90_000), TrackClock(48_000)
    assert video_clock.ms(1000, 100.0) == 100.0
    assert audio_clock.ms(5000, 180.0) == 180.0  # arrived 80 ms after, by the network
    assert not align_tracks(video_clock, [audio_clock])
    # Both first timestamps were taken at NTP 10.000 s: the audio's 80 ms was delay.
    video_clock.sender_report(10.5, 1000 + 45_000)
    audio_clock.sender_report(10.5, 5000 + 24_000)
    assert align_tracks(video_clock, [audio_clock])
    assert audio_clock.ms(5000 + 4800, 0.0) == pytest.approx(100.0 + 100.0)
    assert video_clock.ms(1000 + 9000, 0.0) == pytest.approx(200.0)
