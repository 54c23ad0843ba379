"""The node's capacity (livecenter/media/capacity.py): the egress cost model,
the gauge that admits or refuses a new viewer, and media workers' tokens."""

from __future__ import annotations

import pytest

from livecenter.media.capacity import (
    RTS_COST_WEIGHT,
    UNMEASURED_BITRATE_BPS,
    EgressGauge,
    LoopLagGauge,
    egress_bps,
    is_worker,
    viewer_cost_bps,
    worker_token,
)

MBIT = 1_000_000


def test_it_costs_a_viewer_its_streams_bitrate_and_an_rts_viewer_more():
    assert viewer_cost_bps("flv", 2 * MBIT) == 2 * MBIT
    assert viewer_cost_bps("rtmp", 2 * MBIT) == 2 * MBIT
    assert viewer_cost_bps("hls", 2 * MBIT) == 2 * MBIT
    assert viewer_cost_bps("rts", 2 * MBIT) == RTS_COST_WEIGHT * 2 * MBIT


def test_it_counts_a_stream_not_measured_yet_at_the_reference_bitrate():
    assert viewer_cost_bps("flv", 0) == UNMEASURED_BITRATE_BPS


def test_it_adds_up_the_egress_of_every_stream():
    streams = [(2 * MBIT, {"flv": 3, "rtmp": 1}), (1 * MBIT, {"rts": 2, "hls": 4}), (4 * MBIT, {})]
    assert egress_bps(streams) == 8 * MBIT + (2 * RTS_COST_WEIGHT + 4) * MBIT


def test_it_admits_while_the_load_is_under_the_capacity():
    gauge = EgressGauge(max_egress_mbps=5)
    assert gauge.admit(0.0, "flv", 2 * MBIT, lambda: 0.0)
    assert gauge.admit(0.1, "flv", 2 * MBIT, lambda: pytest.fail("measured again within the recheck time"))
    assert gauge.admit(0.2, "flv", 2 * MBIT, lambda: 0.0)  # 4 Mbit/s < 5: the last one in takes it past
    assert not gauge.admit(0.3, "flv", 2 * MBIT, lambda: 0.0)
    assert gauge.refused == 1


def test_it_measures_again_after_the_recheck_time():
    gauge = EgressGauge(max_egress_mbps=5, recheck_seconds=1)
    assert gauge.admit(0.0, "flv", 2 * MBIT, lambda: 6 * MBIT) is False
    # Viewers left: the next measure finds room.
    assert gauge.admit(1.0, "flv", 2 * MBIT, lambda: 1 * MBIT)
    assert gauge.load_bps == 3 * MBIT


def test_it_measures_again_when_the_clock_goes_back():
    gauge = EgressGauge(max_egress_mbps=5)
    assert not gauge.admit(10.0, "flv", 0, lambda: 9 * MBIT)
    assert gauge.admit(5.0, "flv", 0, lambda: 0.0)


def test_a_burst_of_joiners_cannot_all_slip_in_under_one_reading():
    gauge = EgressGauge(max_egress_mbps=100)
    admitted = sum(gauge.admit(0.0, "flv", 2 * MBIT, lambda: 0.0) for _ in range(1000))
    assert admitted == 50


def test_an_rts_viewer_takes_the_room_of_thirty():
    gauge = EgressGauge(max_egress_mbps=60)
    assert gauge.admit(0.0, "rts", 2 * MBIT, lambda: 0.0)
    assert not gauge.admit(0.0, "flv", 2 * MBIT, lambda: 0.0)


def test_zero_is_no_limit():
    gauge = EgressGauge(max_egress_mbps=0)
    assert not gauge.limited
    assert all(gauge.admit(0.0, "rts", 8 * MBIT, lambda: 1e12) for _ in range(100))


def test_it_refuses_a_negative_capacity():
    with pytest.raises(ValueError, match="max_egress_mbps"):
        EgressGauge(max_egress_mbps=-1)


# --- media workers ---------------------------------------------------------------------------

KEY = b"worker-key"


def test_a_worker_token_holds_for_its_uri_until_it_expires():
    token = worker_token(KEY, "/live/cam1.flv", 1000)
    assert is_worker(KEY, "/live/cam1.flv", token, now=999)
    assert is_worker(KEY, "/live/cam1.flv", token, now=1000)
    assert not is_worker(KEY, "/live/cam1.flv", token, now=1001)
    assert not is_worker(KEY, "/live/cam2.flv", token, now=999)
    assert not is_worker(b"another-key", "/live/cam1.flv", token, now=999)


@pytest.mark.parametrize("token", [None, "", "abc", "1000", "1000-", "x-" + "0" * 32, "2000-" + "0" * 32])
def test_it_refuses_what_is_not_a_worker_token(token):
    assert not is_worker(KEY, "/live/cam1.flv", token, now=0)


def test_a_node_without_a_worker_key_exempts_nobody():
    token = worker_token(b"", "/live/cam1.flv", 1000)
    assert not is_worker(b"", "/live/cam1.flv", token, now=0)


def test_a_later_expiry_does_not_reuse_the_mac():
    token = worker_token(KEY, "/live/cam1.flv", 1000)
    forged = "9999-" + token.split("-", 1)[1]
    assert not is_worker(KEY, "/live/cam1.flv", forged, now=0)


def test_it_watches_the_median_loop_lag_over_its_window():
    gauge = LoopLagGauge(max_loop_lag_ms=250, window_seconds=3)
    assert gauge.admit(0.0)  # no probe yet
    for i in range(10):
        gauge.observe(0.1 * i, 0.3)
    assert gauge.lag_s(0.9) == pytest.approx(0.3)
    assert not gauge.admit(0.9)
    assert gauge.refused == 1


def test_it_tells_the_latest_probe_of_its_window_beside_the_median():
    gauge = LoopLagGauge(max_loop_lag_ms=250, window_seconds=3)
    assert gauge.worst_s(0.0) == 0.0
    for i in range(9):
        gauge.observe(0.1 * i, 0.01)
    gauge.observe(0.9, 0.4)
    assert gauge.worst_s(0.9) == pytest.approx(0.4)
    assert gauge.lag_s(0.9) == pytest.approx(0.01)
    assert gauge.worst_s(4.0) == 0.0  # the late probe aged out of the window


def test_it_does_not_refuse_for_one_late_probe():
    # A garbage collection or a slow disk write makes one probe late, not the loop behind.
    gauge = LoopLagGauge(max_loop_lag_ms=250)
    for i in range(9):
        gauge.observe(0.1 * i, 0.01)
    gauge.observe(0.9, 2.0)
    assert gauge.admit(0.9)


def test_it_admits_again_once_the_loop_caught_up():
    gauge = LoopLagGauge(max_loop_lag_ms=250, window_seconds=3)
    for i in range(30):
        gauge.observe(0.1 * i, 0.5)
    assert not gauge.admit(3.0)
    # The late probes age out of the window as on-time ones come.
    for i in range(31, 62):
        gauge.observe(0.1 * i, 0.005)
    assert gauge.lag_s(6.1) == pytest.approx(0.005)
    assert gauge.admit(6.1)


def test_it_forgets_probes_past_the_window_even_without_new_ones():
    gauge = LoopLagGauge(max_loop_lag_ms=250, window_seconds=3)
    gauge.observe(0.0, 1.0)
    assert not gauge.admit(1.0)
    assert gauge.admit(3.5)


def test_it_is_exactly_at_the_limit_admitted_and_past_it_refused():
    at, past = LoopLagGauge(max_loop_lag_ms=250), LoopLagGauge(max_loop_lag_ms=250)
    at.observe(0.0, 0.25)
    past.observe(0.0, 0.2501)
    assert at.admit(0.0)
    assert not past.admit(0.0)


def test_once_behind_it_admits_again_only_under_the_resume_fraction_of_the_limit():
    gauge = LoopLagGauge(max_loop_lag_ms=250, window_seconds=1, resume_fraction=0.8)
    gauge.observe(0.0, 0.26)
    assert gauge.behind
    assert not gauge.admit(0.0)
    gauge.observe(1.5, 0.24)  # under the limit, over 80 % of it: still behind
    assert gauge.behind
    assert not gauge.admit(1.5)
    gauge.observe(3.0, 0.2)  # exactly 80 %: still behind
    assert not gauge.admit(3.0)
    gauge.observe(4.5, 0.199)
    assert not gauge.behind
    assert gauge.admit(4.5)
    gauge.observe(6.0, 0.24)  # caught up: the limit itself applies again
    assert gauge.admit(6.0)
    assert gauge.refused == 3


def test_a_lag_hovering_at_the_limit_does_not_flap():
    gauge = LoopLagGauge(max_loop_lag_ms=250, window_seconds=1)
    answers = []
    for i, lag in enumerate([0.26, 0.24, 0.255, 0.245, 0.26, 0.23, 0.251]):
        gauge.observe(1.5 * i, lag)
        answers.append(gauge.admit(1.5 * i))
    assert answers == [False] * 7


def test_it_refuses_a_resume_fraction_outside_zero_to_one():
    for fraction in (0, 1.01):
        with pytest.raises(ValueError, match="resume_fraction"):
            LoopLagGauge(max_loop_lag_ms=250, resume_fraction=fraction)


def test_a_zero_loop_lag_limit_watches_nothing():
    gauge = LoopLagGauge(max_loop_lag_ms=0)
    gauge.observe(0.0, 10.0)
    assert not gauge.limited
    assert gauge.admit(0.0)
    with pytest.raises(ValueError, match="max_loop_lag_ms"):
        LoopLagGauge(max_loop_lag_ms=-1)
