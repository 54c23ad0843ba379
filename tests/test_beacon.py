"""Viewer telemetry, the pure parts (livecenter/media/beacon.py): a
beacon's validation with errors naming the field, its limits at and one
past, the region table's longest-prefix match, token buckets and the
per-minute aggregation."""

from __future__ import annotations

import json

import pytest

from livecenter.media.beacon import (
    LATENCY_BUCKETS_MS,
    MAX_BEACON_BYTES,
    MAX_BEACON_EVENTS,
    TTFF_BUCKETS_MS,
    BeaconError,
    BeaconLimits,
    BeaconRateLimiter,
    PlaybackAggregator,
    RegionTable,
    RegionTableError,
    TokenBuckets,
    histogram_percentile,
    parse_beacon,
)
from livecenter.media.policy import StreamKey

SESSION = "s3ss10n-abcdefghij"
KEY = StreamKey("push.test", "live", "cam1")


def body(events, **top) -> bytes:
    return json.dumps({"v": 1, "session": SESSION, "events": events} | top).encode()


def error_of(data: bytes) -> BeaconError:
    with pytest.raises(BeaconError) as caught:
        parse_beacon(data)
    return caught.value


def test_it_parses_every_event_type():
    beacon = parse_beacon(
        body(
            [
                {"type": "start", "protocol": "rts"},
                {"type": "first_frame", "protocol": "flv", "ttff_ms": 240},
                {"type": "stall", "protocol": "flv", "duration_ms": 1200},
                {"type": "watch", "protocol": "flv", "duration_ms": 10000},
                {"type": "bitrate_switch", "protocol": "hls", "to_kbps": 800},
                {"type": "fallback", "protocol": "rts", "to": "flv"},
                {"type": "latency", "protocol": "rts", "latency_ms": 48},
                {"type": "error", "protocol": "rts", "kind": "network"},
            ]
        )
    )
    assert beacon.session == SESSION
    assert [(e.type, e.protocol, e.value, e.label) for e in beacon.events] == [
        ("start", "rts", 0, ""),
        ("first_frame", "flv", 240, ""),
        ("stall", "flv", 1200, ""),
        ("watch", "flv", 10000, ""),
        ("bitrate_switch", "hls", 800, ""),
        ("fallback", "rts", 0, "flv"),
        ("latency", "rts", 48, ""),
        ("error", "rts", 0, "network"),
    ]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (b"not json", "body", "is not JSON"),
        (b"[1]", "body", "must be a JSON object"),
        (json.dumps({"v": 2, "session": SESSION, "events": []}).encode(), "v", "must be 1"),
        (json.dumps({"v": True, "session": SESSION, "events": []}).encode(), "v", "must be 1"),
        (body([{"type": "start", "protocol": "rts"}], extra=1), "extra", "is not a field of a beacon"),
        (json.dumps({"v": 1, "session": "short", "events": []}).encode(), "session", "must be 8 to 64"),
        (body([]), "events", "must be a list of 1 to 50 events"),
        (body([7]), "events[0]", "must be an object"),
        (body([{"type": "boom", "protocol": "rts"}]), "events[0].type", "must be one of start"),
        (body([{"type": "start", "protocol": "rtmp"}]), "events[0].protocol", "must be one of rts"),
        (body([{"type": "first_frame", "protocol": "rts"}]), "events[0].ttff_ms", "is required"),
        (body([{"type": "first_frame", "protocol": "rts", "ttff_ms": -1}]), "events[0].ttff_ms", "from 0 to 600000"),
        (body([{"type": "first_frame", "protocol": "rts", "ttff_ms": 1.5}]), "events[0].ttff_ms", "an integer"),
        (body([{"type": "stall", "protocol": "rts", "duration_ms": True}]), "events[0].duration_ms", "an integer"),
        (body([{"type": "stall", "protocol": "rts", "duration_ms": 3_600_001}]), "events[0].duration_ms", "3600000"),
        (body([{"type": "start", "protocol": "rts", "ttff_ms": 1}]), "events[0].ttff_ms", "not a field of a start"),
        (body([{"type": "error", "protocol": "rts", "kind": "boom"}]), "events[0].kind", "must be one of network"),
        (body([{"type": "fallback", "protocol": "rts", "to": "ftp"}]), "events[0].to", "must be one of rts"),
        (
            body([{"type": "start", "protocol": "rts"}, {"type": "latency", "protocol": "rts", "latency_ms": "5"}]),
            "events[1].latency_ms",
            "an integer",
        ),
    ],
)
def test_it_names_the_field_that_is_wrong(data, field, message):
    error = error_of(data)
    assert error.field == field
    assert message in error.message
    assert str(error).startswith(f"{field}: ")


def test_it_takes_at_most_max_beacon_events():
    start = {"type": "start", "protocol": "flv"}
    assert len(parse_beacon(body([start] * MAX_BEACON_EVENTS)).events) == MAX_BEACON_EVENTS
    assert error_of(body([start] * (MAX_BEACON_EVENTS + 1))).field == "events"


def test_it_takes_at_most_max_beacon_bytes():
    def padded(size: int) -> bytes:
        data = body([{"type": "start", "protocol": "flv"}])
        return data[:-1] + b" " * (size - len(data)) + b"}"

    assert parse_beacon(padded(MAX_BEACON_BYTES)).session == SESSION
    error = error_of(padded(MAX_BEACON_BYTES + 1))
    assert (error.field, error.message) == ("body", f"must be at most {MAX_BEACON_BYTES} bytes")


def test_the_default_region_table_calls_private_addresses_local():
    table = RegionTable()
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.9", "::1", "fd00::5", "::ffff:10.0.0.1"):
        assert table.lookup(address) == "local", address
    assert table.lookup("203.0.113.7") == "unknown"
    assert table.lookup("not an address") == "unknown"


def test_the_longest_prefix_wins():
    table = RegionTable.parse(
        "# offices\n"
        "203.0.113.0/24,apac\n"
        "203.0.113.128/25, apac-sg\n"
        "203.0.113.200/32,studio\n"
        "\n"
        "2001:db8::/32,eu\n"
        "2001:db8:1::/48,eu-de\n"
        "0.0.0.0/0,world\n"
    )
    assert table.lookup("203.0.113.5") == "apac"
    assert table.lookup("203.0.113.130") == "apac-sg"
    assert table.lookup("203.0.113.200") == "studio"
    assert table.lookup("198.51.100.1") == "world"
    assert table.lookup("2001:db8:1::7") == "eu-de"
    assert table.lookup("2001:db8:2::7") == "eu"
    assert table.lookup("2001:db9::1") == "unknown"
    assert table.lookup("127.0.0.1") == "world"  # a configured table replaces the built-in one


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.0/8,lan\nnot-a-net,x\n", "line 2: 'not-a-net' is not an IP network"),
        ("10.0.0.0/8\n", "line 1: the region must be"),
        ("10.0.0.0/8,bad;region\n", "line 1: the region must be"),
    ],
)
def test_a_bad_region_table_names_the_line(text, message):
    with pytest.raises(RegionTableError) as caught:
        RegionTable.parse(text, "regions.csv")
    assert f"regions.csv {message}" in str(caught.value)


def test_token_buckets_refill_at_their_rate_and_forget_the_oldest_key():
    buckets = TokenBuckets(rate=1.0, burst=2, max_keys=2)
    assert buckets.take("a", 0.0) and buckets.take("a", 0.0)
    assert not buckets.take("a", 0.5)
    assert buckets.take("a", 1.0)
    buckets.take("b", 1.0)
    buckets.take("c", 1.0)  # past max_keys: "a", seen least recently, is forgotten
    assert len(buckets) == 2
    assert buckets.take("a", 1.0) and buckets.take("a", 1.0)  # a fresh bucket


def test_the_limiter_counts_clients_and_streams_apart():
    limiter = BeaconRateLimiter(BeaconLimits(client_per_second=0.001, client_burst=1, stream_per_second=0.001,
                                             stream_burst=2))  # fmt: skip
    assert limiter.client_allows("192.0.2.1", 0)
    assert not limiter.client_allows("192.0.2.1", 0)
    assert limiter.client_allows("192.0.2.2", 0)
    assert limiter.stream_allows(KEY, 0) and limiter.stream_allows(KEY, 0)
    assert not limiter.stream_allows(KEY, 0)
    assert limiter.stream_allows(StreamKey("push.test", "live", "cam2"), 0)


def test_the_aggregator_sums_per_minute_protocol_and_region():
    aggregator = PlaybackAggregator()
    first = parse_beacon(
        body(
            [
                {"type": "start", "protocol": "rts"},
                {"type": "error", "protocol": "rts", "kind": "timeout"},
                {"type": "fallback", "protocol": "rts", "to": "flv"},
                {"type": "start", "protocol": "flv"},
                {"type": "first_frame", "protocol": "flv", "ttff_ms": 250},
                {"type": "stall", "protocol": "flv", "duration_ms": 500},
                {"type": "watch", "protocol": "flv", "duration_ms": 9000},
                {"type": "latency", "protocol": "flv", "latency_ms": 420},
            ]
        )
    )
    second = parse_beacon(
        body([{"type": "stall", "protocol": "flv", "duration_ms": 1500}, {"type": "watch", "protocol": "flv",
              "duration_ms": 10000}, {"type": "bitrate_switch", "protocol": "flv", "to_kbps": 900}])
    )  # fmt: skip
    assert aggregator.add(KEY, "play.test", "local", first, 120.5)
    assert aggregator.add(KEY, "play.test", "local", second, 179.9)
    assert aggregator.add(KEY, "play.test", "local", second, 180.0)  # the next minute
    rows = {(r.minute, r.protocol): r for r in aggregator.flush()}
    assert sorted(rows) == [(120, "flv"), (120, "rts"), (180, "flv")]
    rts, flv = rows[(120, "rts")], rows[(120, "flv")]
    assert (rts.sessions, rts.errors, rts.fallbacks) == (1, {"timeout": 1}, {"rts>flv": 1})
    assert (flv.sessions, flv.stalls, flv.stall_ms, flv.watch_ms, flv.bitrate_switches) == (1, 2, 2000, 19000, 1)
    assert flv.ttff_counts[TTFF_BUCKETS_MS.index(300)] == 1 and sum(flv.ttff_counts) == 1
    assert flv.latency_counts[LATENCY_BUCKETS_MS.index(500)] == 1
    assert (flv.key, flv.streaming_domain, flv.region) == (KEY, "play.test", "local")
    assert rows[(180, "flv")].stall_ms == 1500
    assert aggregator.flush() == ()


def test_a_session_counts_once_per_stream_and_protocol_however_often_it_starts():
    aggregator = PlaybackAggregator()

    def starts(session: str, protocol: str = "flv", key=KEY) -> None:
        beacon = parse_beacon(body([{"type": "start", "protocol": protocol}] * 2, session=session))
        assert aggregator.add(key, "play.test", "local", beacon, 0)

    starts("session-a")
    starts("session-a")  # a retry
    starts("session-a", "rts")
    starts("session-a", key=StreamKey("push.test", "live", "cam2"))
    starts("session-b")
    counted = sorted((r.key.stream, r.protocol, r.sessions) for r in aggregator.flush())
    assert counted == [("cam1", "flv", 2), ("cam1", "rts", 1), ("cam2", "flv", 1)]
    starts("session-a")  # remembered across flushes
    assert [r.sessions for r in aggregator.flush()] == [0]


def test_it_remembers_at_most_max_sessions():
    aggregator = PlaybackAggregator(max_sessions=2)
    for session in ("session-a", "session-b", "session-a", "session-c", "session-b"):
        aggregator.add(KEY, "play.test", "local", parse_beacon(body([{"type": "start", "protocol": "flv"}],
                       session=session)), 0)  # fmt: skip
    # a, b; a again (not counted, now the most recent); c (b, the least recent, forgotten); b again, counted
    assert [r.sessions for r in aggregator.flush()] == [4]


def test_the_aggregator_holds_at_most_max_rows():
    aggregator = PlaybackAggregator(max_rows=2)
    start = parse_beacon(body([{"type": "start", "protocol": "flv"}]))
    assert aggregator.add(KEY, "play.test", "a", start, 0)
    assert aggregator.add(KEY, "play.test", "b", start, 0)
    assert aggregator.add(KEY, "play.test", "b", start, 0)  # an open row takes more
    assert not aggregator.add(KEY, "play.test", "c", start, 0)
    assert len(aggregator) == 2
    aggregator.flush()
    assert aggregator.add(KEY, "play.test", "c", start, 0)


def test_percentiles_are_the_upper_bound_of_the_bucket_holding_the_rank():
    bounds = (100, 200, 300)
    assert histogram_percentile(bounds, [0, 0, 0, 0], 0.5) is None
    assert histogram_percentile(bounds, [1, 1, 1, 1], 0.5) == 200
    assert histogram_percentile(bounds, [1, 1, 1, 1], 0.99) == 300  # above the last bound: that bound
    assert histogram_percentile(bounds, [0, 9, 0, 1], 0.9) == 200
    assert histogram_percentile(bounds, [0, 9, 0, 1], 0.91) == 300
