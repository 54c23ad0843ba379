"""The usage statistics API (/api/v1/monitoring/usage/ and usage/csv/):
the rollups' figures, the same in JSON and CSV, for the owner only."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.utils import timezone

from monitoring import usage
from monitoring.models import UsageRollup
from tests.apisupport import client_for
from tests.monitoringsupport import record, stream_sample
from tests.streamsupport import add_pair

pytestmark = pytest.mark.django_db

BASE = "/api/v1/monitoring/"
# A fixed "now" a little after the samples, so the retention checks hold on any day.
HOUR = timezone.now().replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)


def iso(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def two_streams() -> None:
    """cam1: 10 minutes at 800 kbit/s in, 1.6 Mbit/s out over FLV, 2 viewers;
    cam2: 5 minutes at 400 kbit/s in, 400 kbit/s out over HLS, 1 viewer."""
    samples = []
    for s in range(600):
        at = HOUR + dt.timedelta(seconds=s + 0.5)
        samples += [stream_sample(at=at, video_bitrate=800_000.0, audio_bitrate=0.0, bitrate_out={"flv": 1_600_000.0},
                                 viewers={"flv": 2}, viewer_ids=("00000000000000a1", "00000000000000b2"))]  # fmt: skip
        if s < 300:
            samples.append(stream_sample(stream="cam2", session_id="s2", at=at, video_bitrate=400_000.0,
                                         audio_bitrate=0.0, bitrate_out={"hls": 400_000.0}, viewers={"hls": 1},
                                         viewer_ids=("00000000000000c3",)))  # fmt: skip
    record(*samples)  # as one node's tick: the sink writes them all the same
    usage.roll_up()


def get(user, path: str = "usage/", **params):
    return client_for(user).get(BASE + path, params)


def test_it_gives_a_domains_usage_per_period_and_in_all(owner):
    add_pair(owner)
    two_streams()
    r = get(owner, domain="play.example.com", start_time=iso(HOUR), end_time=iso(HOUR + dt.timedelta(minutes=15)))
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["domain_name"], body["app"], body["stream"], body["interval"]) == ("push.example.com", "", "", 60)
    assert len(body["data"]) == 15 and body["data"][0]["time_stamp"] == iso(HOUR)
    first, sixth, last = body["data"][0], body["data"][5], body["data"][14]
    assert first["bytes_in"] == 60 * 150_000 and first["bytes_out"] == 60 * 250_000
    assert first["bytes_out_by_protocol"] == {"flv": 60 * 200_000, "hls": 60 * 50_000}
    assert first["average_bps_in"] == 1_200_000 and first["peak_bps_out"] == 2_000_000
    assert (first["peak_viewers"], first["average_viewers"], first["unique_viewers"]) == (3, 3, 3)
    assert sixth["bytes_in"] == 60 * 100_000 and sixth["peak_viewers"] == 2  # cam2 stopped
    assert last == {**last, "bytes_in": 0, "bytes_out": 0, "peak_viewers": 0}  # no traffic: zeros
    summary = body["summary"]
    assert summary["bytes_in"] == 300 * 150_000 + 300 * 100_000
    assert summary["peak_bps_in"] == 1_200_000 and summary["unique_viewers"] == 3
    # Three 5-minute periods: the 3rd smallest (ceil(2.85)) is the first's 1.2 Mbit/s.
    assert summary["p95_bps_in"] == 1_200_000
    # The same as the rollups hold.
    hour = UsageRollup.objects.get(granularity=3600, start=HOUR, domain_name="push.example.com", app="", stream="")
    assert hour.bytes_in == summary["bytes_in"] and hour.bytes_out == summary["bytes_out"]


def test_it_gives_an_app_or_a_stream_and_picks_the_interval_from_the_range(owner):
    add_pair(owner)
    two_streams()
    r = get(owner, domain="push.example.com", app="live", stream="cam2", start_time=iso(HOUR - dt.timedelta(hours=10)),
            end_time=iso(HOUR + dt.timedelta(hours=2)))  # fmt: skip
    body = r.json()
    assert body["interval"] == 300 and len(body["data"]) == 144
    point = next(p for p in body["data"] if p["time_stamp"] == iso(HOUR))
    assert point["bytes_in"] == 300 * 50_000 and point["bytes_out_by_protocol"] == {"hls": 300 * 50_000}
    hour = {"start_time": iso(HOUR), "end_time": iso(HOUR + dt.timedelta(hours=1))}
    r = get(owner, domain="push.example.com", app="live", interval=3600, **hour)
    assert r.json()["data"][0]["bytes_in"] == 300 * 150_000 + 300 * 100_000


def test_its_csv_agrees_with_the_json(owner):
    add_pair(owner)
    two_streams()
    params = {"domain": "push.example.com", "start_time": iso(HOUR), "end_time": iso(HOUR + dt.timedelta(minutes=10))}
    body = get(owner, **params).json()
    r = get(owner, "usage/csv/", **params)
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    assert "attachment" in r["Content-Disposition"] and "push.example.com" in r["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.content.decode())))
    assert len(rows) == 11 and rows[-1]["start"] == "total"
    for line, point in zip(rows, [*body["data"], body["summary"]], strict=True):
        assert int(line["bytes_in"]) == point["bytes_in"] and int(line["bytes_out"]) == point["bytes_out"]
        assert float(line["peak_bps_out"]) == point["peak_bps_out"]
        assert float(line["p95_bps_in"]) == point["p95_bps_in"]
        assert int(line["unique_viewers"]) == point["unique_viewers"]
        assert int(line["bytes_out_flv"]) == point["bytes_out_by_protocol"].get("flv", 0)
        assert int(line["bytes_out_hls"]) == point["bytes_out_by_protocol"].get("hls", 0)
    assert rows[0]["start"] == iso(HOUR)


def test_an_operator_sees_only_their_own_domains(owner, outsider):
    add_pair(owner)
    two_streams()
    for path in ("usage/", "usage/csv/"):
        r = get(outsider, path, domain="push.example.com")
        assert r.status_code == 400 and "domain" in r.json()
        assert get(None, path, domain="push.example.com").status_code == 401
    add_pair(outsider, "push.other.com", "play.other.com")
    record(stream_sample(domain="push.other.com", at=HOUR + dt.timedelta(seconds=1)))
    usage.roll_up()
    body = get(
        outsider, domain="push.other.com", start_time=iso(HOUR), end_time=iso(HOUR + dt.timedelta(minutes=5))
    ).json()
    assert body["summary"]["bytes_in"] == 2_128_000 // 8  # their own stream only


def test_it_names_the_field_of_bad_input(owner):
    add_pair(owner)
    cases = [
        ({"domain": "push.example.com", "stream": "cam1"}, "app"),
        ({"domain": "push.example.com", "interval": "7"}, "interval"),
        ({"domain": "push.example.com", "start_time": iso(HOUR), "end_time": iso(HOUR)}, "end_time"),
        ({"domain": "push.example.com", "start_time": iso(HOUR - dt.timedelta(days=3)), "interval": "60"}, "interval"),
        (
            {
                "domain": "push.example.com",
                "start_time": iso(HOUR - dt.timedelta(days=20)),
                "end_time": iso(HOUR - dt.timedelta(days=19)),
                "interval": "60",
            },
            "start_time",
        ),  # fmt: skip
        ({"domain": "push.example.com", "app": "bad app"}, "app"),
        ({}, "domain"),
    ]
    for params, field in cases:
        r = get(owner, **params)
        assert r.status_code == 400 and field in r.json(), (params, r.content)
