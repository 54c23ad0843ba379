"""The RTS rendition decisions (livecenter/media/rts/bitrate.py) on a fake
clock: down at once to what fits after a short hold, up one step after a
long one, no flapping within the cooldown, loss alone steps down, an
estimate that climbs is not behind, one that stops moving has no trend,
and probes up with a backoff."""

from __future__ import annotations

import pytest

from livecenter.media.rts.bitrate import (
    DOWN_HOLD_SECONDS,
    PROBE_FAILED_SECONDS,
    PROBE_HOLD_SECONDS,
    PROBE_MAX_HOLD_SECONDS,
    SWITCH_COOLDOWN_SECONDS,
    TREND_SECONDS,
    UP_HOLD_SECONDS,
    RenditionController,
)

MBPS = 1_000_000
LADDER = (500_000, 1 * MBPS, 2 * MBPS, 4 * MBPS)  # ld, sd, hd, fhd


def feed(controller: RenditionController, estimate: float, start: float, seconds: float, step: float = 0.1) -> int:
    now = start
    while now <= start + seconds + 1e-9:
        controller.on_estimate(estimate, now)
        now += step
    return controller.index


def test_a_viewer_that_cannot_keep_up_goes_down_to_what_fits_after_the_hold():
    controller = RenditionController(LADDER, index=3)
    assert feed(controller, 1.5 * MBPS, 0.0, DOWN_HOLD_SECONDS - 0.2) == 3, "not before the hold"
    assert feed(controller, 1.5 * MBPS, DOWN_HOLD_SECONDS - 0.1, 0.3) == 1, "straight to sd: 1 Mbit/s x 1.15 fits"
    assert controller.switches == 1


def test_a_dip_shorter_than_the_hold_changes_nothing():
    controller = RenditionController(LADDER, index=2)
    feed(controller, 1.0 * MBPS, 0.0, DOWN_HOLD_SECONDS / 2)
    assert feed(controller, 3.0 * MBPS, DOWN_HOLD_SECONDS / 2 + 0.1, 2.0) == 2
    assert controller.switches == 0


def test_it_goes_up_one_step_after_the_long_hold_and_not_within_the_cooldown():
    controller = RenditionController(LADDER, index=0)
    assert feed(controller, 10 * MBPS, 0.0, UP_HOLD_SECONDS - 0.2) == 0
    assert feed(controller, 10 * MBPS, UP_HOLD_SECONDS - 0.1, 0.2) == 1, "one step, however much room"
    switched = UP_HOLD_SECONDS
    assert feed(controller, 10 * MBPS, switched + 0.2, SWITCH_COOLDOWN_SECONDS - 0.5) == 1
    # The next step needs the cooldown over and the hold again.
    assert feed(controller, 10 * MBPS, switched + SWITCH_COOLDOWN_SECONDS, UP_HOLD_SECONDS + 0.2) == 2


def test_it_does_not_go_up_on_the_estimate_without_room_to_spare():
    assert UP_HOLD_SECONDS + 1 < PROBE_HOLD_SECONDS
    controller = RenditionController(LADDER, index=1)
    assert feed(controller, 2.5 * MBPS, 0.0, UP_HOLD_SECONDS + 1) == 1, "2.5 < 2 Mbit/s x 1.3"
    controller = RenditionController(LADDER, index=1)
    assert feed(controller, 2.7 * MBPS, 0.0, UP_HOLD_SECONDS + 0.2) == 2
    assert controller.probes == 0


def climb(controller: RenditionController, start_bps: float, start: float, seconds: float) -> float:
    """An estimate rising 8 % a second, a REMB every half second (GCC's
    increase, as aiortc's receiver sends it); returns the last estimate."""
    now, estimate = start, start_bps
    while now <= start + seconds + 1e-9:
        controller.on_estimate(estimate, now)
        now += 0.5
        estimate *= 1.08**0.5
    return estimate


def test_an_estimate_climbing_after_a_switch_up_is_not_behind():
    controller = RenditionController(LADDER, index=1)
    controller.on_estimate(1.5 * MBPS, 0.0)  # what a receiver of sd estimates: too little to show hd's room
    assert feed(controller, 1.5 * MBPS, 0.0, PROBE_HOLD_SECONDS + 0.1) == 2, "a healthy viewer probes up"
    assert controller.probes == 1
    # On hd the estimate starts from sd's 1.5 Mbit/s, under hd's 2 x 0.8, and climbs.
    assert PROBE_FAILED_SECONDS < PROBE_HOLD_SECONDS
    climb(controller, 1.5 * MBPS, PROBE_HOLD_SECONDS + 0.2, PROBE_FAILED_SECONDS + 0.5)
    assert controller.index == 2 and controller.switches == 1


def test_an_estimate_that_last_fell_a_little_then_holds_still_probes_up():
    # What Chromium did in CI: after the switch down its REMB dipped once,
    # then came again unchanged for minutes, well above the rendition.
    controller = RenditionController(LADDER, index=1)
    controller.on_estimate(1.55 * MBPS, 0.0)
    controller.on_estimate(1.5 * MBPS, 0.5)  # the last change is a fall
    wait = TREND_SECONDS + PROBE_HOLD_SECONDS
    assert feed(controller, 1.5 * MBPS, 0.5, wait - 0.3) == 1, "not before the fall is old and the hold is over"
    assert feed(controller, 1.5 * MBPS, 0.5 + wait - 0.2, 0.5) == 2, "a still estimate above the rendition probes up"
    assert controller.probes == 1


def test_an_estimate_that_last_rose_then_holds_below_the_rendition_is_behind():
    controller = RenditionController(LADDER, index=2)  # hd, 2 Mbit/s
    controller.on_estimate(1.0 * MBPS, 0.0)
    controller.on_estimate(1.2 * MBPS, 0.5)  # rising: not behind yet
    assert feed(controller, 1.2 * MBPS, 0.5, TREND_SECONDS - 0.2) == 2
    # It stopped climbing under 2 x 0.8: the path is full.
    assert feed(controller, 1.2 * MBPS, 0.5 + TREND_SECONDS, DOWN_HOLD_SECONDS + 0.1) == 1, "down to sd, which fits"


def test_a_probe_that_fails_comes_down_and_the_next_waits_twice_as_long():
    controller = RenditionController(LADDER, index=1)
    now = PROBE_HOLD_SECONDS + 0.1
    assert feed(controller, 1.5 * MBPS, 0.0, now) == 2
    # The path is full: hd's flow makes the estimate fall.
    now += 0.5
    controller.on_estimate(1.2 * MBPS, now)
    assert feed(controller, 1.2 * MBPS, now, SWITCH_COOLDOWN_SECONDS + DOWN_HOLD_SECONDS) == 1
    assert controller.probe_hold == 2 * PROBE_HOLD_SECONDS
    down = controller._last_switch
    # sd is fine on that path; the next probe waits twice as long.
    assert feed(controller, 1.2 * MBPS, down + 0.1, 2 * PROBE_HOLD_SECONDS - 1) == 1
    assert feed(controller, 1.2 * MBPS, down + 2 * PROBE_HOLD_SECONDS, 2.0) == 2
    assert controller.probes == 2


def test_the_probe_wait_has_a_ceiling():
    controller = RenditionController(LADDER, index=0)
    now = 0.0
    for _ in range(10):  # probe, fall back, again and again
        while controller.index == 0:
            controller.on_estimate(600_000, now)
            now += 0.5
        controller.on_estimate(300_000, now)  # the estimate falls on sd
        while controller.index == 1:
            now += 0.5
            controller.on_estimate(300_000, now)
    assert controller.probe_hold == PROBE_MAX_HOLD_SECONDS


def test_measured_bitrates_replace_the_nominal_ones():
    controller = RenditionController(LADDER, index=3)
    controller.update_bitrates((400_000, 800_000, 1_500_000, 1_800_000))  # fhd makes less than its template
    assert feed(controller, 1.6 * MBPS, 0.0, 10.0) == 3, "1.6 > 1.8 x 0.8: fhd fits"
    with pytest.raises(ValueError):
        controller.update_bitrates((1, 2))


def test_loss_alone_steps_down_one_and_blocks_going_up():
    controller = RenditionController(LADDER, index=2)
    for tenth in range(int(DOWN_HOLD_SECONDS * 10) + 2):
        controller.on_loss(0.2, tenth / 10)
    assert controller.index == 1
    controller.on_loss(0.05, 5.0)
    assert feed(controller, 10 * MBPS, 5.0, 10.0) == 1, "5 % loss: no step up"
    controller.on_loss(0.0, 15.1)
    assert feed(controller, 10 * MBPS, 15.1, UP_HOLD_SECONDS + 0.2) == 2


def test_no_flapping_on_the_edge_of_two_renditions():
    controller = RenditionController(LADDER, index=2)
    now, estimates = 0.0, [1.9 * MBPS, 2.1 * MBPS] * 300
    for estimate in estimates:  # 60 s of an estimate that wobbles around hd's bitrate every 0.1 s
        controller.on_estimate(estimate, now)
        now += 0.1
    assert controller.switches <= 1, controller


def test_the_lowest_rendition_is_the_floor():
    controller = RenditionController(LADDER, index=1)
    assert feed(controller, 100_000, 0.0, 30.0) == 0


@pytest.mark.parametrize(("bitrates", "index"), [((), 0), ((2, 1), 0), ((1, 2), 2)])
def test_it_refuses_a_ladder_it_cannot_use(bitrates, index):
    with pytest.raises(ValueError):
        RenditionController(bitrates, index)
