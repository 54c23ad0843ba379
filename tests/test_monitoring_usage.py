"""Usage statistics (monitoring/usage.py): rollups from known samples give
exact totals, peaks and percentiles at each granularity, count a relayed
stream once, take late samples, are idempotent and pruned; the sketch of
unique viewers (monitoring/sketch.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from livecenter.media.stats import viewer_identity
from monitoring import usage
from monitoring.models import StreamSample, UsageRollup, UsageWatermark
from monitoring.sketch import EXACT_MAX_IDS, ViewerSketch
from monitoring.tasks import roll_up_usage
from tests.monitoringsupport import record, stream_sample
from tests.streamsupport import add_pair

T0 = dt.datetime(2026, 5, 1, 10, 0, 0, tzinfo=dt.UTC)
DOMAIN = "push.example.com"


def at(seconds: float) -> dt.datetime:
    # Half a second in: a sample belongs to the second its `at` falls in.
    return T0 + dt.timedelta(seconds=seconds + 0.5)


def sample(seconds: float, bps_in: float, out: dict, viewers: dict, **fields):
    return stream_sample(at=at(seconds), video_bitrate=bps_in, audio_bitrate=0.0, bitrate_out=out, viewers=viewers,
                         **fields)  # fmt: skip


def row(granularity: int, start: dt.datetime, app: str = "live", stream: str = "cam1") -> UsageRollup:
    return UsageRollup.objects.get(granularity=granularity, start=start, domain_name=DOMAIN, app=app, stream=stream)


def ten_minutes_of_cam1() -> None:
    """cam1 for ten minutes: in minute m (0..9) 800 kbit/s x (m + 1) in,
    twice that out over FLV, m + 1 FLV viewers; one second of 8 Mbit/s in
    at 10:00:30."""
    samples = []
    for s in range(600):
        m = s // 60 + 1
        bps_in = 8_000_000.0 if s == 30 else 800_000.0 * m
        samples.append(sample(s, bps_in, {"flv": 1_600_000.0 * m}, {"flv": m}))
    record(*samples)  # as one node's tick: the sink writes them all the same


@pytest.mark.django_db
def test_it_rolls_up_exact_totals_peaks_and_percentiles_at_each_granularity():
    ten_minutes_of_cam1()
    assert usage.roll_up() == 600

    m0 = row(60, T0)
    assert m0.bytes_in == 6_000_000 + 900_000  # 60 s at 100 kB/s, and the spike's extra 900 kB
    assert m0.bytes_out == 12_000_000 and m0.bytes_out_by_protocol == {"flv": 12_000_000}
    assert m0.peak_bps_in == 8_000_000 and m0.peak_bps_out == 1_600_000
    assert m0.p95_bps_in == 6_900_000 * 8 / 60  # a minute's is its average
    assert (m0.peak_viewers, m0.viewer_seconds) == (1, 60)
    m9 = row(60, T0 + dt.timedelta(minutes=9))
    assert (m9.bytes_in, m9.peak_bps_in, m9.peak_viewers) == (60_000_000, 8_000_000, 10)

    first5 = row(300, T0)
    assert first5.bytes_in == 6_000_000 * 15 + 900_000
    assert first5.peak_bps_in == 8_000_000
    assert first5.p95_bps_in == 4_000_000  # of 5 per-minute averages: the 5th, minute 4's
    second5 = row(300, T0 + dt.timedelta(minutes=5))
    assert second5.bytes_in == 6_000_000 * 40 and second5.p95_bps_out == 16_000_000  # minute 9's 1.6 Mbit/s x 10

    hour = row(3600, T0)
    assert hour.bytes_in == 6_000_000 * 55 + 900_000
    assert hour.bytes_out == 12_000_000 * 55
    assert hour.peak_bps_in == 8_000_000 and hour.peak_viewers == 10
    assert hour.viewer_seconds == 60 * 55
    # 12 five-minute periods: the 12th smallest (ceil(11.4)), the second's 6.4 Mbit/s.
    assert hour.p95_bps_in == 6_400_000
    day = row(86400, T0.replace(hour=0))
    assert day.bytes_in == hour.bytes_in
    assert day.p95_bps_in == 0  # 2 of 288 periods had traffic: the 274th smallest is a zero

    # The app's and the domain's rows are the stream's (it is the only one).
    for app, stream in (("live", ""), ("", "")):
        assert row(3600, T0, app, stream).bytes_in == hour.bytes_in


@pytest.mark.django_db
def test_it_takes_the_95th_percentile_of_a_days_five_minute_averages():
    # One second in each of 20 five-minute periods, 300 kbit/s x i: period i's
    # average is 1 kbit/s x i; of the day's 288 periods 268 are zeros, so the
    # 274th smallest is the 6th of the twenty.
    for i in range(1, 21):
        record(sample(300 * i, 300_000.0 * i, {"hls": 600_000.0 * i}, {"hls": 1}))
    usage.roll_up()
    day = row(86400, T0.replace(hour=0))
    assert day.p95_bps_in == 6_000 and day.p95_bps_out == 12_000
    assert day.peak_bps_in == 6_000_000
    assert usage.percentile95([5.0, 1.0, 3.0], 3) == 5.0
    assert usage.percentile95([], 10) == 0.0
    assert usage.percentile95([float(v) for v in range(1, 101)], 100) == 95.0


@pytest.mark.django_db
def test_it_counts_a_relayed_stream_once_and_every_nodes_viewers():
    # The edge holds the publisher and has 2 viewers; the center receives the
    # relay (its ingest is not the domain's) and has 3 viewers of its own.
    for s in range(60):
        record(sample(s, 1_000_000.0, {"flv": 2_000_000.0}, {"flv": 2}, relay_bitrate_out=1_000_000.0),
               node_id="edge-1")  # fmt: skip
        record(sample(s, 1_000_000.0, {"rts": 3_000_000.0}, {"rts": 3}, upstream_node="edge-1"), node_id="center-1")
    usage.roll_up()
    minute = row(60, T0)
    assert minute.bytes_in == 60 * 125_000  # once
    assert minute.bytes_out_by_protocol == {"flv": 60 * 250_000, "rts": 60 * 375_000}  # no relay
    assert minute.peak_bps_out == 5_000_000 and minute.peak_bps_in == 1_000_000
    assert minute.peak_viewers == 5 and minute.viewer_seconds == 300


@pytest.mark.django_db
def test_it_rolls_up_late_samples_and_is_idempotent():
    ten_minutes_of_cam1()
    usage.roll_up()
    before = row(3600, T0).bytes_in
    # A sample of 10:02:10 from a node that was cut off arrives now, after
    # the minute was rolled up: its id is higher, so the minute goes again.
    record(sample(130, 4_000_000.0, {"flv": 0.0}, {"flv": 0}, session_id="s1"), node_id="late-node")
    assert usage.roll_up() == 1
    assert row(60, T0 + dt.timedelta(minutes=2)).bytes_in == 18_000_000 + 500_000
    assert row(60, T0 + dt.timedelta(minutes=2)).peak_bps_in == 2_400_000 + 4_000_000
    assert row(3600, T0).bytes_in == before + 500_000
    assert usage.roll_up() == 0  # nothing new

    # From scratch again (a run that died before saving its watermark): the same rows.
    fields = ("granularity", "start", "app", "stream", "bytes_in", "bytes_out", "peak_bps_in", "p95_bps_in",
              "p95_bps_out", "peak_viewers", "viewer_seconds", "unique_viewers")  # fmt: skip
    rows = sorted(UsageRollup.objects.values_list(*fields))
    UsageWatermark.objects.update(last_sample_id=0)
    usage.roll_up(batch=250)  # and in batches, as beat would
    while usage.roll_up(batch=250):
        pass
    assert sorted(UsageRollup.objects.values_list(*fields)) == rows
    assert UsageWatermark.objects.get().last_sample_id == StreamSample.objects.order_by("-id").first().id


@pytest.mark.django_db
def test_it_counts_unique_viewers_across_minutes_streams_and_nodes():
    record(sample(0, 1.0, {}, {"flv": 2}, viewer_ids=("00000000000000a1", "00000000000000b2")))
    record(sample(61, 1.0, {}, {"flv": 2}, viewer_ids=("00000000000000b2", "00000000000000c3")), node_id="edge-2")
    record(sample(5, 1.0, {}, {"flv": 1}, stream="cam2", viewer_ids=("00000000000000d4", "00000000000000a1")))
    stored = StreamSample.objects.order_by("id").first()
    assert stored.viewer_ids == ["00000000000000a1", "00000000000000b2"]  # the sink keeps them
    usage.roll_up()
    assert row(60, T0).unique_viewers == 2
    assert row(3600, T0).unique_viewers == 3  # b2 once across minutes and nodes
    assert row(3600, T0, "live", "cam2").unique_viewers == 2
    assert row(3600, T0, "", "").unique_viewers == 4  # a1 once across streams


def test_the_sketch_is_exact_while_small_and_within_its_error_past_that():
    ids = [viewer_identity(b"salt", f"10.0.{n // 256}.{n % 256}") for n in range(20_000)]
    small = ViewerSketch.of(ids[:EXACT_MAX_IDS])
    assert small.count() == EXACT_MAX_IDS and len(small.dump()) == 1 + 8 * EXACT_MAX_IDS
    assert ViewerSketch.load(small.dump()).count() == EXACT_MAX_IDS
    for n in (1_000, 20_000):
        big = ViewerSketch.of(ids[:n])
        assert len(big.dump()) == 513
        assert abs(big.count() - n) <= 0.14 * n  # three standard errors (4.6 %)
    # Merging is the sketch of the union, whatever the forms.
    left, right = ViewerSketch.of(ids[:5_000]), ViewerSketch.of(ids[4_000:10_000])
    left.merge(right)
    left.merge(ViewerSketch.of(ids[:10]))
    assert left.dump() == ViewerSketch.of(ids[:10_000]).dump()
    assert ViewerSketch.load(b"garbage").count() == 0


@pytest.mark.django_db
def test_the_prune_keeps_each_granularitys_retention(settings):
    settings.LIVECENTER_USAGE_RETENTION_DAYS = 90
    settings.LIVECENTER_USAGE_MINUTE_RETENTION_DAYS = 7
    now = dt.datetime(2026, 8, 1, 0, 0, tzinfo=dt.UTC)

    def make(granularity: int, start: dt.datetime) -> None:
        UsageRollup.objects.create(granularity=granularity, start=start, domain_name=DOMAIN)

    make(60, now - dt.timedelta(days=7, minutes=2))  # ended before the cutoff: goes
    make(60, now - dt.timedelta(days=7) + dt.timedelta(seconds=-30))  # still inside at its end: stays
    make(300, now - dt.timedelta(days=8))  # 5-minute rows are kept the full retention
    make(86400, now - dt.timedelta(days=92))  # goes
    make(86400, now - dt.timedelta(days=90))  # ends inside: stays
    assert usage.prune(now) == 2
    assert sorted(UsageRollup.objects.values_list("granularity", flat=True)) == [60, 300, 86400]


@pytest.mark.django_db
def test_the_worker_task_rolls_up_and_prunes(owner):
    add_pair(owner)
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    for s in range(3):
        record(stream_sample(at=hour + dt.timedelta(seconds=s + 0.5), video_bitrate=8_000.0, audio_bitrate=0.0))
    UsageRollup.objects.create(granularity=86400, start=T0, domain_name=DOMAIN)  # long past the retention
    roll_up_usage.apply()
    assert row(3600, hour).bytes_in == 3_000
    assert not UsageRollup.objects.filter(start=T0).exists()


@pytest.mark.django_db
def test_it_takes_each_samples_interval_and_a_nodes_last_sample_of_a_second():
    # A late tick covers 1.5 s; the next two of the node land in one second
    # (at 2.05 and 2.95): traffic counts both, the second's figures the later.
    record(sample(0, 800_000.0, {"flv": 1_600_000.0}, {"flv": 2}, interval_seconds=1.0))
    record(sample(1, 800_000.0, {"flv": 1_600_000.0}, {"flv": 2}, interval_seconds=1.5))
    record(stream_sample(at=T0 + dt.timedelta(seconds=2.05), video_bitrate=800_000.0, audio_bitrate=0.0,
                         bitrate_out={"flv": 1_600_000.0}, viewers={"flv": 2}, interval_seconds=0.5))  # fmt: skip
    record(stream_sample(at=T0 + dt.timedelta(seconds=2.95), video_bitrate=800_000.0, audio_bitrate=0.0,
                         bitrate_out={"flv": 1_600_000.0}, viewers={"flv": 3}, interval_seconds=0.9))  # fmt: skip
    usage.roll_up()
    minute = row(60, T0)
    assert minute.bytes_in == 100_000 * (1 + 1.5 + 0.5 + 0.9)
    assert minute.bytes_out == 200_000 * (1 + 1.5 + 0.5 + 0.9)
    assert minute.peak_bps_out == 1_600_000 and minute.peak_viewers == 3  # not 3.2 Mbit/s, not 5 viewers
    assert minute.viewer_seconds == round(2 * 1 + 2 * 1.5 + 2 * 0.5 + 3 * 0.9)
